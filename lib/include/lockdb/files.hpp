// Locked and atomic file helpers: the seed's Python pipeline (locked_write, atomic_write,
// atomic_json_update, locked_append, nfs_safe_write, ...) in C++.
//
// Every helper serialises on the data file's lock file, which is always the data file's path plus
// ".lock" (lock_file_for()). That is the seed's convention, so these functions and the seed's
// Python helpers (Python filelock) exclude each other on the same files, both ways. The lock file
// is created on first use (with missing parent directories) and never removed.
//
// Threads: every function is thread-safe; calls from threads of one process exclude each other
// exactly like calls from different processes. From inside atomic_json_update's fn, a writing
// helper on the same file throws Error{conflict} at once (its write would be lost under the outer
// one) and locked_read of it reads without locking again. REQUIRES for all: the calling thread
// does not hold the data file's lock through a FileLock object of its own (a second lock object
// on the same path waits for the first one: the thread would wait for itself until the timeout).
//
// Process death: a process that dies inside a call loses nothing that was there before. Its OS
// lock is released by the kernel (nfs_safe_write's marker is broken by the next writer: at once
// on this host, after stale_after from another); a replace it had not finished leaves the old file
// in place (and at worst an orphaned ".<name>.<random>.tmp" beside it); an append it had not
// finished leaves at most a torn last line, which the next locked_append() does not glue onto.
//
// Open descriptors: none is left open once a call returns, whether it succeeded or threw: a
// filesystem written with these functions (a USB stick, say) can be unmounted right after. While
// a call runs it holds the lock file and the data file (or its temp file) open.
//
// Fork: no lock and no descriptor is held between calls, so a forked child may call every
// function (a child forked while another thread is inside a call never uses that call's lock).
//
// Durability (durability.hpp) is per call. Defaults: `none` everywhere except atomic_write(),
// which defaults to `file` (see the README for why). A failed fsync fails the call; it is never
// retried as if nothing happened.
#pragma once

#include <lockdb/config.hpp>
#include <lockdb/detail/json_fn.hpp>
#include <lockdb/durability.hpp>
#include <lockdb/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace lockdb {

// How locked_write() writes: replace the whole content, or add to the end.
enum class WriteMode { truncate, append };

// How a locked helper below locks and writes. Name only what differs from the defaults:
// locked_append(path, line, {.durability = Durability::file}).
struct FileOptions {
  // How long to wait for the file's lock before throwing Timeout (negative: forever).
  std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout;
  // What the write survives once it returns (durability.hpp).
  Durability durability = Durability::none;
};

// The lock file that guards `data_file`: its path plus ".lock".
std::filesystem::path lock_file_for(const std::filesystem::path& data_file);

// Common errors of every function below (not repeated per call):
//   Timeout                      the lock was not had within lock_timeout (names lock and holder)
//   Error{invalid_argument}      `path` is empty or ends in a separator; a path component is a
//                                file; the lock file is a symbolic link or a directory
//   Error{permission}            EACCES/EPERM/EROFS on the lock file, data file or directory
//   Error{lock_unsupported}      the filesystem refuses OS locks (use nfs_safe_write there)
//   Error{io}                    any other OS failure (ENOSPC, EIO, ...), naming path and step
// A permission problem is never reported as a Timeout. Writers create missing parent
// directories (as the lock file beside the data file needs them); locked_read creates nothing.

// Writes `data` to `path` under its lock. truncate: replaces the content atomically (temp file +
// rename: a reader that takes no lock sees the old or the new content, and a failure, ENOSPC
// included, leaves the old content intact; the file's permission bits are kept). append: adds the
// bytes at the end; a failed append is cut back off, leaving the file as it was.
// Blocks up to options.lock_timeout for the lock, then for the I/O.
void locked_write(const std::filesystem::path& path, std::string_view data,
                  WriteMode mode = WriteMode::truncate, const FileOptions& options = {});

// Reads the whole file under its lock, taken SHARED: locked readers run together, writers (C++
// or Python filelock, which only locks exclusively) wait for them and they for writers.
// THROWS Error{not_found} when `path` does not exist (then no lock file is created either).
// Blocks up to `lock_timeout`.
std::string locked_read(const std::filesystem::path& path,
                        std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout);

// locked_write() that does not wait: returns false only when the lock is held by someone else
// (another process, or another thread or lock object of this one). Every other failure throws.
bool try_locked_write(const std::filesystem::path& path, std::string_view data,
                      WriteMode mode = WriteMode::truncate,
                      Durability durability = Durability::none);

struct AtomicWriteOptions {
  // Default `file`: the new content is on disk before it replaces the old, so even a power loss
  // leaves the old or the new content, never an empty file. `full` also makes the rename itself
  // durable; `none` leaves old or new content after a power loss too, fsyncing only where the
  // filesystem does not flush on rename (durability.hpp).
  Durability durability = Durability::file;
  // Permission bits of the result. Empty: the existing file's bits are kept; a new file gets
  // 0666 & ~umask.
  std::optional<unsigned> mode{};
  // Serialise with the other helpers on the file's ".lock" (as the seed does). false: take no
  // lock (for callers that hold it already, or directories where no lock file may be created).
  bool take_lock = true;
  std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout;
};

// Replaces `path` with `data`: unique temp file in the same directory, write, (fsync), rename
// over the target, (fsync the directory). Readers (locked or not) never see a partial file. On
// any failure the temp file is removed, the old file is untouched, and the Error names the path
// and the failing step. A symbolic link at `path` is replaced, not followed (like os.replace).
// The temp file is written before the lock is taken (as the seed does): the lock is held only for
// the rename. Blocks for the write and fsync, then up to `lock_timeout` for the lock.
void atomic_write(const std::filesystem::path& path, std::string_view data,
                  const AtomicWriteOptions& options = {});

namespace detail {
// The non-template half of atomic_json_update(): lock, read, parse, apply, write back.
nlohmann::json json_update(const std::filesystem::path& path,
                           const std::function<void(nlohmann::json&)>& apply,
                           const FileOptions& options);
}  // namespace detail

// Locked read-modify-write of a JSON file: lock, read and parse (a missing file starts as `{}`),
// apply `fn`, write the result back atomically (as atomic_write, keeping the file's permission
// bits; written with 2-space indent and a final newline), unlock. Returns the new document.
// `fn` either mutates its argument and returns void, taking `nlohmann::json&` (or `auto&`), or
// returns the new document, `nlohmann::json fn(nlohmann::json)` (the old document is moved in;
// `const nlohmann::json&` or `nlohmann::json&` work too). Any other signature does not compile,
// a void fn taking the document by value, `const&` or `auto&&` included: its edits would go to a
// copy.
// `fn` runs with the lock held: keep it short, and do not touch `path` from it.
// THROWS (besides the common errors):
//   Error{corrupt}           the file is empty or does not parse; names the file, line, column
//                            and cause. The file is untouched and `fn` is not called.
//   Error{corrupt}           also: the file nests deeper than 512 levels
//   Error{invalid_argument}  the new document holds a string that is not valid UTF-8, nests
//                            deeper than 512 levels, or holds a NaN, infinity or binary value
//   whatever `fn` throws     passed through unchanged; the file is untouched
// Blocks up to options.lock_timeout for the lock, then for `fn` and the I/O.
template <class Fn>
nlohmann::json atomic_json_update(const std::filesystem::path& path, Fn&& fn,
                                  const FileOptions& options = {}) {
  using nlohmann::json;
  constexpr detail::JsonFnKind kind = detail::json_fn_kind<Fn>;
  static_assert(kind != detail::JsonFnKind::edits_a_copy,
                "atomic_json_update: a fn that returns void must take nlohmann::json& (or auto&); "
                "taking the document by value, const& or auto&& it would edit a copy");
  auto apply = [&fn](json& doc) {
    if constexpr (kind != detail::JsonFnKind::other) {  // returns void: edits (asserted above)
      std::invoke(fn, doc);
    } else if constexpr (std::is_invocable_v<Fn&, json&&>) {
      static_assert(std::is_same_v<std::remove_cvref_t<std::invoke_result_t<Fn&, json&&>>, json>,
                    "atomic_json_update: fn must return nlohmann::json (the new document)");
      json next = std::invoke(fn, std::move(doc));
      doc = std::move(next);
    } else {
      static_assert(std::is_invocable_v<Fn&, json&>,
                    "atomic_json_update: fn must take nlohmann::json& or nlohmann::json");
      static_assert(std::is_same_v<std::remove_cvref_t<std::invoke_result_t<Fn&, json&>>, json>,
                    "atomic_json_update: fn must return void or nlohmann::json");
      json next = std::invoke(fn, doc);
      doc = std::move(next);
    }
  };
  return detail::json_update(path, apply, options);
}

// Appends one record as one line: `line` plus "\n" if it does not end with one. Many processes
// (and the seed's Python locked_append) appending at once never interleave or lose a line. If
// the file ends in a torn line (a writer died mid-record), a "\n" is written first, so the torn
// fragment stays alone on its line (a JSONL reader tells it by its failure to parse) and the new
// record starts on a fresh one. A failed append is cut back off: the file is left as it was.
// THROWS Error{invalid_argument} when `line` holds a newline before its end (it would become
// two records). Blocks up to options.lock_timeout for the lock.
void locked_append(const std::filesystem::path& path, std::string_view line,
                   const FileOptions& options = {});

// locked_append() of `record` rendered as compact JSON on one line (UTF-8 kept as is, like the
// seed's ensure_ascii=False). THROWS Error{invalid_argument} for a string that is not UTF-8, a
// record nested deeper than 512 levels, a NaN, infinity or binary value (nothing is written).
void locked_append_json(const std::filesystem::path& path, const nlohmann::json& record,
                        const FileOptions& options = {});

// Replaces `path` with `data` (atomically, as atomic_write) under a SoftFileLock on the file's
// ".lock": for network filesystems where OS locks fail. Stale markers are broken safely (see
// SoftFileLock): a marker of a dead process on this host at once, another host's once it has not
// changed for options.stale_after. Never mix with the hard-lock helpers on the same file: a soft
// marker and an OS lock on one ".lock" path do not exclude each other.
// Blocks up to options.lock_timeout for the marker (polling, 1 to 25 ms).
struct NfsWriteOptions {
  std::chrono::nanoseconds lock_timeout = std::chrono::seconds(60);
  std::chrono::nanoseconds stale_after = std::chrono::seconds(300);
  Durability durability = Durability::none;
};
void nfs_safe_write(const std::filesystem::path& path, std::string_view data,
                    const NfsWriteOptions& options = {});

}  // namespace lockdb
