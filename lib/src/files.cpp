// The seed pipeline's helpers (files.hpp).
//
// Every helper takes the data file's lock (path + ".lock"), so helpers in this process, in other
// processes and in Python (filelock) exclude each other. Whole-content writes go through
// detail::atomic_replace / StagedReplace (replace.hpp), the one implementation of temp file +
// (fsync) + rename + (directory fsync): a reader that takes no lock sees the old or the new
// content, and a failure leaves the old content and no temp file. atomic_write stages its temp
// file before taking the lock (like the seed) and holds the lock only for the rename; the others
// hold it from the read (or the decision to write) to the end.
//
// Descriptors: none is kept once a call returns (a filesystem the helpers wrote can be unmounted
// at once). The writers lock through one process-wide detail::KeyLocks (store_locks.hpp) that
// keeps no idle descriptor (max_open 0): each call opens the lock file (read-only), flocks it,
// checks that it was not deleted meanwhile, and closes it; threads of this process asking for the
// same lock at once share one descriptor while they wait. Keeping up to 64 lock files open
// between calls saved the open, fstat, fstatfs and close of each call, 8-10% of a small
// atomic_json_update (bench_files, tmpfs and ext4); a promise (a filesystem the program wrote can
// be unmounted) is not traded for speed by default.
// locked_read, the one shared lock, takes a FileLock per call.
//
// Nesting. A thread inside a locked helper (in atomic_json_update's fn) that calls a helper on
// the same file would wait for itself: its own FileLock object excludes the new one. The helpers
// record the lock files the current thread holds (thread_local), refuse a nested write at once
// with Error{conflict} (its result would be overwritten by the outer write anyway), and let a
// nested locked_read read without locking again.
//
// Appends (append_locked) cannot use a rename: they add to the file in place, with O_APPEND, in
// one write(2). Holding the lock, the file's size before the write is exact, so a failed write or
// fsync is undone by cutting the file back to that size. Before writing, the last byte is read:
// if it is not a newline, a writer died mid-record, and the new record is prefixed with "\n" so it
// is not glued onto the torn fragment.
#include <lockdb/file_lock.hpp>
#include <lockdb/files.hpp>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>

#include "json_io.hpp"
#include "os.hpp"
#include "replace.hpp"
#include "store_locks.hpp"

namespace lockdb {
namespace {

// The lock files the current thread holds through these helpers (see top): the lock paths of
// the live HeldLock objects, innermost last (they live on the stack, so they end in the reverse
// order). Plain pointers in an array, so they stay readable to the thread's very end (a write
// from a static destructor at exit).
constexpr std::size_t kMaxNested = 16;
thread_local const std::string* t_held[kMaxNested];
thread_local std::size_t t_depth = 0;

bool held_by_this_thread(const std::string& lock_path) {
  return std::any_of(t_held, t_held + t_depth,
                     [&](const std::string* held) { return *held == lock_path; });
}

// lock_file_for() as a string: no std::filesystem::path is made on the write path (and one
// allocation: `native() + ".lock"` would copy, then grow).
std::string lock_path_of(const std::filesystem::path& data) {
  constexpr std::string_view kSuffix = ".lock";
  std::string lock;
  lock.reserve(data.native().size() + kSuffix.size());
  lock += data.native();
  lock += kSuffix;
  return lock;
}

// Never destroyed: threads may still write while static objects are torn down at exit. Keeps no
// descriptor of a lock no thread holds or waits for (max_open 0).
detail::KeyLocks& writer_locks() {
  static auto* locks = new detail::KeyLocks(/*max_open=*/0, /*check_identity=*/true);
  return *locks;
}

// A data file's exclusive lock, held by this thread and recorded in t_held while it lives.
class HeldLock {
 public:
  HeldLock(const std::filesystem::path& data, std::chrono::nanoseconds timeout)
      : HeldLock(data, timeout, /*may_fail=*/false) {}
  // The try_lock form: `acquired()` tells whether it was had.
  explicit HeldLock(const std::filesystem::path& data)
      : HeldLock(data, std::chrono::nanoseconds::zero(), /*may_fail=*/true) {}
  ~HeldLock() {
    if (acquired_) --t_depth;
  }
  HeldLock(const HeldLock&) = delete;
  HeldLock& operator=(const HeldLock&) = delete;

  bool acquired() const noexcept { return acquired_; }
  long fs_magic() const noexcept { return hold_.fs_magic(); }  // of the lock file

 private:
  // `may_fail`: a Timeout leaves the lock not acquired instead of propagating.
  HeldLock(const std::filesystem::path& data, std::chrono::nanoseconds timeout, bool may_fail)
      : lock_path_(lock_path_of(data)) {
    if (t_depth == kMaxNested) {
      throw Error(
          Errc::invalid_argument, "cannot write", data,
          "more than " + std::to_string(kMaxNested) + " locked calls are nested in this thread");
    }
    if (held_by_this_thread(lock_path_)) {
      throw Error(Errc::conflict, "cannot write", data,
                  "this thread is inside a locked call on this file already (atomic_json_update's "
                  "fn?); the nested write would be lost");
    }
    try {
      hold_ = writer_locks().acquire(lock_path_, timeout, {});
    } catch (const Timeout&) {
      if (may_fail) return;
      throw;
    }
    t_held[t_depth++] = &lock_path_;
    acquired_ = true;
  }

  const std::string lock_path_;
  detail::KeyLocks::Hold hold_;
  bool acquired_ = false;
};

void check_data_path(const std::filesystem::path& path) {
  if (path.empty()) throw Error(Errc::invalid_argument, "data file path is empty");
  if (!path.has_filename()) {
    throw Error(Errc::invalid_argument, "not a file path", path, "it ends in a separator");
  }
}

// Appends `bytes` (already one or more complete lines, or raw bytes for locked_write) to `path`.
// REQUIRES: the caller holds the file's lock. `fresh_line`: prefix "\n" when the file does not
// end with one (a torn last record).
void append_locked(const std::filesystem::path& path, std::string_view bytes, bool fresh_line,
                   Durability durability) {
  bool created = false;
  auto fd = os::open(path, O_RDWR | O_APPEND);
  if (fd.err == EACCES) {  // write-only for us: append without the torn-line check
    if (auto write_only = os::open(path, O_WRONLY | O_APPEND); write_only.ok()) {
      fd = write_only;
      fresh_line = false;
    }
  } else if (fd.err == ENOENT) {
    fd = os::open(path, O_RDWR | O_APPEND | O_CREAT, 0666);
    created = fd.ok();
  }
  if (!fd.ok()) os::throw_errno("cannot open for appending", path, fd.err);

  auto st = os::fstat(fd.value);
  if (!st.ok()) {
    os::close(fd.value);
    os::throw_errno("cannot stat", path, st.err);
  }
  const off_t old_size = static_cast<off_t>(st.value.size);
  std::string prefixed;
  if (fresh_line && old_size > 0) {
    auto last = os::pread(fd.value, 1, old_size - 1);
    if (!last.ok()) {
      os::close(fd.value);
      os::throw_errno("cannot read the last byte of", path, last.err);
    }
    if (last.value != "\n") {
      prefixed.reserve(bytes.size() + 1);
      prefixed += '\n';
      prefixed += bytes;
      bytes = prefixed;
    }
  }

  const char* step = nullptr;
  os::Status s = os::write_all(fd.value, bytes);
  if (!s.ok()) step = "cannot append to";
  if (s.ok() && detail::fsyncs_files(durability)) {
    s = os::fsync(fd.value);
    if (!s.ok()) step = "cannot fsync (the record was removed again)";
  }
  if (!s.ok()) {
    // Cut the partial (or unsynced) record back off: the file is left as it was.
    os::Status undo = os::truncate(fd.value, old_size);
    os::close(fd.value);
    if (!undo.ok()) {
      os::throw_errno(std::string(step) + " (a partial record may remain: cannot truncate: " +
                          os::error_text(undo.err) + ")",
                      path, s.err);
    }
    os::throw_errno(step, path, s.err);
  }
  os::close(fd.value);
  if (created && durability == Durability::full) {
    const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    if (auto d = os::fsync_dir(dir); !d.ok()) {
      os::throw_errno(
          "cannot fsync the directory (the record is written but the new file may "
          "not survive power loss)",
          dir, d.err);
    }
  }
}

// How the helpers replace a file. Durability::none (the default): a rename over the old file,
// which on ext4 writes the new data first (auto_da_alloc), so that after a power cut the file is
// old or new, as with Python's os.replace; elsewhere (and for a new file) the temp file is
// fsynced first (replace.cpp). Durability::power_loss_unsafe: swapped in
// (ReplaceOptions::swap_in) where that pays (detail::swap_in_pays), which spares ext4's writeback
// per update and may leave the file empty after a power cut.
detail::ReplaceOptions replace_options(std::optional<unsigned> mode, long fs_magic) {
  detail::ReplaceOptions options;
  options.mode = mode;
  options.swap_in = detail::swap_in_pays(fs_magic);  // only done with power_loss_unsafe
  options.remove_dead_temps = true;
  return options;
}

// REQUIRES: `held` holds the file's lock.
void write_locked(const std::filesystem::path& path, std::string_view data, WriteMode mode,
                  Durability durability, const HeldLock& held) {
  if (mode == WriteMode::append) {
    append_locked(path, data, false, durability);
  } else {
    detail::atomic_replace(path, data, durability, replace_options(std::nullopt, held.fs_magic()));
  }
}

// "line 3, column 7" of the 1-based byte position `byte` in `text`.
std::string position_of(std::string_view text, std::size_t byte) {
  std::size_t line = 1, column = 0;
  const std::size_t end = byte == 0 ? 0 : std::min(byte, text.size() + 1) - 1;
  for (std::size_t i = 0; i < end && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 0;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column + 1);
}

// The reason part of a nlohmann parse error ("syntax error while parsing ... - ...").
std::string parse_reason(const std::string& what) {
  auto column = what.find("column ");
  if (column == std::string::npos) column = 0;  // no position: "... parse error: <reason>"
  auto colon = what.find(": ", column);
  if (colon != std::string::npos) return what.substr(colon + 2);
  return what;
}

// Reads and parses the JSON file (REQUIRES: its lock is held). A missing file is `{}`; its
// permission bits go to `mode` so the replace keeps them without another stat.
nlohmann::json read_json_locked(const std::filesystem::path& path, std::optional<unsigned>* mode) {
  auto fd = os::open(path, O_RDONLY);
  if (fd.err == ENOENT) return nlohmann::json::object();
  if (!fd.ok()) os::throw_errno("cannot open", path, fd.err);
  auto st = os::fstat(fd.value);
  if (st.ok()) *mode = st.value.mode & 07777;
  std::string text;
  os::Status read;
  if (st.ok() && S_ISREG(st.value.mode)) {
    read = os::read_all(fd.value, static_cast<std::size_t>(st.value.size), text);
  } else {
    auto all = os::read_all(fd.value);
    read.err = all.err;
    text = std::move(all.value);
  }
  os::close(fd.value);
  if (!read.ok()) os::throw_errno("cannot read", path, read.err);

  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw Error(Errc::corrupt, "cannot parse JSON", path,
                text.empty() ? "the file is empty" : "the file holds only whitespace");
  }
  try {
    return detail::json_io::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(Errc::corrupt, "cannot parse JSON", path,
                e.byte == 0 ? parse_reason(e.what())  // nesting too deep: no position
                            : position_of(text, e.byte) + ": " + parse_reason(e.what()));
  }
}

// Appends `doc`'s JSON text (`indent` as in nlohmann's dump) to `out`.
void append_checked(std::string& out, const nlohmann::json& doc, int indent,
                    const std::filesystem::path& path, const char* what) {
  try {
    detail::json_io::append(out, doc, indent);
  } catch (const detail::json_io::ValueError& e) {
    throw Error(Errc::invalid_argument, std::string("cannot serialise ") + what + " for", path,
                e.what());
  }
}

}  // namespace

std::filesystem::path lock_file_for(const std::filesystem::path& data_file) {
  return lock_path_of(data_file);
}

void locked_write(const std::filesystem::path& path, std::string_view data, WriteMode mode,
                  const FileOptions& options) {
  check_data_path(path);
  HeldLock held(path, options.lock_timeout);
  write_locked(path, data, mode, options.durability, held);
}

std::string locked_read(const std::filesystem::path& path, std::chrono::nanoseconds lock_timeout) {
  check_data_path(path);
  // A missing file is reported before any lock file (or directory) is created for it. A file
  // being replaced always exists (rename is atomic), so this never misreports one.
  if (auto st = os::stat(path); !st.ok()) os::throw_errno("cannot read", path, st.err);
  // No lock when this thread holds it already (nested in atomic_json_update's fn).
  std::optional<FileLock> lock;
  LockGuard guard;
  if (const auto lock_path = lock_path_of(path); !held_by_this_thread(lock_path)) {
    lock.emplace(lock_path);
    guard = lock->acquire_shared(lock_timeout);
  }
  auto text = os::read_file(path);
  if (!text.ok()) os::throw_errno("cannot read", path, text.err);
  return std::move(text.value);
}

bool try_locked_write(const std::filesystem::path& path, std::string_view data, WriteMode mode,
                      Durability durability) {
  check_data_path(path);
  HeldLock held(path);
  if (!held.acquired()) return false;
  write_locked(path, data, mode, durability, held);
  return true;
}

void atomic_write(const std::filesystem::path& path, std::string_view data,
                  const AtomicWriteOptions& options) {
  check_data_path(path);
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  // Staged before the lock is taken: the filesystem is asked here, and only when it matters.
  detail::ReplaceOptions replace = replace_options(
      options.mode, options.durability == Durability::power_loss_unsafe ? os::fs_magic(dir) : 0);
  // The temp file is written (and fsynced) before the lock is taken, as the seed does, so the
  // lock is held only for the rename. A temp file that is never committed is removed.
  auto stage = [&] { return detail::StagedReplace(path, data, options.durability, replace); };
  std::optional<detail::StagedReplace> staged;
  try {
    staged.emplace(stage());
  } catch (const Error& e) {
    // Like the other writers (whose lock file creates them), create missing directories.
    if (e.code() != Errc::not_found || os::stat(dir).ok()) throw;
    if (auto s = os::mkdirs(dir); !s.ok())
      os::throw_errno("cannot create the directory", dir, s.err);
    staged.emplace(stage());
  }
  if (!options.take_lock) {
    staged->commit();
    return;
  }
  HeldLock held(path, options.lock_timeout);
  staged->commit();
}

namespace detail {

nlohmann::json json_update(const std::filesystem::path& path,
                           const std::function<void(nlohmann::json&)>& apply,
                           const FileOptions& options) {
  check_data_path(path);
  HeldLock held(path, options.lock_timeout);
  std::optional<unsigned> mode;
  nlohmann::json doc = read_json_locked(path, &mode);
  apply(doc);
  std::string text;
  append_checked(text, doc, 2, path, "the new JSON document");
  text += '\n';
  detail::atomic_replace(path, text, options.durability, replace_options(mode, held.fs_magic()));
  return doc;
}

}  // namespace detail

void locked_append(const std::filesystem::path& path, std::string_view line,
                   const FileOptions& options) {
  check_data_path(path);
  std::string_view body = line;
  if (!body.empty() && body.back() == '\n') body.remove_suffix(1);
  if (auto nl = body.find('\n'); nl != std::string_view::npos) {
    throw Error(Errc::invalid_argument, "cannot append to", path,
                "the record holds a newline at byte " + std::to_string(nl) +
                    " (one record must be one line)");
  }
  std::string record;
  record.reserve(body.size() + 1);
  record += body;
  record += '\n';
  HeldLock held(path, options.lock_timeout);
  append_locked(path, record, true, options.durability);
}

void locked_append_json(const std::filesystem::path& path, const nlohmann::json& record,
                        const FileOptions& options) {
  check_data_path(path);
  // Compact dump escapes control characters, so the line holds no raw newline.
  std::string line;
  append_checked(line, record, -1, path, "the JSON record");
  locked_append(path, line, options);
}

void nfs_safe_write(const std::filesystem::path& path, std::string_view data,
                    const NfsWriteOptions& options) {
  check_data_path(path);
  SoftFileLock lock(lock_file_for(path), SoftLockOptions{.lock_timeout = options.lock_timeout,
                                                         .stale_after = options.stale_after});
  auto guard = lock.acquire();
  detail::ReplaceOptions replace;
  replace.remove_dead_temps = true;
  detail::atomic_replace(path, data, options.durability, replace);
}

}  // namespace lockdb
