// verify() and repair(): do the key files and the log agree?
//
// The log is the chain of every key's versions: each record names the version before it
// ("prev") and after it ("version"). Two things can break the chain:
//   - a write around the store (the seed's Python helper, an editor): the file changes without a
//     record, so the next record's prev differs from the record before it (a gap), or, if nobody
//     wrote since, the file's version differs from the last record (unlogged_change);
//   - a crash between the rename and the log append (the file is one change ahead), or between
//     the unlink and the append of an erase (missing_file).
// Both are found the same way: read the whole log once, remembering for each key its last
// version and the gaps since its last "repair" record; then walk keys/ and compare.
//
// Writers may run meanwhile. A key that looks wrong is looked at again under its lock, after
// reading the records appended since the first pass: a write in flight has finished by then
// (and its record is in the log), so only real disagreements remain. Temp files are judged the
// same way: under the key's lock no writer of the key is between its temp write and rename.
//
// Soft lock markers: a key's lock file (or a stripe's) is an flock(2) lock file that stays empty.
// A SoftFileLock on the same path (nfs_safe_write, Python's filelock.SoftFileLock) leaves its
// marker record in it; one whose holder died is a stale_marker finding, and so are the leftovers
// of a marker breaker that died ("<lock>.break-<id>" tombstones, "<lock>.stale-<id>" markers it
// had moved aside) once they are stale themselves. repair() empties a stale marker in place and
// never removes the lock file (other processes keep descriptors to it open), and removes stale
// leftovers.
//
// repair() fixes a finding while it still holds the key's lock, and logs what it did with a
// record of op "repair" whose prev is the last logged version and whose version is the file's:
// the chain is whole again from there, and that record also marks earlier gaps of the key as
// seen (verify() reports only gaps after a key's last repair record), and every torn line before
// it. A repair that logs no record but found torn lines (bytes someone else wrote into the log)
// appends a seen marker instead (log_format.hpp): a line of op "repair" that names no key and
// acknowledges the torn lines up to the last one it saw. verify() reports only torn lines that
// neither a later repair record nor a seen marker acknowledges: see report_torn_lines.
#include <lockdb/file_lock.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>
#include <lockdb/time.hpp>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <set>

#include <sys/stat.h>

#include "json_io.hpp"
#include "log_format.hpp"
#include "log_reader.hpp"
#include "os.hpp"
#include "soft_marker.hpp"
#include "store_backend.hpp"
#include "store_format.hpp"
#include "store_impl.hpp"
#include "util.hpp"

namespace lockdb {

namespace fs = std::filesystem;
namespace format = detail::store_format;
using nlohmann::json;

namespace {

const char* const kRepairOp = "repair";

// What the log says about one key.
struct KeyLog {
  bool seen = false;                   // a record of the key was read
  std::optional<std::string> version;  // after its last record; nullopt: absent
  std::vector<std::string> gaps;       // descriptions of gaps after its last repair record
};

std::string show_version(const std::optional<std::string>& v) {
  return v ? *v : std::string("absent");
}

// `chain_starts_unknown`: the record is a key's first in a segment written by compaction, which
// dropped the records before it, so its prev cannot be checked.
void apply(KeyLog& k, const Record& r, bool chain_starts_unknown) {
  const bool first = !k.seen;
  k.seen = true;
  if (r.op == kRepairOp) {
    k.gaps.clear();
  } else if (first && chain_starts_unknown) {
    // nothing to compare with
  } else if (r.prev_version != k.version) {
    k.gaps.push_back("the record of " + format_time(r.time) + " (op " + r.op + ", pid " +
                     std::to_string(r.pid) + ") starts from version " +
                     show_version(r.prev_version) + ", but the log's previous version is " +
                     show_version(k.version) +
                     ": a change without a record came between them (a writer that crashed "
                     "before appending its record, or a write around the store)");
  }
  k.version = r.version;
}

// "20261130T180000.123456Z": a time usable in a file name everywhere.
std::string file_name_time() {
  std::string t = format_time(std::chrono::system_clock::now());
  t.erase(std::remove_if(t.begin(), t.end(), [](char c) { return c == '-' || c == ':'; }), t.end());
  return t;
}

class Checker {
 public:
  Checker(detail::StoreImpl& impl, bool fix) : impl_(impl), fix_(fix), history_(impl.dir) {}

  std::vector<Finding> run() {
    // A link or special file planted in the log is reported, and the log not read through it.
    if (check_planted_log()) return std::move(findings_);
    read_log();
    walk();
    for (auto& [key, k] : log_) {
      if (k.version && !files_.count(key)) suspects_.insert(key);
      if (!k.gaps.empty()) {
        for (const auto& gap : k.gaps) {
          add(Finding::Kind::unlogged_change, key, file_of(key), gap,
              fix_ ? "; recorded as seen by a repair record" : "");
        }
        if (fix_) suspects_.insert(key);  // the acknowledging record is written under the lock
      }
    }
    for (const auto& [key, path] : files_) {
      auto it = log_.find(key);
      std::optional<std::string> logged = it == log_.end() ? std::nullopt : it->second.version;
      auto cur = read(key);
      if (!cur.exists || !detail::json_io::accepts(cur.bytes) || logged != cur.version)
        suspects_.insert(key);
    }
    for (const auto& key : suspects_) {
      try {
        confirm(key);
      } catch (const Error& e) {  // a key whose files are behind a reported plant: skipped
        if (e.code() != Errc::invalid_argument || !reported_planted(e.path())) throw;
      }
    }
    for (const auto& [temp, key] : temps_) check_temp(temp, key);
    if (fix_) {  // first: a stale marker emptied below stays for this run, as its finding says
      for (const auto& [lock, key] : lock_files_) drop_orphan_lock_file(lock, key);
    }
    for (const auto& [lock, key] : lock_files_) check_lock_file(lock, key);
    for (const auto& [leftover, key] : breaker_leftovers_) check_breaker_leftover(leftover, key);
    report_torn_lines();
    return std::move(findings_);
  }

 private:
  void add(Finding::Kind kind, const std::string& key, fs::path path, std::string detail,
           std::string_view action = {}) {
    findings_.push_back(
        Finding{kind, key, std::move(path), std::move(detail) + std::string(action)});
  }

  fs::path file_of(const std::string& key) const { return impl_.paths(key).file; }

  detail::StoreImpl::Current read(const std::string& key) const { return read(impl_.paths(key)); }

  // The key file as the store sees it: anything but a regular file (a symlink, reported as a
  // bad_file_name) counts as absent.
  detail::StoreImpl::Current read(const detail::StoreImpl::KeyPaths& p) const {
    auto st = os::lstat(p.file);
    if (st.ok() && !S_ISREG(st.value.mode)) return {};
    return impl_.read_current(p);
  }

  // The number of the first segment when compaction wrote it (its header says "compacted").
  std::optional<std::uint64_t> compacted_segment() const {
    auto segments = history_.segments();
    if (segments.empty()) return std::nullopt;
    std::ifstream in(segments.front(), std::ios::binary);
    std::string header;
    if (!std::getline(in, header)) return std::nullopt;
    json doc;
    try {
      doc = detail::json_io::parse(header);
    } catch (const json::parse_error&) {
      return std::nullopt;
    }
    if (!doc.is_object() || !doc.contains(detail::log_format::kHeaderCompacted))
      return std::nullopt;
    auto number = doc.find(detail::log_format::kHeaderSegment);
    if (number == doc.end() || !number->is_number_unsigned()) return std::nullopt;
    return number->get<std::uint64_t>();
  }

  void read_log() {
    catch_up_from_ = history_.end();
    const auto compacted = compacted_segment();
    detail::log_reader::LineEvents events;
    events.torn = [&](std::uint64_t segment, std::uint64_t offset) {
      torn_unseen_.push_back({segment, offset});
    };
    events.seen = [&](const detail::log_reader::Seen& seen) {
      // Acknowledges the torn lines up to the one it names (later ones it never saw).
      std::erase_if(torn_unseen_, [&](const LinePosition& torn) {
        return torn <= LinePosition{seen.segment, seen.offset};
      });
    };
    detail::log_reader::for_each_record(
        impl_.dir, Query{},
        [&](const Record& r) {
          apply(log_[r.key], r, compacted && r.segment == *compacted);
          if (r.op == kRepairOp) torn_unseen_.clear();  // a repair saw the torn lines before it
          return true;
        },
        events);
  }

  // Torn lines that no repair record or seen marker follows. They stay (the log is append-only;
  // readers skip them) until a compaction rewrites the log without them. A repair acknowledges
  // them: its records do (a crash in the middle of an append leaves its key disagreeing with the
  // log, and repair logs that key), and a repair that logs no record appends a seen marker.
  void report_torn_lines() {
    if (torn_unseen_.empty()) return;
    std::string fixed;
    if (fix_ && repair_records_ > 0) {
      fixed = "; left in place (the log is append-only), marked as seen by this repair's records";
    } else if (fix_) {
      const LinePosition last = torn_unseen_.back();
      impl_.log_writer().append(
          detail::log_format::render_seen_marker(std::chrono::system_clock::now(), last.segment,
                                                 last.offset, torn_unseen_.size()),
          impl_.deadline_from_now());
      fixed =
          "; left in place (the log is append-only): no key disagreed with the log, so they are "
          "not the remains of a store record; acknowledged by a seen marker (op repair)";
    }
    add(Finding::Kind::torn_log_line, {}, impl_.log_dir,
        std::to_string(torn_unseen_.size()) +
            " torn or unreadable line(s) in the log (a crash in the middle of an append, or "
            "bytes written around the store); readers skip them. 'lockdb repair' acknowledges "
            "them, 'lockdb compact' (compact_history_keep_last / compact_history_before) "
            "rewrites the log without them",
        fixed);
  }

  // Appends the "repair" record of a fix. REQUIRES: the key's lock is held.
  void log_repair(const detail::StoreImpl::KeyPaths& p, const json* value,
                  const std::optional<std::string>& logged,
                  const std::optional<std::string>& on_disk) {
    impl_.append_record(impl_.deadline_from_now(), p, kRepairOp, value, logged, on_disk);
    ++repair_records_;
  }

  bool reported_planted(const fs::path& path) const {
    return std::any_of(findings_.begin(), findings_.end(), [&](const Finding& f) {
      return f.kind == Finding::Kind::planted_file && f.path == path;
    });
  }

  void planted(const fs::path& path, const std::string& problem,
               std::string_view consequence = "; lockdb refuses to use it until it is removed") {
    add(Finding::Kind::planted_file, {}, path, problem + std::string(consequence),
        fix_ ? "; left in place: it may be someone's" : "");
  }

  // The marker, log/log.lock and every segment must be regular files with one link: they are
  // written in place. Returns whether any is not.
  bool check_planted_log() {
    const std::size_t before = findings_.size();
    auto check = [&](int dir_fd, const fs::path& dir, const std::string& name) {
      auto st = os::lstat_at(dir_fd, name);
      if (!st.ok()) return;
      if (std::string problem = os::planted_problem(st.value, true); !problem.empty()) {
        planted(dir / name, problem);
      }
    };
    check(impl_.root_fd.get(), impl_.dir, std::string(format::kMarkerFile));
    check(impl_.log_fd.get(), impl_.log_dir, std::string(detail::log_format::kLockFile));
    if (auto names = os::list_dir(impl_.log_fd.get()); names.ok()) {
      for (const auto& name : names.value) {
        if (detail::log_format::parse_segment_name(name))
          check(impl_.log_fd.get(), impl_.log_dir, name);
      }
    }
    return findings_.size() != before;
  }

  // Whether the only other name of the key file `path` (named `name`, `id` its lstat) is a temp
  // file of the same key beside it (".<name>.<hex>.tmp"), or was until a write replaced it.
  static bool kept_by_a_writer(const fs::path& path, const std::string& name,
                               const os::FileId& id) {
    if (id.nlink != 2) return false;
    auto names = os::list_dir(path.parent_path());
    if (!names.ok()) return false;
    const std::string prefix = "." + name + ".";
    for (const std::string& n : names.value) {
      if (!n.starts_with(prefix) || !n.ends_with(".tmp")) continue;
      auto st = os::lstat(path.parent_path() / n);
      if (st.ok() && st.value.dev == id.dev && st.value.ino == id.ino) return true;
    }
    // Or that write has moved on meanwhile: the key file is a new one now, or alone again.
    auto now = os::lstat(path);
    return now.ok() && (now.value.ino != id.ino || now.value.nlink == 1);
  }

  // Files under keys/: key files, temp files, and anything that is not the store's.
  void walk() {
    impl_.walk_keys([&](const detail::StoreImpl::WalkEntry& e) {
      if (!e.is_dir && !e.is_file) {  // a link, FIFO, socket or device: never followed
        auto st = os::lstat(e.path);
        if (st.ok()) {
          planted(e.path, os::planted_problem(st.value, false) +
                              " (lockdb never follows symbolic links under keys/)");
          return;
        }
      }
      if (e.is_file &&
          (format::is_key_file_name(e.name) || e.name.ends_with(format::kLockSuffix))) {
        // A hard link is never written through (key files are replaced by rename, lock files
        // only locked), yet its other name is outside the store's control: reported.
        // Except the second name a write gives the old key file for a moment (and a crash may
        // leave): a temp file of the same key (StagedReplace::commit_keeping_old).
        if (auto st = os::lstat(e.path);
            st.ok() && st.value.nlink > 1 && !kept_by_a_writer(e.path, e.name, st.value)) {
          planted(e.path, "it has " + std::to_string(st.value.nlink) + " hard links",
                  "; lockdb never writes through it (a key file is replaced by rename, a lock "
                  "file only locked), but its other names are outside the store");
        }
      }
      if (e.depth == 0) {
        if (e.is_dir) {
          if (!format::is_shard_name(e.name)) bad_name(e.path, true);
        } else if (is_stripe_lock(e.name) && e.is_file) {
          lock_files_.emplace(e.path, std::string());
        } else if (auto lock = breaker_leftover_of(e.name); lock && is_stripe_lock(*lock)) {
          breaker_leftovers_.emplace(e.path, std::string());
        } else {
          bad_name(e.path, false);
        }
        return;
      }
      if (e.is_dir) {
        if (!format::is_continuation_dir(e.name)) bad_name(e.path, true);
        return;
      }
      if (!e.is_file) {
        if (vanished(e.path)) return;  // a temp file renamed or removed while we looked
        add(Finding::Kind::bad_file_name, {}, e.path,
            "neither a regular file nor a directory (lockdb never follows symbolic links under "
            "keys/)",
            fix_ ? "; left in place: it may be someone's" : "");
        return;
      }
      const fs::path dir_rel = e.path.parent_path().lexically_relative(impl_.keys_dir);
      if (format::is_key_file_name(e.name)) {
        if (auto key = format::decode_key_file(dir_rel / e.name, impl_.format_version)) {
          files_.emplace(*key, e.path);
          return;
        }
      } else if (auto owner = format::temp_owner(e.name)) {
        if (auto key = format::decode_key_file(dir_rel / *owner, impl_.format_version)) {
          temps_.emplace(e.path, *key);
          return;
        }
      } else if (auto base = owner_of_suffixed(e.name)) {
        // "<key file>.lock" and "<key file>.corrupt-<time>" (moved aside by repair()).
        if (auto key = format::decode_key_file(dir_rel / *base, impl_.format_version)) {
          if (e.name.ends_with(format::kLockSuffix)) lock_files_.emplace(e.path, *key);
          return;
        }
      } else if (auto lock = breaker_leftover_of(e.name)) {
        if (auto lock_base = owner_of_suffixed(*lock)) {
          if (auto key = format::decode_key_file(dir_rel / *lock_base, impl_.format_version)) {
            breaker_leftovers_.emplace(e.path, *key);
            return;
          }
        }
      }
      bad_name(e.path, false);
    });
  }

  static bool is_stripe_lock(const std::string& name) {
    if (!name.starts_with(format::kStripePrefix) || !name.ends_with(format::kLockSuffix)) {
      return false;
    }
    std::string n =
        name.substr(format::kStripePrefix.size(),
                    name.size() - format::kStripePrefix.size() - format::kLockSuffix.size());
    return !n.empty() &&
           std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
  }

  // "<lock>.break-<id>" or "<lock>.stale-<id>" (SoftFileLock's breaker) -> "<lock>".
  static std::optional<std::string> breaker_leftover_of(const std::string& name) {
    for (std::string_view infix : {".lock.break-", ".lock.stale-"}) {
      auto at = name.rfind(infix);
      if (at != std::string::npos && at + infix.size() < name.size()) {
        return name.substr(0, at + format::kLockSuffix.size());
      }
    }
    return std::nullopt;
  }

  static std::string describe(const LockHolder& h) {
    std::string s = "pid " + std::to_string(h.pid);
    if (!h.program.empty()) s += " (" + h.program + ")";
    if (!h.host.empty()) s += " on " + h.host;
    if (h.since) s += " since " + format_time(*h.since);
    return s;
  }

  // The default lease of SoftFileLock, as `lockdb locks` judges markers of other hosts.
  static std::chrono::nanoseconds stale_after() { return SoftLockOptions{}.stale_after; }

  // A lock file holding a soft marker whose holder is gone.
  void check_lock_file(const fs::path& lock, const std::string& key) {
    auto holder = detail::stale_marker_holder(lock, stale_after());
    if (!holder) return;  // empty (a hard lock file), or a marker whose holder may be alive
    std::string detail = "a stale SoftFileLock marker of " + describe(*holder) +
                         ": its holder is gone, the claim is never released";
    if (fix_) {
      detail += detail::clear_stale_marker(lock, stale_after())
                    ? "; emptied in place (the file stays: it is also a hard lock file)"
                    : "; gone meanwhile (a lock breaker took it)";
    }
    add(Finding::Kind::stale_marker, key, lock, std::move(detail));
  }

  // The lock file of an absent key that a crash (or a failed write) left (format 2 removes them,
  // store_locks.hpp): removed under its lock when nobody holds it. Not a finding: it costs
  // nothing but an inode. An empty file only: a lock file holding a SoftFileLock marker is in use.
  void drop_orphan_lock_file(const fs::path& lock, const std::string& key) {
    if (key.empty() || files_.count(key) || !impl_.lock_files_removed()) return;
    auto st = os::lstat(lock);
    if (!st.ok() || st.value.size != 0) return;
    const auto p = impl_.paths(key);
    try {
      detail::KeyLocks::Hold hold =
          impl_.lock_file(p.lock, key, std::chrono::steady_clock::now());  // one try
      if (!read(p).exists) impl_.drop_lock_file(p);
    } catch (const Error&) {  // held (a writer at work) or unreadable: left
    }
  }

  // What a marker breaker that died left behind, once stale itself.
  void check_breaker_leftover(const fs::path& path, const std::string& key) {
    if (!SoftFileLock::is_stale(path, stale_after())) return;  // a breaker at work, or gone
    const bool tomb = path.filename().string().rfind(".lock.break-") != std::string::npos;
    std::string detail = tomb ? "the tombstone of a SoftFileLock breaker that did not finish"
                              : "a stale SoftFileLock marker moved aside by a breaker that did "
                                "not finish";
    if (auto h = SoftFileLock(path).holder()) detail += " (" + describe(*h) + ")";
    if (fix_) {
      if (auto s = os::unlink(path); !s.ok() && s.err != ENOENT) {
        os::throw_errno("repair: cannot remove the stale marker file", path, s.err);
      }
      detail += "; removed";
    }
    add(Finding::Kind::stale_marker, key, path, std::move(detail));
  }

  static std::optional<std::string> owner_of_suffixed(const std::string& name) {
    if (name.ends_with(std::string(format::kKeyFileSuffix) + std::string(format::kLockSuffix))) {
      return name.substr(0, name.size() - format::kLockSuffix.size());
    }
    auto at = name.rfind(format::kCorruptInfix);
    if (at != std::string::npos) return name.substr(0, at);
    return std::nullopt;
  }

  // A file that is gone when looked at again (a writer's temp file, renamed or removed meanwhile)
  // is not a finding.
  static bool vanished(const fs::path& path) {
    auto st = os::lstat(path);
    return !st.ok() && st.err == ENOENT;
  }

  void bad_name(const fs::path& path, bool is_dir) {
    if (vanished(path)) return;
    add(Finding::Kind::bad_file_name, {}, path,
        std::string(is_dir ? "a directory" : "a file") +
            " whose name is no key's (not written by lockdb)",
        fix_ ? "; left in place: it may be someone's" : "");
  }

  // Reads the records appended since the first pass (the key's lock is held, so all of the
  // key's writes so far are in the log).
  std::optional<std::string> logged_version_now(const std::string& key) {
    KeyLog& k = log_[key];
    Query q;
    q.key = key;
    history_.read_from(catch_up_from_, q, [&](const Record& r) { k.version = r.version; });
    return k.version;
  }

  // The value of the key's last record when that record is at version `logged` (the log read in
  // full: a corrupt key file is rare); nullopt when there is none.
  std::optional<json> last_logged_value(const std::string& key,
                                        const std::optional<std::string>& logged) const {
    if (!logged) return std::nullopt;
    Query q;
    q.key = key;
    std::vector<Record> records = history_.records(q);
    if (records.empty() || records.back().version != logged) return std::nullopt;
    return std::move(records.back().value);
  }

  void confirm(const std::string& key) {
    const auto p = impl_.paths(key);
    detail::KeyLocks::Hold hold = impl_.lock_key(p);
    const auto logged = logged_version_now(key);
    const auto cur = read(p);
    const bool had_gaps = !log_[key].gaps.empty();
    std::optional<json> value;
    if (cur.exists) {
      try {
        value = detail::json_io::parse(cur.bytes);
      } catch (const json::parse_error&) {
        value = json(json::value_t::discarded);
      }
      if (value->is_discarded()) {
        corrupt(p, cur, logged);
        return;
      }
    }
    const std::optional<std::string> on_disk =
        cur.exists ? std::optional<std::string>(cur.version) : std::nullopt;
    if (on_disk == logged) {
      // Agrees now. With fix_, record that the key's earlier gaps were seen.
      if (fix_ && had_gaps) {
        log_repair(p, value ? &*value : nullptr, logged, on_disk);
      }
      return;
    }
    Finding::Kind kind = Finding::Kind::unlogged_change;
    std::string detail;
    if (!cur.exists) {
      kind = Finding::Kind::missing_file;
      detail = "the log says the key exists (version " + *logged + "), its file does not";
    } else if (!logged) {
      kind = Finding::Kind::missing_file;
      detail = "the key file exists (version " + cur.version +
               ") but the log says the key is absent (written around the store, or a crash "
               "before the record was appended)";
    } else {
      detail = "the key file is at version " + cur.version + ", the log's last version is " +
               *logged + " (written around the store, or a crash before the record was appended)";
    }
    if (fix_) {
      log_repair(p, value ? &*value : nullptr, logged, on_disk);
      detail += cur.exists ? "; logged the file's value (op repair)"
                           : "; logged the key's absence (op repair)";
    }
    add(kind, key, p.file, std::move(detail));
  }

  void corrupt(const detail::StoreImpl::KeyPaths& p, const detail::StoreImpl::Current& cur,
               const std::optional<std::string>& logged) {
    std::string detail = "the key file does not parse as JSON (version " + cur.version + ", " +
                         std::to_string(cur.bytes.size()) + " bytes)";
    if (fix_) {
      fs::path aside = p.file;
      aside += std::string(format::kCorruptInfix) + file_name_time();
      if (auto s = os::rename(p.file, aside); !s.ok()) {
        os::throw_errno(impl_.context(p.key) + ": cannot move the corrupt key file aside to " +
                            aside.filename().string(),
                        p.file, s.err);
      }
      // The key's last logged value, when the log has it, takes the bad file's place: the key
      // keeps a value it really had. Else (never logged, or last logged as erased) it is absent.
      if (std::optional<json> last = last_logged_value(p.key, logged)) {
        const std::string bytes = impl_.render(p, *last);
        impl_.replace_file(p, bytes);
        log_repair(p, &*last, logged, format::version_of(bytes));
        detail += "; moved aside to " + aside.filename().string() +
                  " and restored the key's last logged value (version " + *logged + ")";
      } else {
        log_repair(p, nullptr, logged, std::nullopt);
        detail += "; moved aside to " + aside.filename().string() + " and logged the key's absence";
      }
    }
    add(Finding::Kind::corrupt_key_file, p.key, p.file, std::move(detail));
  }

  void check_temp(const fs::path& temp, const std::string& key) {
    const auto p = impl_.paths(key);
    detail::KeyLocks::Hold hold = impl_.lock_key(p);
    auto st = os::lstat(temp);
    if (!st.ok()) return;  // a writer renamed or removed it meanwhile
    std::string detail = "a temp file of key " + format::quote_key(key) +
                         " left by a writer that did not finish (" + std::to_string(st.value.size) +
                         " bytes)";
    if (fix_) {
      if (auto s = os::unlink(temp); !s.ok() && s.err != ENOENT) {
        os::throw_errno("repair: cannot remove the orphaned temp file", temp, s.err);
      }
      detail += "; removed";
    }
    add(Finding::Kind::orphan_temp, key, temp, std::move(detail));
  }

  detail::StoreImpl& impl_;
  const bool fix_;
  History history_;
  LogPosition catch_up_from_;
  std::map<std::string, KeyLog> log_;
  struct LinePosition {
    std::uint64_t segment = 0;
    std::uint64_t offset = 0;
    auto operator<=>(const LinePosition&) const = default;
  };
  std::vector<LinePosition> torn_unseen_;  // torn lines not acknowledged, in log order
  std::size_t repair_records_ = 0;         // appended by this run
  std::map<std::string, fs::path> files_;
  std::map<fs::path, std::string> temps_;
  std::map<fs::path, std::string> lock_files_;         // key ("" for a stripe's)
  std::map<fs::path, std::string> breaker_leftovers_;  // key ("" for a stripe's)
  std::set<std::string> suspects_;
  std::vector<Finding> findings_;
};

}  // namespace

std::vector<Finding> Store::verify() const {
  if (backend_) return backend_->verify();
  return Checker(*impl_, /*fix=*/false).run();
}

std::vector<Finding> Store::repair() {
  if (backend_) return backend_->repair();
  // An update_many a crash left unfinished is completed first: its keys are not to be repaired.
  if (impl_->pending_transactions()) impl_->recover_transactions(impl_->deadline_from_now());
  return Checker(*impl_, /*fix=*/true).run();
}

}  // namespace lockdb
