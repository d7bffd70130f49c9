// update_many as a transaction: all of its changes or none, across process crashes and power
// cuts.
//
// The owner (Store::update_many, which holds every key's lock throughout):
//   1. stages every new key file (temp files, synced as the durability asks);
//   2. writes the intent, every change with its new value, to "txn/.<id>.tmp/intent.json",
//      holding flock(2) of that directory, fsyncs it, renames the directory to "txn/<id>" and
//      fsyncs txn/ (no fsync with Durability::power_loss_unsafe): from here on the update is
//      decided and will be completed;
//   3. appends the records of all its changes to the log in one write, each with "txn":"<id>";
//   4. puts the new files in place;
//   5. removes "txn/<id>" and unlocks.
// A crash before 2 ends changes nothing; a crash after it leaves "txn/<id>" behind. Whoever next
// locks a key of the store sees it (txn/'s link count: one per subdirectory, a single fstat) and,
// when that directory's flock can be had (its owner is dead), recovers it before writing: reads
// the intent, locks the transaction's keys (sorted, as update_many does), rolls every key still
// holding its old version forward to the new one, appends the records the log lacks (found by
// the transaction id), and removes the directory. Store's constructor does the same.
//
// Who holds a transaction directory's flock exclusive, its owner or a recoverer, holds the locks
// of all the transaction's keys (it takes the flock only once it has them). So a key writer that
// cannot have the flock shared is not writing one of those keys (it holds its own key's lock),
// and one that can has found a dead owner: it lets its key go and recovers. Probes lock shared,
// so that they never look like an owner to each other.
#include <lockdb/error.hpp>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>

#include "json_io.hpp"
#include "log_format.hpp"
#include "log_reader.hpp"
#include "log_writer.hpp"
#include "os.hpp"
#include "store_format.hpp"
#include "store_impl.hpp"

namespace lockdb {

namespace fs = std::filesystem;
namespace format = detail::store_format;
namespace reader = detail::log_reader;
using nlohmann::json;

namespace {

constexpr int kTxnIdBytes = 8;  // 16 hex digits

std::string temp_name_of(std::string_view id) {
  std::string name(".");
  name += id;
  name += ".tmp";
  return name;
}

// Locks the directory `name` in txn/, shared or exclusive: trying once, or with `wait` until
// `deadline` (nullopt: no limit); the open descriptor holds the lock. Invalid when it does not
// exist or the lock was not had.
os::Fd lock_marker(int txn_fd, const std::string& name, bool shared, bool wait = false,
                   std::optional<std::chrono::steady_clock::time_point> deadline = {}) {
  auto fd = os::open_beneath(txn_fd, name, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) return os::Fd();
  os::Fd marker(fd.value);
  if (!os::flock_until(marker.get(), shared, wait ? deadline : std::chrono::steady_clock::now())
           .ok()) {
    return os::Fd();
  }
  return marker;
}

// Whether the owner of the transaction `name` is dead and nobody is recovering it: its directory
// can be locked shared. (Probes lock shared, so that they never keep out an owner or recoverer,
// and never look like one to each other.)
bool abandoned(int txn_fd, const std::string& name) {
  return static_cast<bool>(lock_marker(txn_fd, name, /*shared=*/true));
}

// Removes the directory `name` in txn/ and what it holds. Best effort.
void remove_marker(int txn_fd, const std::string& name) {
  auto fd = os::open_beneath(txn_fd, name, O_RDONLY | O_DIRECTORY);
  if (fd.ok()) {
    os::Fd dir(fd.value);
    if (auto names = os::list_dir(dir.get()); names.ok()) {
      for (const std::string& n : names.value) (void)os::unlink_at(dir.get(), n);
    }
  }
  (void)os::unlink_at(txn_fd, name, AT_REMOVEDIR);
}

}  // namespace

void detail::StoreImpl::open_txn_dir() {
  // A store in a directory this process cannot write has none (its writes fail anyway).
  const std::string name(format::kTxnDir);
  if (auto s = os::mkdir_at(root_fd.get(), name, 0777, create_mode); !s.ok() && s.err != EEXIST) {
    return;
  }
  auto fd = os::open_beneath(root_fd.get(), name, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) {
    if (fd.err == ENOENT || fd.err == EACCES) return;
    os::throw_beneath("cannot open store", dir.native(), root_fd.get(), name, fd.err);
  }
  txn_fd.reset(fd.value);
  auto st = os::fstat(txn_fd.get());
  // btrfs counts no subdirectories in a directory's link count (it is always 1): list instead.
  txn_links_count = st.ok() && st.value.nlink >= 2;
}

bool detail::StoreImpl::pending_transactions() const {
  if (!txn_fd) return false;
  if (txn_links_count) {
    auto st = os::fstat(txn_fd.get());
    return !st.ok() || st.value.nlink > 2;
  }
  auto names = os::list_dir(txn_fd.get());
  return !names.ok() || !names.value.empty();
}

bool detail::StoreImpl::dead_transaction() const {
  auto names = os::list_dir(txn_fd.get());
  if (!names.ok()) return false;
  for (const std::string& name : names.value) {
    // A temp directory was never decided: nothing of it needs recovering.
    if (!name.starts_with('.') && abandoned(txn_fd.get(), name)) return true;
  }
  return false;
}

std::set<std::string> detail::StoreImpl::keys_logged_by(const std::string& id) const {
  std::set<std::string> keys;
  std::string needle("\"");
  needle += detail::log_format::kFieldTxn;
  needle += "\":\"";
  needle += id;
  needle += '"';
  reader::RecordParser parser;
  reader::Parsed parsed;
  for (const auto& seg : reader::snapshot(log_dir)) {
    reader::scan(seg, seg.first_record, seg.size(), needle,
                 [&](std::string_view line, std::uint64_t) {
                   const auto outcome = parser.parse(line, parsed);
                   if (outcome == reader::RecordParser::Outcome::record ||
                       outcome == reader::RecordParser::Outcome::fragment_record) {
                     keys.emplace(parsed.key);
                   }
                   return true;
                 });
  }
  return keys;
}

void detail::StoreImpl::recover_transactions(Deadline deadline) {
  auto names = os::list_dir(txn_fd.get());
  if (!names.ok()) os::throw_errno("cannot list", dir / format::kTxnDir, names.err);
  for (const std::string& name : names.value) {
    if (name.starts_with('.')) {  // never decided: nothing of it is in place
      if (os::Fd m = lock_marker(txn_fd.get(), name, false)) remove_marker(txn_fd.get(), name);
      continue;
    }
    if (!abandoned(txn_fd.get(), name)) continue;  // its owner (or a recoverer) is at work
    auto fd =
        os::open_beneath(txn_fd.get(), name + "/" + std::string(format::kTxnIntent), O_RDONLY);
    if (!fd.ok()) {
      if (fd.err != ENOENT) continue;
      if (os::Fd m = lock_marker(txn_fd.get(), name, false)) remove_marker(txn_fd.get(), name);
      continue;
    }
    os::Fd intent_fd(fd.value);
    auto text = os::read_all(intent_fd.get());
    if (!text.ok())
      os::throw_errno("cannot read the update_many intent", dir / "txn" / name, text.err);
    json intent;
    try {
      intent = detail::json_io::parse(text.value);
    } catch (const json::exception& e) {
      throw Error(Errc::corrupt, "cannot recover an update_many", dir / "txn" / name, e.what());
    }
    struct Change {
      KeyPaths p;
      std::optional<std::string> prev, version;
      const std::string* bytes = nullptr;  // the new key file's text
    };
    std::vector<Change> changes;
    try {
      for (const json& c : intent.at("changes")) {
        Change ch{paths(c.at("key").get<std::string>()), {}, {}, nullptr};
        if (c.at("prev").is_string()) ch.prev = c["prev"].get<std::string>();
        if (c.at("version").is_string()) ch.version = c["version"].get<std::string>();
        if (auto b = c.find("bytes"); b != c.end()) ch.bytes = b->get_ptr<const std::string*>();
        changes.push_back(std::move(ch));
      }
    } catch (const json::exception& e) {
      throw Error(Errc::corrupt, "cannot recover an update_many", dir / "txn" / name, e.what());
    }
    std::map<std::string, const std::string*> lock_order;
    for (const auto& c : changes) lock_order.emplace(c.p.lock, &c.p.key);
    std::vector<detail::KeyLocks::Hold> holds;
    for (const auto& [lock, key] : lock_order) holds.push_back(lock_file(lock, *key, deadline));
    // Now exclusive, under the keys' locks: only probes can hold it, for an instant. Another
    // recoverer may have finished it meanwhile (then it is gone).
    os::Fd marker = lock_marker(txn_fd.get(), name, /*shared=*/false, /*wait=*/true, deadline);
    if (!marker) continue;
    if (!os::lstat_at(marker.get(), std::string(format::kTxnIntent)).ok()) continue;

    for (const auto& c : changes) {
      const Current cur = read_current(c.p);
      const bool at_new = c.version ? cur.exists && cur.version == *c.version : !cur.exists;
      const bool at_prev = c.prev ? cur.exists && cur.version == *c.prev : !cur.exists;
      // A power cut can leave a key file renamed in but its data lost (empty or torn, where the
      // temp file was not fsynced): that key is rolled forward as well.
      const bool torn = cur.exists && !at_new && !at_prev && !detail::json_io::accepts(cur.bytes);
      if (at_new || (!at_prev && !torn)) continue;  // in place, or written around the store
      if (c.version) {
        if (c.bytes == nullptr) continue;
        replace_file(c.p, *c.bytes);
      } else {
        unlink_key_file(c.p);
      }
    }
    const std::set<std::string> logged = keys_logged_by(name);
    std::string lines;
    for (const auto& c : changes) {
      if (logged.count(c.p.key)) continue;
      detail::RecordFields fields;
      fields.time = std::chrono::system_clock::now();
      fields.key = c.p.key;
      fields.op = "update_many";
      json value;
      if (c.version && c.bytes != nullptr) {
        value = parse(c.p, Current{true, *c.bytes, {}});
        fields.value = &value;
      }
      if (c.prev) fields.prev_version = *c.prev;
      if (c.version) fields.version = *c.version;
      fields.txn = name;
      if (!lines.empty()) lines += '\n';
      lines += detail::render_record(fields);
    }
    if (!lines.empty()) {
      try {
        log_writer().append_lines(lines, deadline);
      } catch (const detail::LogSyncError&) {  // appended; the next recovery cannot redo it
      }
    }
    remove_marker(txn_fd.get(), name);
  }
}

detail::StoreImpl::Txn detail::StoreImpl::begin_transaction(std::string_view intent_changes,
                                                            Deadline deadline) {
  if (!txn_fd) {
    throw Error(Errc::permission, "update_many: cannot record the update's intent", dir / "txn",
                "the store has no txn directory (it cannot be written)");
  }
  const bool sync = options.durability != Durability::power_loss_unsafe;
  Txn txn;
  txn.id = os::random_hex(kTxnIdBytes);
  const std::string temp = temp_name_of(txn.id);
  const fs::path where = dir / format::kTxnDir / temp;
  // A recoverer may take and remove the temp directory between its mkdir and its flock here
  // (it sees a dead owner): then making the intent or the rename fails, and it is made anew.
  // Probes hold the flock shared for an instant: waited for.
  for (int attempt = 0;; ++attempt) {
    auto fail = [&](const char* what, int err) {
      remove_marker(txn_fd.get(), temp);
      os::throw_errno(std::string("update_many: ") + what, where, err);
    };
    if (auto s = os::mkdir_at(txn_fd.get(), temp, 0777, create_mode); !s.ok()) {
      fail("cannot create", s.err);
    }
    txn.marker = lock_marker(txn_fd.get(), temp, /*shared=*/false, /*wait=*/true, deadline);
    if (!txn.marker) {
      if (attempt < 3) continue;
      fail("cannot lock", EWOULDBLOCK);
    }
    auto fd = os::open_beneath(txn.marker.get(), format::kTxnIntent,
                               O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, 0666, create_mode);
    if (!fd.ok()) {
      if (attempt < 3 && fd.err == ENOENT) continue;
      fail("cannot create the intent in", fd.err);
    }
    std::string body = "{\"txn\":\"" + txn.id + "\",\"changes\":";
    body += intent_changes;
    body += "}\n";
    const char* step = "cannot write the intent in";
    os::Status s = os::write_all(fd.value, body);
    if (s.ok() && sync) {
      s = os::fsync(fd.value);
      step = "cannot fsync the intent in";
    }
    if (os::Status c = os::close_written(fd.value); s.ok() && !c.ok()) {
      s = c;
      step = "cannot close the intent in";
    }
    if (!s.ok()) fail(step, s.err);
    if (auto r = os::rename_at(txn_fd.get(), temp, txn_fd.get(), txn.id); !r.ok()) {
      if (attempt < 3 && r.err == ENOENT) continue;
      fail("cannot rename into place", r.err);
    }
    break;
  }
  if (sync) {
    if (auto d = os::fsync(txn_fd.get()); !d.ok()) {
      end_transaction(txn);
      os::throw_errno("update_many: cannot fsync", dir / format::kTxnDir, d.err);
    }
  }
  return txn;
}

void detail::StoreImpl::end_transaction(Txn& txn) noexcept {
  if (!txn.marker) return;
  (void)os::unlink_at(txn.marker.get(), std::string(format::kTxnIntent));
  (void)os::unlink_at(txn_fd.get(), txn.id, AT_REMOVEDIR);
  txn.marker.reset();
}

}  // namespace lockdb
