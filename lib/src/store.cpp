// Store: opening (the marker), reads, and the locked read-modify-write.
//
// A write, step by step; the order is the protocol (store.hpp has the contract):
//   1. lock the key (store_locks.hpp): an in-process mutex for this process's other threads,
//      then flock(2) of "<key file>.lock" (or a stripe lock file) for other processes;
//   2. read the key file (absent is fine) and check that it parses: a corrupt file is never
//      overwritten;
//   3. render the new value (the same JSON text Python's json.dumps(indent=2) gives for it)
//      and its version, FNV-1a-64 of exactly those bytes;
//   4. write a temp file next to the key file, (fsync it,) rename it over the key file, (fsync
//      the directory); durability none fsyncs the temp file only where the rename does not
//      flush it (replace.hpp); power_loss_unsafe swaps it with the key file and unlinks the old
//      one instead (readers see the same: old or new), which spares ext4's writeback per rename;
//   5. append one record (previous version -> new version) to the log, still under the lock, so
//      each key's records are in its commit order;
//   6. unlock.
// A crash between 4 and 5 leaves the key file one change ahead of the log: verify() reports it,
// repair() logs it. update_many is a transaction (store_txn.cpp): all of it or nothing. When step 5
// fails (a full disk), the write is taken back (the old bytes are put back under the lock) and the
// error says so; readers may have seen the new value meanwhile.
//
// Why the version is a hash of the file and not a counter: anyone may rewrite a key file (the
// seed's Python helpers, an editor). A hash needs no cooperation from them, yet their change
// shows: the next logged record's "prev" differs from the record before it.
#include <lockdb/store.hpp>
#include <lockdb/time.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <set>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>

#include "json_io.hpp"
#include "os.hpp"
#include "store_backend.hpp"
#include "store_format.hpp"
#include "store_impl.hpp"
#include "util.hpp"

namespace lockdb {

namespace fs = std::filesystem;
namespace format = detail::store_format;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Opening

namespace {

struct Marker {
  int version = 0;
  std::size_t lock_stripes = 0;
};

Marker parse_marker(const fs::path& path, const std::string& text) {
  json doc;
  try {
    doc = detail::json_io::parse(text);
  } catch (const json::parse_error&) {
    doc = json::value_t::discarded;
  }
  if (doc.is_discarded() || !doc.is_object()) {
    throw Error(Errc::corrupt, "not a lockdb store", path, "the marker file does not parse");
  }
  auto format_name = doc.find(format::kFieldFormat);
  if (format_name == doc.end() || *format_name != std::string(format::kFormatName)) {
    throw Error(Errc::corrupt, "not a lockdb store", path,
                "the marker's \"format\" is not \"" + std::string(format::kFormatName) + "\"");
  }
  auto version = doc.find(format::kFieldVersion);
  if (version == doc.end() || !version->is_number_integer() || version->get<long long>() < 1) {
    throw Error(Errc::corrupt, "not a lockdb store", path,
                "the marker's \"version\" is not a positive integer");
  }
  if (version->get<long long>() > format::kStoreFormatVersion) {
    throw Error(Errc::version, "cannot open store", path,
                "its format version " + std::to_string(version->get<long long>()) +
                    " is newer than this lockdb reads (" +
                    std::to_string(format::kStoreFormatVersion) + "); upgrade lockdb");
  }
  Marker m;
  m.version = version->get<int>();
  if (auto stripes = doc.find(format::kFieldLockStripes); stripes != doc.end()) {
    if (!stripes->is_number_unsigned()) {
      throw Error(Errc::corrupt, "not a lockdb store", path,
                  "the marker's \"lock_stripes\" is not a non-negative integer");
    }
    m.lock_stripes = stripes->get<std::size_t>();
  }
  return m;
}

// A key file that holds just an integer literal (what increment writes), read without a JSON
// parse. nullopt for anything else (which then goes through the parser): other values, JSON's
// forbidden leading zeros, whitespace, and integers beyond 64 bits.
std::optional<std::int64_t> plain_integer(std::string_view text) {
  const std::size_t digits = !text.empty() && text.front() == '-' ? 1 : 0;
  if (text.size() <= digits || (text[digits] == '0' && text.size() > digits + 1)) {
    return std::nullopt;
  }
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

bool is_marker_temp(std::string_view name) {
  if (!name.starts_with('.')) return false;
  name.remove_prefix(1);
  return name.starts_with(format::kMarkerFile) &&
         name.substr(std::string_view(format::kMarkerFile).size()).starts_with('.');
}

// A directory without a marker may become a store only when it holds nothing else (temp files
// of another process creating the marker right now are fine). Another opener may have finished
// creating the store since our marker read found nothing: it puts the marker in place before it
// makes anything else, so an entry seen here with the marker now present is that store, not a
// foreign directory.
void require_empty(const fs::path& dir, int dir_fd) {
  auto names = os::list_dir(dir_fd);
  if (!names.ok()) os::throw_errno("cannot list", dir, names.err);
  for (const std::string& name : names.value) {
    if (is_marker_temp(name)) continue;
    if (os::lstat_at(dir_fd, format::kMarkerFile.data()).ok()) return;
    throw Error(Errc::corrupt, "not a lockdb store", dir,
                "the directory is not empty and has no " + std::string(format::kMarkerFile) +
                    " (found \"" + name + "\")");
  }
}

// Writes the marker without ever replacing one: a temp file, then a rename that refuses to
// replace (link(2) where the filesystem cannot), which fails with EEXIST when another process was
// first (its marker then wins).
void create_marker(const fs::path& dir, int dir_fd, std::size_t lock_stripes,
                   os::CreateMode create) {
  json doc = {{format::kFieldFormat, format::kFormatName},
              {format::kFieldVersion, format::kStoreFormatVersion},
              {format::kFieldLockStripes, lock_stripes},
              {format::kFieldCreated, format_time(std::chrono::system_clock::now())}};
  const std::string text = doc.dump(2) + "\n";
  std::string temp;
  auto fd = os::create_temp_at(dir_fd, dir.native(), "." + std::string(format::kMarkerFile) + ".",
                               &temp, 0666, os::TempName::random, create);
  if (!fd.ok()) os::throw_errno("cannot create the store marker in", dir, fd.err);
  const std::string temp_name = temp.substr(temp.rfind('/') + 1);
  const std::string marker(format::kMarkerFile);
  os::Status s = os::write_all(fd.value, text);
  if (s.ok()) s = os::fsync(fd.value);
  os::close(fd.value);
  if (s.ok()) {
    s = os::rename_noreplace_at(dir_fd, temp_name, marker);
    if (s.err == EINVAL || s.err == ENOSYS || s.err == EOPNOTSUPP) {
      s = os::link(temp, (dir / marker).native());
    }
    if (s.err == EEXIST) s = {};
  }
  (void)os::unlink_at(dir_fd, temp_name);  // gone already after the rename
  if (!s.ok()) os::throw_errno("cannot create the store marker in", dir, s.err);
  if (auto d = os::fsync(dir_fd); !d.ok()) os::throw_errno("cannot fsync", dir, d.err);
}

// The CreateMode of the store whose directory is open at `root_fd`: group-shared when it is setgid
// and group-writable (os::create_mode_of_root). One fstat.
os::CreateMode create_mode_of(const fs::path& dir, int root_fd, const char* context) {
  auto st = os::fstat(root_fd);
  if (!st.ok()) os::throw_errno(context, dir, st.err);
  return os::create_mode_of_root(st.value.mode);
}

// StoreOptions::shared_group, for a store being created: its directory becomes setgid and
// group-writable (unless it is so already), keeping its group. Returns the store's CreateMode.
// THROWS Error{permission} when this process may not (not the directory's owner; not in its
// group, where the kernel keeps the setgid bit off).
os::CreateMode share_root(const fs::path& dir, int root_fd) {
  const char* context = "cannot make the store group-shared";
  auto st = os::fstat(root_fd);
  if (!st.ok()) os::throw_errno(context, dir, st.err);
  if (!os::create_mode_of_root(st.value.mode).group_shared) {
    if (auto s = os::fchmod(root_fd, (st.value.mode & 07777) | S_ISGID | S_IRWXG); !s.ok()) {
      os::throw_errno(context, dir, s.err);
    }
  }
  const os::CreateMode create = create_mode_of(dir, root_fd, context);
  if (!create.group_shared) {
    throw Error(Errc::permission, context, dir,
                "the setgid bit did not stay on (this process is not in the directory's group)");
  }
  return create;
}

// keys/ or log/ of the store open at `root_fd`, made when missing, opened following no link.
os::Fd open_store_dir(const fs::path& dir, int root_fd, std::string_view name,
                      os::CreateMode create) {
  const std::string n(name);
  if (auto s = os::mkdir_at(root_fd, n, 0777, create); !s.ok() && s.err != EEXIST) {
    os::throw_errno("cannot create store directory", dir / n, s.err);
  }
  auto fd = os::open_beneath(root_fd, n, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) os::throw_beneath("cannot open store", dir.native(), root_fd, n, fd.err);
  return os::Fd(fd.value);
}

// The marker's text; ENOENT when there is none. A marker that is a link or no regular file is
// refused (Error{invalid_argument}), and a FIFO never blocks the open.
// One of the store's own files at its root (`name`), never following a link or blocking on a
// planted FIFO: ENOENT when missing; THROWS Error (naming `context`) for anything else planted.
os::Result<std::string> read_root_file(const fs::path& dir, int root_fd, std::string_view name,
                                       const std::string& context) {
  auto fd = os::open_beneath(root_fd, name, O_RDONLY | O_NONBLOCK);
  if (!fd.ok()) {
    if (fd.err == ENOENT) return {{}, ENOENT};
    os::throw_beneath(context, dir.native(), root_fd, name, fd.err);
  }
  os::Fd owned(fd.value);
  os::require_plain_file(owned.get(), context, dir / name, /*one_link=*/true);
  return os::read_all(owned.get());
}

os::Result<std::string> read_marker(const fs::path& dir, int root_fd) {
  return read_root_file(dir, root_fd, format::kMarkerFile, "cannot read the store marker");
}

}  // namespace

detail::StoreImpl::StoreImpl(fs::path store_dir, StoreOptions store_options)
    : options(store_options), locks(store_options.max_open_locks) {
  dir = os::absolute(store_dir).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "a/b/" -> "a/b"
  keys_dir = dir / format::kKeysDir;
  log_dir = dir / format::kLogDir;

  // The store's own path is the caller's to choose (a link to it is followed); nothing inside
  // it is followed from here on.
  auto root = os::open(dir, O_RDONLY | O_DIRECTORY);
  if (!root.ok() && root.err == ENOENT) {
    if (!options.create) {
      throw Error(Errc::not_found, "no lockdb store", dir, "the directory does not exist");
    }
    if (auto s = os::mkdirs(dir); !s.ok()) os::throw_errno("cannot create store", dir, s.err);
    root = os::open(dir, O_RDONLY | O_DIRECTORY);
  }
  if (!root.ok()) {
    if (root.err == ENOTDIR) {
      throw Error(Errc::invalid_argument, "cannot open store", dir, "it is not a directory");
    }
    os::throw_errno("cannot open store", dir, root.err);
  }
  root_fd.reset(root.value);

  const fs::path marker_path = dir / format::kMarkerFile;
  auto text = read_marker(dir, root_fd.get());
  if (!text.ok() && text.err == ENOENT) {
    if (!options.create) {
      throw Error(Errc::not_found, "no lockdb store", dir,
                  "there is no " + std::string(format::kMarkerFile) + " (create = false)");
    }
    require_empty(dir, root_fd.get());
    create_marker(dir, root_fd.get(), options.lock_stripes,
                  options.shared_group ? share_root(dir, root_fd.get())
                                       : create_mode_of(dir, root_fd.get(), "cannot create store"));
    text = read_marker(dir, root_fd.get());
  }
  if (!text.ok()) os::throw_errno("cannot read the store marker", marker_path, text.err);
  Marker marker = parse_marker(marker_path, text.value);
  if (options.lock_stripes != 0 && options.lock_stripes != marker.lock_stripes) {
    throw Error(Errc::invalid_argument, "cannot open store", dir,
                "it uses lock_stripes = " + std::to_string(marker.lock_stripes) +
                    ", the options ask for " + std::to_string(options.lock_stripes) +
                    " (0 adopts the store's)");
  }
  options.lock_stripes = marker.lock_stripes;
  format_version = marker.version;
  // Looked at once the marker is there: a creator asked for shared_group makes the root shared
  // before it puts the marker in place. One fstat per open.
  create_mode = create_mode_of(dir, root_fd.get(), "cannot open store");
  options.shared_group = create_mode.group_shared;
  keys_fd = open_store_dir(dir, root_fd.get(), format::kKeysDir, create_mode);
  log_fd = open_store_dir(dir, root_fd.get(), format::kLogDir, create_mode);
  locks.open_beneath(keys_fd.get(), keys_dir.native().size() + 1, create_mode,
                     lock_files_removed());
  const long keys_fs = os::fs_magic(keys_fd.get());
  open_txn_dir();
  swap_in = detail::swap_in_pays(keys_fs);
  rename_flushes = os::rename_flushes_data(keys_fd.get());
  short_reads_end = os::short_reads_end(keys_fs);
}

detail::LogWriter& detail::StoreImpl::log_writer() {
  std::call_once(log_once_, [this] {
    log_ = std::make_unique<detail::LogWriter>(log_dir, log_fd.get(), options.log_segment_bytes,
                                               options.durability, create_mode);
  });
  return *log_;
}

std::string detail::StoreImpl::context(const std::string& key) const {
  return "key " + format::quote_key(key);
}

// ---------------------------------------------------------------------------------------------
// Keys, locks, files

detail::StoreImpl::KeyPaths detail::StoreImpl::paths(const std::string& key) const {
  if (std::string problem = format::key_problem(key); !problem.empty()) {
    throw Error(Errc::invalid_argument, "invalid key " + format::quote_key(key), {},
                "the key " + problem);
  }
  KeyPaths p;
  p.key = key;
  // Built as text and parsed into a path once each: every std::filesystem::path made, copied or
  // appended to splits its components anew, and a key the path cache does not hold (a store of
  // many keys read at random) paid ~6,000 instructions for its paths.
  std::string file;
  file.reserve(keys_dir.native().size() + 4 + 2 * key.size() + 16);
  file += keys_dir.native();
  file += '/';
  format::append_key_file_relative(key, file, format_version);
  p.lock = lock_path_of(key, file);
  p.file = std::move(file);
  p.rel_at = keys_dir.native().size() + 1;
  p.context = context(key);
  return p;
}

std::shared_ptr<const detail::StoreImpl::KeyPaths> detail::StoreImpl::cached_paths(
    const std::string& key) const {
  {
    std::lock_guard<std::mutex> guard(path_cache_mu_);
    if (auto it = path_cache_.find(key); it != path_cache_.end()) return it->second;
  }
  auto made = std::make_shared<const KeyPaths>(paths(key));  // throws for an invalid key
  std::lock_guard<std::mutex> guard(path_cache_mu_);
  if (path_cache_.size() >= kPathCacheSize) path_cache_.clear();
  path_cache_.emplace(key, made);
  return made;
}

std::string detail::StoreImpl::lock_path_of(std::string_view key, const std::string& file) const {
  std::string lock;
  if (options.lock_stripes == 0) {  // the key file's path is made already
    lock.reserve(file.size() + format::kLockSuffix.size());
    lock += file;
    lock += format::kLockSuffix;
  } else {
    lock += keys_dir.native();
    lock += '/';
    format::append_lock_file_relative(key, options.lock_stripes, lock, format_version);
  }
  return lock;
}

void detail::StoreImpl::walk_dir(const fs::path& path, int depth,
                                 const std::function<void(const WalkEntry&)>& fn) const {
  auto listed = os::list_dir_entries(path);
  if (!listed.ok()) {
    if (listed.err == ENOENT) return;  // removed meanwhile
    os::throw_errno("cannot list", path, listed.err);
  }
  for (auto& entry : listed.value) {
    WalkEntry e;
    e.path = path / entry.name;
    e.name = std::move(entry.name);
    e.depth = depth;
    e.is_dir = entry.type == os::DirEntry::Type::directory;
    e.is_file = entry.type == os::DirEntry::Type::regular;
    fn(e);
    if (e.is_dir &&
        (depth == 0 ? format::is_shard_name(e.name) : format::is_continuation_dir(e.name))) {
      walk_dir(e.path, depth + 1, fn);
    }
  }
}

void detail::StoreImpl::walk_keys(const std::function<void(const WalkEntry&)>& fn) const {
  walk_dir(keys_dir, 0, fn);
}

detail::KeyLocks::Hold detail::StoreImpl::lock_file(const std::string& lock_path,
                                                    const std::string& key, Deadline deadline) {
  if (!deadline) return locks.acquire(lock_path, std::chrono::nanoseconds(-1), key);  // forever
  const auto left = std::max(std::chrono::nanoseconds::zero(),
                             std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 *deadline - std::chrono::steady_clock::now()));
  try {
    return locks.acquire(lock_path, left, key);
  } catch (const Timeout& e) {  // named with the call's whole timeout, not what was left of it
    throw Timeout(context(key), e.path(), options.lock_timeout, e.holder());
  }
}

detail::KeyLocks::Hold detail::StoreImpl::lock_key(const KeyPaths& p) {
  return locks.acquire(p.lock, options.lock_timeout, p.key);
}

detail::StoreImpl::Current detail::StoreImpl::read_current(const KeyPaths& p,
                                                           bool with_version) const {
  Current cur;
  // O_NONBLOCK: a FIFO planted at the key file's path must not block the open.
  auto fd = os::open_beneath(keys_fd.get(), p.file_rel(), O_RDONLY | O_NONBLOCK);
  if (!fd.ok()) {
    if (fd.err == ENOENT) return cur;
    os::throw_beneath(context(p.key) + ": cannot open the key file", keys_dir.native(),
                      keys_fd.get(), p.file_rel(), fd.err);
  }
  os::Fd owned(fd.value);
  os::require_plain_file(owned.get(), context(p.key) + ": cannot read the key file", p.file,
                         /*one_link=*/false);
  auto data = os::read_all(owned.get(), short_reads_end);
  if (!data.ok()) os::throw_errno(context(p.key) + ": cannot read the key file", p.file, data.err);
  cur.exists = true;
  cur.bytes = std::move(data.value);
  if (with_version) cur.version = format::version_of(cur.bytes);
  return cur;
}

json detail::StoreImpl::parse(const KeyPaths& p, const Current& cur) const {
  try {
    return detail::json_io::parse(cur.bytes);
  } catch (const json::exception& e) {
    throw Error(Errc::corrupt, context(p.key) + ": the key file does not parse", p.file,
                std::string(e.what()) + " (nothing was written; repair() moves it aside)");
  }
}

void detail::StoreImpl::check_parses(const KeyPaths& p, const Current& cur) const {
  if (!detail::json_io::accepts(cur.bytes))
    (void)parse(p, cur);  // parse() throws the detailed error
}

std::string detail::StoreImpl::render(const KeyPaths& p, const json& value) const {
  if (value.is_discarded()) {
    throw Error(Errc::invalid_argument, context(p.key), {}, "the value is a discarded json");
  }
  try {
    return format::file_text(detail::json_io::dump(value, 2), format_version);
  } catch (const detail::json_io::ValueError& e) {
    throw Error(Errc::invalid_argument, context(p.key) + ": the value cannot be stored", {},
                e.what());
  }
}

os::Fd detail::StoreImpl::open_key_dir(const KeyPaths& p, bool create, bool for_fsync) const {
  const std::string_view rel = p.dir_rel();
  const int flags = (for_fsync ? O_RDONLY : O_PATH) | O_DIRECTORY;
  auto fd = os::open_beneath(keys_fd.get(), rel, flags);
  if (!fd.ok() && fd.err == ENOENT && create) {
    // The key's directory does not exist yet (striped locks; a lock file creates its own).
    if (auto s = os::mkdirs_beneath(keys_fd.get(), rel, 0777, create_mode); !s.ok()) {
      os::throw_beneath(p.context + ": cannot create the key's directory", keys_dir.native(),
                        keys_fd.get(), rel, s.err);
    }
    fd = os::open_beneath(keys_fd.get(), rel, flags);
  }
  if (!fd.ok()) {
    os::throw_beneath(p.context + ": cannot open the key's directory", keys_dir.native(),
                      keys_fd.get(), rel, fd.err);
  }
  return os::Fd(fd.value);
}

bool detail::StoreImpl::lock_files_removed() const noexcept {
  return format_version >= 2 && options.lock_stripes == 0;
}

void detail::StoreImpl::drop_lock_file(const KeyPaths& p) const noexcept {
  if (!lock_files_removed()) return;
  auto key_dir = os::open_beneath(keys_fd.get(), p.dir_rel(), O_PATH | O_DIRECTORY);
  if (!key_dir.ok()) return;
  (void)os::unlink_at(key_dir.value, std::string(p.name()) + std::string(format::kLockSuffix));
  os::close(key_dir.value);
}

void detail::StoreImpl::unlink_key_file(const KeyPaths& p) const {
  os::Fd key_dir = open_key_dir(p, /*create=*/false);
  if (auto s = os::unlink_at(key_dir.get(), p.name()); !s.ok()) {
    os::throw_errno(context(p.key) + ": cannot remove the key file", p.file, s.err);
  }
}

os::Status detail::StoreImpl::fsync_key_dir(std::string_view key_dir) const {
  const std::string_view rel = key_dir.substr(keys_dir.native().size() + 1);
  auto fd = os::open_beneath(keys_fd.get(), rel, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) return {fd.err};
  os::Status s = os::fsync(fd.value);
  os::close(fd.value);
  return s;
}

detail::StagedReplace detail::StoreImpl::stage_file(const KeyPaths& p, std::string_view bytes,
                                                    std::optional<bool> exists) const {
  detail::ReplaceOptions ro;
  ro.keep_mode = false;  // key files get 0666 & ~umask, as the seed's Python writes them
  // Durability::power_loss_unsafe: swap the new file in instead of renaming over the old one
  // where a rename over a file costs a writeback of the new one per write (ext4, btrfs:
  // replace.hpp). none: renamed over the old file where that flushes (ext4), else fsynced first.
  ro.swap_in = swap_in;
  ro.target_exists = exists;
  ro.rename_flushes = rename_flushes;
  ro.context = p.context;
  ro.create = create_mode;
  os::Fd key_dir = open_key_dir(p, /*create=*/true, options.durability == Durability::full);
  ro.dir_fd = key_dir.get();
  ro.owns_dir_fd = true;
  detail::StagedReplace staged(p.file, bytes, options.durability, ro);
  (void)key_dir.release();  // staged owns it now
  return staged;
}

void detail::StoreImpl::replace_file(const KeyPaths& p, std::string_view bytes) const {
  stage_file(p, bytes, /*exists=*/std::nullopt).commit();
}

detail::StagedRemove detail::StoreImpl::remove_aside(const KeyPaths& p) const {
  os::Fd key_dir = open_key_dir(p, /*create=*/false);
  detail::StagedRemove removed(p.file, p.context, key_dir.get(), /*owns_dir_fd=*/true);
  (void)key_dir.release();  // removed owns it now
  return removed;
}

std::optional<Error> detail::StoreImpl::remove_file(const KeyPaths& p, const char* done) const {
  unlink_key_file(p);
  return sync_key_dir(p, done);
}

detail::StoreImpl::Deadline detail::StoreImpl::deadline_from_now() const {
  if (options.lock_timeout < std::chrono::nanoseconds::zero()) return std::nullopt;
  return add_saturating(std::chrono::steady_clock::now(), options.lock_timeout);
}

void detail::StoreImpl::append_record(Deadline deadline, const KeyPaths& p, std::string_view op,
                                      const json* value, const std::optional<std::string>& prev,
                                      const std::optional<std::string>& version,
                                      std::string_view file_bytes) {
  detail::RecordFields fields;
  fields.time = std::chrono::system_clock::now();
  fields.key = p.key;
  fields.op = op;
  fields.value = value;
  if (prev) fields.prev_version = *prev;
  if (version) fields.version = *version;
  const std::string_view text = format::value_text(file_bytes);
  if (value != nullptr && !text.empty() && text.find('\n') == std::string_view::npos) {
    fields.value_json = text;  // dump(2) of a scalar or an empty container is compact
  }
  log_writer().append(detail::render_record(fields), deadline);
}

void detail::StoreImpl::restore(const KeyPaths& p, const Current& before) const {
  if (before.exists) {
    replace_file(p, before.bytes);
  } else if (auto not_durable = remove_file(p, "the key is erased")) {
    throw *not_durable;
  }
}

std::optional<Error> detail::StoreImpl::sync_key_dir(const KeyPaths& p, const char* done) const {
  if (options.durability != Durability::full) return std::nullopt;
  const std::string key_dir(p.dir());
  if (auto s = fsync_key_dir(key_dir); !s.ok()) {
    return Error(os::errc_for_errno(s.err),
                 context(p.key) + ": cannot fsync the key's directory (" + done +
                     ", but may not survive power loss)",
                 key_dir, s.err);
  }
  return std::nullopt;
}

namespace {
// Appended to the error of a write that failed before anything changed.
constexpr std::string_view kNothingWritten = " (nothing was written: the old value is in place)";
}  // namespace

void detail::StoreImpl::log_change(Deadline deadline, const KeyPaths& p,
                                   const std::function<void()>& undo, std::string_view op,
                                   const json* value, const std::optional<std::string>& prev,
                                   const std::optional<std::string>& version,
                                   std::string_view file_bytes, const char* done,
                                   std::optional<Error>& not_durable) {
  try {
    append_record(deadline, p, op, value, prev, version, file_bytes);
  } catch (const detail::LogSyncError& e) {
    if (!not_durable) {
      not_durable = Error(e.code(),
                          context(p.key) + ": " + done +
                              ", but the log cannot be fsynced: the change may not survive "
                              "power loss",
                          e.path(), e.sys_errno());
    }
  } catch (const Error& e) {
    throw_after_log_failure(p, undo, e);
  }
}

void detail::StoreImpl::throw_after_log_failure(const KeyPaths& p,
                                                const std::function<void()>& undo,
                                                const Error& log_error) {
  const std::string cause = log_error.what();
  try {
    undo();
  } catch (const Error& undo_error) {
    throw Error(log_error.code(),
                context(p.key) +
                    ": the new value is in place but its log record could not be appended, "
                    "and putting the old value back failed too (" +
                    undo_error.what() + "); repair() records it",
                p.file, cause, log_error.sys_errno());
  }
  if (const auto* timeout = dynamic_cast<const Timeout*>(&log_error)) {
    throw Timeout(context(p.key) + ": the write was taken back (nothing logged)", timeout->path(),
                  options.lock_timeout, timeout->holder());
  }
  throw Error(log_error.code(),
              context(p.key) +
                  ": the log record could not be appended, so the write was taken back (the "
                  "old value is in place, nothing was logged)",
              p.file, cause, log_error.sys_errno());
}

template <class Decide>
detail::StoreImpl::Outcome detail::StoreImpl::write_one(const std::string& key, std::string_view op,
                                                        Decide&& decide) {
  const auto paths_of_key = cached_paths(key);
  const KeyPaths& p = *paths_of_key;
  const Deadline deadline = deadline_from_now();  // of every wait: the key's lock, then the log's
  detail::KeyLocks::Hold hold = lock_key(p);
  // An update_many a crash left unfinished may hold this key (store_txn.cpp): completed first.
  while (pending_transactions() && dead_transaction()) {
    hold = detail::KeyLocks::Hold();
    recover_transactions(deadline);
    hold = lock_key(p);
  }
  const Current cur = read_current(p);
  LockFileDrop lock_file_drop{*this, p, !cur.exists};
  Decision d = decide(p, cur);
  Outcome out;
  if (d.action == Decision::Action::keep) return out;
  out.changed = true;
  std::optional<std::string> prev;
  if (cur.exists) prev = cur.version;
  // The change is in place (other processes may read it) before anything is fsynced; from then
  // on a failed fsync does not take it back: it is logged, and the call throws saying that it
  // may not survive power loss, so that the log and the store agree. The old file is kept (under
  // a temp name) until the record is in the log, so that a failed append (a full disk) takes the
  // change back without writing anything; the staged file's destructor removes it, under the
  // key's lock.
  std::optional<Error> not_durable;
  if (d.action == Decision::Action::write) {
    const char* done = "the new value is in place and logged";
    const std::string bytes = render(p, d.value);
    out.version = format::version_of(bytes);
    std::optional<detail::StagedReplace> staged;
    try {
      staged.emplace(stage_file(p, bytes, cur.exists));
      staged->commit_keeping_old(/*fsync_dir=*/false);
    } catch (const Error& e) {
      throw Error(e, kNothingWritten);
    }
    not_durable = sync_key_dir(p, done);
    log_change(
        deadline, p, [&] { take_back(p, cur, *staged); }, op, &d.value, prev, out.version, bytes,
        done, not_durable);
    lock_file_drop.absent = false;
    out.value = std::move(d.value);
  } else {
    const char* done = "the key is erased and the erase logged";
    std::optional<detail::StagedRemove> removed;
    try {
      removed.emplace(remove_aside(p));
    } catch (const Error& e) {
      throw Error(e, kNothingWritten);
    }
    not_durable = sync_key_dir(p, done);
    log_change(
        deadline, p, [&] { take_back(p, cur, *removed); }, op, nullptr, prev, std::nullopt, {},
        done, not_durable);
    lock_file_drop.absent = true;
  }
  if (not_durable) throw *not_durable;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Store

namespace {

// The boot id the store's last recovery ran in (format::kBootFile); empty when none is recorded.
// Anything else at its name (a planted link or FIFO) counts as none: the recovery then runs and
// puts a file there.
std::string recovered_boot(const detail::StoreImpl& impl) {
  os::Result<std::string> text;
  try {
    text = read_root_file(impl.dir, impl.root_fd.get(), format::kBootFile,
                          "cannot read the store's boot-id");
  } catch (const Error&) {
    return {};
  }
  if (!text.ok()) return {};
  std::string id = std::move(text.value);
  while (!id.empty() && (id.back() == '\n' || id.back() == '\r')) id.pop_back();
  return id;
}

}  // namespace

Store::Store(fs::path dir, StoreOptions options)
    : backend_(detail::open_store_backend(dir, options)),
      impl_(backend_ ? nullptr : std::make_unique<Impl>(std::move(dir), options)) {
  if (!impl_) return;
  // A power cut or kernel crash takes the page cache with it: what was not yet on disk is lost,
  // and with durability none (or file) that can be a log record whose key file survived, or a
  // file of an update_many. The first Store opened in a new boot (the boot id the store recorded
  // differs) runs repair(), which completes unfinished update_many calls, logs each key file the
  // log lags behind (op "repair") and marks torn log lines as seen, so the log and the keys agree
  // again; then records this boot. One read of a small file otherwise. A process that cannot
  // (a read-only store or user, a lock not had in time) leaves it to the next one that opens it.
  const std::string& boot = os::boot_id();
  if (!boot.empty() && recovered_boot(*impl_) != boot) {
    try {
      repair();
      detail::ReplaceOptions replace;
      replace.keep_mode = false;
      replace.context = "cannot record the store's recovery";
      replace.dir_fd = impl_->root_fd.get();
      replace.create = impl_->create_mode;
      detail::atomic_replace(impl_->dir / format::kBootFile, boot + "\n", Durability::file,
                             replace);
    } catch (const Error&) {
    }
    return;
  }
  // Completes what an update_many a crash left unfinished. A reader that cannot (a read-only
  // store, a lock not had in time) leaves it to the next writer, who must.
  if (impl_->pending_transactions()) {
    try {
      impl_->recover_transactions(impl_->deadline_from_now());
    } catch (const Error&) {
    }
  }
}

Store::~Store() = default;
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;

const fs::path& Store::dir() const noexcept {
  if (backend_) return backend_->location();
  return impl_->dir;
}
const StoreOptions& Store::options() const noexcept {
  if (backend_) return backend_->options();
  return impl_->options;
}

fs::path Store::file_path(std::string_view key_view) const {
  const std::string key(key_view);
  if (backend_) return backend_->file_path(key);
  return impl_->paths(key).file;
}

std::optional<Entry> Store::entry(std::string_view key_view) const {
  const std::string key(key_view);
  if (backend_) return backend_->entry(key);
  const auto paths = impl_->cached_paths(key);
  const auto& p = *paths;
  auto cur = impl_->read_current(p);
  if (!cur.exists) return std::nullopt;
  return Entry{impl_->parse(p, cur), std::move(cur.version)};
}

std::optional<json> Store::get(std::string_view key_view) const {
  const std::string key(key_view);
  if (backend_) return backend_->get(key);
  const auto paths = impl_->cached_paths(key);
  const auto& p = *paths;
  auto cur = impl_->read_current(p, /*with_version=*/false);
  if (!cur.exists) return std::nullopt;
  return impl_->parse(p, cur);
}

bool Store::contains(std::string_view key_view) const {
  const std::string key(key_view);
  if (backend_) return backend_->contains(key);
  const auto paths = impl_->cached_paths(key);
  const auto& p = *paths;
  // By name beneath keys/, following no link: O_PATH opens a link at the key file itself.
  auto fd = os::open_beneath(impl_->keys_fd.get(), p.file_rel(), O_PATH);
  if (!fd.ok()) {
    if (fd.err == ENOENT) return false;
    os::throw_beneath(impl_->context(key) + ": cannot stat the key file", impl_->keys_dir.native(),
                      impl_->keys_fd.get(), p.file_rel(), fd.err);
  }
  auto st = os::fstat(fd.value);
  os::close(fd.value);
  if (!st.ok()) os::throw_errno(impl_->context(key) + ": cannot stat the key file", p.file, st.err);
  return S_ISREG(st.value.mode);
}

std::vector<std::string> Store::keys() const {
  if (backend_) return backend_->keys();
  std::vector<std::string> out;
  impl_->walk_keys([&](const Impl::WalkEntry& e) {
    if (!e.is_file || e.depth == 0 || !format::is_key_file_name(e.name)) return;
    if (auto key = format::decode_key_file(e.path.lexically_relative(impl_->keys_dir),
                                           impl_->format_version)) {
      out.push_back(std::move(*key));
    }
  });
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// Refuses a value beyond json_io's limits before anything copies it (a copy recurses per level).
void check_value(const std::string& key, const json& value) {
  try {
    detail::json_io::check(value);
  } catch (const detail::json_io::ValueError& e) {
    throw Error(Errc::invalid_argument,
                "key " + format::quote_key(key) + ": the value cannot be stored", {}, e.what());
  }
}

}  // namespace

std::string Store::put(std::string_view key_view, const json& value, std::string_view op) {
  const std::string key(key_view);
  check_op_name(op);
  check_value(key, value);
  if (backend_) return backend_->put(key, value, op);
  return impl_
      ->write_one(key, op,
                  [&](const Impl::KeyPaths& p, const Impl::Current& cur) {
                    if (cur.exists) impl_->check_parses(p, cur);
                    return Impl::Decision{Impl::Decision::Action::write, value};
                  })
      .version;
}

json Store::update_with(std::string_view key_view, const std::function<void(json&)>& fn) {
  const std::string key(key_view);
  if (backend_) return backend_->update(key, fn);
  return impl_
      ->write_one(key, "update",
                  [&](const Impl::KeyPaths& p, const Impl::Current& cur) {
                    json value = cur.exists ? impl_->parse(p, cur) : json();
                    fn(value);
                    return Impl::Decision{Impl::Decision::Action::write, std::move(value)};
                  })
      .value;
}

std::int64_t Store::increment(std::string_view key_view, std::int64_t delta) {
  const std::string key(key_view);
  if (backend_) return backend_->increment(key, delta);
  std::int64_t result = 0;
  impl_->write_one(key, "increment", [&](const Impl::KeyPaths& p, const Impl::Current& cur) {
    std::int64_t before = 0;
    if (auto plain = cur.exists ? plain_integer(format::value_text(cur.bytes)) : std::nullopt) {
      before = *plain;
    } else if (cur.exists) {
      json value = impl_->parse(p, cur);
      if (value.is_number_unsigned() &&
          value.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
        throw Error(Errc::invalid_argument, impl_->context(key) + ": cannot increment", p.file,
                    "the value " + value.dump() + " does not fit in a 64-bit signed integer");
      }
      if (!value.is_number_integer()) {
        std::string shown = value.dump();
        if (shown.size() > 80) shown = shown.substr(0, 77) + "...";
        throw Error(Errc::invalid_argument, impl_->context(key) + ": cannot increment", p.file,
                    "the value is not an integer: " + shown);
      }
      before = value.get<std::int64_t>();
    }
    if (__builtin_add_overflow(before, delta, &result)) {
      throw Error(Errc::invalid_argument, impl_->context(key) + ": cannot increment", p.file,
                  std::to_string(before) + " + " + std::to_string(delta) +
                      " overflows a 64-bit signed integer");
    }
    return Impl::Decision{Impl::Decision::Action::write, json(result)};
  });
  return result;
}

bool Store::erase(std::string_view key_view) {
  const std::string key(key_view);
  if (backend_) return backend_->erase(key);
  return impl_
      ->write_one(key, "erase",
                  [&](const Impl::KeyPaths& p, const Impl::Current& cur) {
                    if (!cur.exists) return Impl::Decision{};
                    impl_->check_parses(p, cur);
                    return Impl::Decision{Impl::Decision::Action::erase, json()};
                  })
      .changed;
}

bool Store::compare_and_put(std::string_view key_view,
                            const std::optional<std::string>& expected_version, const json& value,
                            std::string_view op) {
  const std::string key(key_view);
  check_op_name(op);
  check_value(key, value);
  if (backend_) return backend_->compare_and_put(key, expected_version, value, op);
  return impl_
      ->write_one(
          key, op,
          [&](const Impl::KeyPaths& p, const Impl::Current& cur) {
            // A corrupt file is an error whatever is expected (as for every write).
            if (cur.exists) impl_->check_parses(p, cur);
            if (expected_version ? !cur.exists || cur.version != *expected_version : cur.exists) {
              return Impl::Decision{};
            }
            return Impl::Decision{Impl::Decision::Action::write, value};
          })
      .changed;
}

std::map<std::string, json> Store::update_many(
    const std::vector<std::string>& keys,
    const std::function<void(std::map<std::string, json>&)>& fn) {
  if (backend_) return backend_->update_many(keys, fn);
  // Validate everything first; then lock in one global order (by lock file: with stripes two
  // keys may share one), which makes concurrent update_many calls deadlock-free.
  std::map<std::string, Impl::KeyPaths> requested;
  for (const auto& key : keys) requested.emplace(key, impl_->paths(key));
  std::map<fs::path, const std::string*> lock_order;  // by path, as before: processes agree
  for (const auto& [key, p] : requested) lock_order.emplace(p.lock, &key);
  const Impl::Deadline deadline = impl_->deadline_from_now();  // of every wait: keys, then log
  std::vector<detail::KeyLocks::Hold> holds;
  holds.reserve(lock_order.size());
  for (;;) {
    for (const auto& [lock, key] : lock_order) {
      holds.push_back(impl_->lock_file(lock.native(), *key, deadline));
    }
    // An update_many a crash left unfinished may hold some of these keys: completed first.
    if (!impl_->pending_transactions() || !impl_->dead_transaction()) break;
    holds.clear();
    impl_->recover_transactions(deadline);
  }

  std::map<std::string, Impl::Current> current;
  std::map<std::string, json> values;
  for (const auto& [key, p] : requested) {
    auto& cur = current[key] = impl_->read_current(p);
    if (cur.exists) values.emplace(key, impl_->parse(p, cur));
  }
  fn(values);
  for (const auto& [key, value] : values) {
    if (!requested.count(key)) {
      throw Error(Errc::invalid_argument, "update_many", {},
                  "the function added key " + detail::store_format::quote_key(key) +
                      ", which was not requested (nothing was written)");
    }
  }

  // Stage every new file first (a full disk fails here, before anything changed), then record the
  // intent (store_txn.cpp), log every change in one append, put the files in place, and drop the
  // intent. Until the intent is recorded a failure changes nothing; after it the update is
  // decided, and a failure (or a crash) leaves it to recovery, which completes it.
  struct Change {
    const Impl::KeyPaths* p;
    const Impl::Current* before;
    const json* value;  // nullptr: erase
    std::string version;
    std::optional<detail::StagedReplace> staged;
  };
  std::vector<Change> changes;
  json intent = json::array();
  for (const auto& [key, p] : requested) {
    const Impl::Current& cur = current[key];
    auto it = values.find(key);
    json entry = {{"key", key}, {"prev", cur.exists ? json(cur.version) : json()}};
    if (it == values.end()) {
      if (!cur.exists) continue;
      changes.push_back(Change{&p, &cur, nullptr, {}, std::nullopt});
      entry["version"] = nullptr;
      intent.push_back(std::move(entry));
      continue;
    }
    std::string bytes = impl_->render(p, it->second);
    if (cur.exists && bytes == cur.bytes) continue;
    changes.push_back(Change{&p, &cur, &it->second, format::version_of(bytes), std::nullopt});
    entry["version"] = changes.back().version;
    entry["bytes"] = bytes;  // the key file's text: a string, however deep the value nests
    intent.push_back(std::move(entry));
    try {
      changes.back().staged.emplace(impl_->stage_file(p, bytes, cur.exists));
    } catch (const Error& e) {
      throw Error(e, " (nothing was written: every key is as before)");
    }
  }
  // The keys the update leaves absent lose their lock files, still under the locks (format 2); a
  // failure leaves them (repair removes them).
  auto drop_lock_files_of_absent = [&] {
    for (const auto& [key, p] : requested) {
      if (!values.count(key)) impl_->drop_lock_file(p);
    }
  };
  if (changes.empty()) {
    drop_lock_files_of_absent();
    return values;
  }

  std::string lines;
  Impl::Txn txn;
  try {
    txn = impl_->begin_transaction(detail::json_io::dump(intent, -1), deadline);
    for (const Change& c : changes) {
      detail::RecordFields fields;
      fields.time = std::chrono::system_clock::now();
      fields.key = c.p->key;
      fields.op = "update_many";
      fields.value = c.value;
      if (c.before->exists) fields.prev_version = c.before->version;
      if (c.value) fields.version = c.version;
      fields.txn = txn.id;
      if (!lines.empty()) lines += '\n';
      lines += detail::render_record(fields);
    }
  } catch (const Error& e) {
    impl_->end_transaction(txn);
    throw Error(e, " (nothing was written: every key is as before)");
  }
  std::optional<Error> not_durable;
  try {
    impl_->log_writer().append_lines(lines, deadline);
  } catch (const detail::LogSyncError& e) {  // the records are in the log
    not_durable = e;
  } catch (const Error& e) {
    // Nothing is in place: the update is dropped (a torn append leaves at most a torn line).
    impl_->end_transaction(txn);
    if (const auto* timeout = dynamic_cast<const Timeout*>(&e)) {  // the log lock's
      throw Timeout("update_many: every change was taken back (nothing logged)", timeout->path(),
                    impl_->options.lock_timeout, timeout->holder());
    }
    throw Error(e.code(),
                "update_many: nothing was logged, so every change was taken back (the old "
                "values are in place)",
                {}, std::string(e.what()), e.sys_errno());
  }

  // As in write_one, a failed fsync does not take back changes in place: the call throws saying
  // they may not survive power loss.
  std::size_t done = 0;
  try {
    std::set<std::string, std::less<>> dirs;
    for (; done < changes.size(); ++done) {
      Change& c = changes[done];
      if (c.value) {
        c.staged->commit(/*fsync_dir=*/false);
      } else {
        impl_->unlink_key_file(*c.p);
      }
      dirs.emplace(c.p->dir());
    }
    if (impl_->options.durability == Durability::full) {
      for (const auto& d : dirs) {
        if (auto s = impl_->fsync_key_dir(d); !s.ok() && !not_durable) {
          not_durable = Error(os::errc_for_errno(s.err),
                              "update_many: cannot fsync a key's directory", d, s.err);
        }
      }
    }
  } catch (const Error& e) {
    // Decided and logged: left to recovery (the next write of any key of the store, or the next
    // Store opened), which puts the rest in place. Releasing the intent's lock lets it run.
    txn.marker.reset();
    throw Error(e.code(),
                "update_many: the update is logged and " + std::to_string(done) + " of " +
                    std::to_string(changes.size()) +
                    " changed keys are in place; the next write to the store completes it",
                {}, std::string(e.what()), e.sys_errno());
  }
  impl_->end_transaction(txn);
  drop_lock_files_of_absent();
  if (not_durable) {
    throw Error(not_durable->code(),
                "update_many: all " + std::to_string(changes.size()) +
                    " changed keys are in place and logged, but an fsync failed: they may not "
                    "survive power loss",
                {}, std::string(not_durable->what()), not_durable->sys_errno());
  }
  return values;
}

std::vector<fs::path> Store::lock_files() const {
  if (backend_) return backend_->lock_files();
  std::vector<fs::path> out;
  if (impl_->options.lock_stripes != 0) {
    for (std::size_t i = 0; i < impl_->options.lock_stripes; ++i) {
      out.push_back(impl_->keys_dir / (std::string(format::kStripePrefix) + std::to_string(i) +
                                       std::string(format::kLockSuffix)));
    }
  } else {
    const std::string suffix =
        std::string(format::kKeyFileSuffix) + std::string(format::kLockSuffix);
    impl_->walk_keys([&](const Impl::WalkEntry& e) {
      if (!e.is_dir && e.depth > 0 && e.name.size() > suffix.size() &&
          e.name.compare(e.name.size() - suffix.size(), std::string::npos, suffix) == 0) {
        out.push_back(e.path);
      }
    });
  }
  out.push_back(impl_->log_writer().lock_file());
  std::sort(out.begin(), out.end());
  return out;
}

const char* finding_kind_name(Finding::Kind kind) noexcept {
  switch (kind) {
    case Finding::Kind::corrupt_key_file: return "corrupt_key_file";
    case Finding::Kind::unlogged_change: return "unlogged_change";
    case Finding::Kind::missing_file: return "missing_file";
    case Finding::Kind::orphan_temp: return "orphan_temp";
    case Finding::Kind::torn_log_line: return "torn_log_line";
    case Finding::Kind::stale_marker: return "stale_marker";
    case Finding::Kind::bad_file_name: return "bad_file_name";
    case Finding::Kind::planted_file: return "planted_file";
  }
  return "unknown";
}

}  // namespace lockdb
