// Guards built on FileLock: SingletonGuard (one running instance of a program or task) and
// KeyedLockRegistry (one cross-process lock per key, or per stripe of keys).
//
// Threads: both classes are thread-safe. A SingletonGuard is held by the process, not by a
// thread: acquire() from any thread of the holding process returns true. Registry locks behave as
// FileLock: reentrant per thread, and other threads of this process wait like other processes.
//
// Process death: the OS releases every lock of a process that dies, so a crashed instance never
// blocks the next one and no lock file needs cleaning up (lock files are never removed).
//
// Open descriptors: an object keeps the descriptors of its lock files open while it lives and
// closes them with it: a SingletonGuard one (from its first acquire() on, released or not), a
// KeyedLockRegistry one per lock file it has locked. Nothing stays open once the objects are gone,
// so a filesystem that holds their lock files can then be unmounted.
//
// Fork: a forked child holds none of its parent's locks and cannot release them (it may take its
// own). But the parent's OS lock lives in an open file description the child shares, so it stays
// held until the parent releases it or until both the parent and the child are gone (an exec in
// the child drops the child's share: the descriptor is close-on-exec).
#pragma once

#include <lockdb/config.hpp>
#include <lockdb/error.hpp>
#include <lockdb/file_lock.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lockdb {

// At most one process holds the guard of a name in a lock directory. Its lock file is
// `<lock_dir>/<name>.singleton.lock` (the seed's name). Safe in world-writable directories: a
// symbolic link planted at that path is never followed, and the file is never truncated, written
// or chmod-ed (one owned by someone else included). The holder is found through the OS
// (/proc/locks), not through a pid written into the file.
class SingletonGuard {
 public:
  // Does no I/O. `lock_dir` empty: the system temp directory (std::filesystem::
  // temp_directory_path(): $TMPDIR, else /tmp); all instances must agree on it, so pass it
  // explicitly for system-wide singletons. THROWS Error{invalid_argument} when `name` is empty,
  // ".", "..", or holds '/' or NUL.
  explicit SingletonGuard(std::string name, std::filesystem::path lock_dir = {});
  ~SingletonGuard();  // releases
  SingletonGuard(SingletonGuard&&) noexcept;
  SingletonGuard& operator=(SingletonGuard&&) noexcept;

  // RAII form: returns a guard that holds the name. THROWS AlreadyRunning (an Error) naming the
  // holder's pid when another process (or another guard object) holds it; the errors of acquire().
  [[nodiscard]] static SingletonGuard hold(std::string name, std::filesystem::path lock_dir = {});

  // Tries once, never waits. true: this process now holds the guard (or held it already through
  // this object). false: someone else holds it, and only then. THROWS Error{invalid_argument} for a
  // symbolic link or a directory at the lock path, Error{permission|io} naming the path.
  bool acquire();
  // Releases if held; otherwise (or in a forked child) does nothing. Never throws.
  void release() noexcept;
  // True while this process holds the guard through this object.
  bool is_locked() const;
  // Who holds the name right now, if anyone and if the OS tells (a snapshot).
  std::optional<LockHolder> holder() const;

  const std::string& name() const noexcept { return name_; }
  const std::filesystem::path& lock_path() const noexcept { return lock_path_; }

 private:
  struct State;
  // Constant after construction (moved as a whole).
  std::string name_;
  std::filesystem::path lock_path_;
  std::unique_ptr<State> state_;  // the FileLock and the mutex that serialises acquire/release
};

// Holds several locks; releases them (in reverse order) on destruction. Move-only.
class MultiLockGuard {
 public:
  MultiLockGuard() = default;
  explicit MultiLockGuard(std::vector<LockGuard> guards) noexcept : guards_(std::move(guards)) {}
  MultiLockGuard(MultiLockGuard&&) noexcept = default;
  MultiLockGuard& operator=(MultiLockGuard&& other) noexcept;
  ~MultiLockGuard() { release(); }

  // Number of distinct lock files held (keys sharing a stripe share one).
  std::size_t size() const noexcept { return guards_.size(); }
  bool is_locked() const noexcept { return !guards_.empty(); }
  // Releases all now (reverse order). Never throws.
  void release() noexcept;

 private:
  std::vector<LockGuard> guards_;
};

// One cross-process lock per key: different keys proceed together, the same key serialises.
//
// Lock files are named exactly as a Store names the lock files in its keys/ directory
// (docs/FORMAT.md), so a registry on `<store>/keys` with the store's lock_stripes excludes that
// store's writers key by key. Keys are store keys: 1 to 1024 bytes of UTF-8.
// stripes == 0: one lock file per key, `<lock_dir>/<shard>/<encoded key>.json.lock`: the shard is
// two hex digits of the key's FNV-1a-64 hash, the encoding is collision-free, readable and safe
// on case-insensitive filesystems ("a/b" -> a%2fb, "A_B" -> ^A_^B; a long key becomes a few
// directory levels).
// stripes == N: N lock files `<lock_dir>/stripe-<i>.lock`, i = FNV-1a-64(key) mod N, the same in
// every process and build; unrelated keys may share a stripe and then wait for each other. All
// users of a directory must use the same N (the file names do not record it).
//
// One FileLock (and, once used, one open descriptor) per lock file is kept for the registry's
// lifetime: with an unbounded set of keys, use stripes.
class KeyedLockRegistry {
 public:
  // Does no I/O. `lock_timeout`: how long lock() and lock_many() wait (negative: forever).
  // THROWS Error{invalid_argument} when lock_dir is empty.
  explicit KeyedLockRegistry(std::filesystem::path lock_dir,
                             std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout,
                             std::size_t stripes = 0);
  ~KeyedLockRegistry();  // releases every hold still taken through it
  KeyedLockRegistry(const KeyedLockRegistry&) = delete;
  KeyedLockRegistry& operator=(const KeyedLockRegistry&) = delete;

  // The lock of `key` (shared by all keys of its stripe), created on first use. The reference is
  // valid for the registry's lifetime. Does no I/O. Never blocks (beyond an internal mutex).
  // THROWS Error{invalid_argument} for a key that is not a store key (so do all calls below).
  FileLock& get_lock(std::string_view key);

  // Locks `key`, waiting up to the registry's timeout. THROWS Timeout (naming the lock file and
  // its holder), and FileLock's errors (permission, lock_unsupported, ...) naming the path.
  // REQUIRES: the guard does not outlive the registry.
  [[nodiscard]] LockGuard lock(std::string_view key);

  // Locks all `keys` (duplicates and keys sharing a stripe are taken once) in one global order,
  // sorted by lock file name, so any number of threads and processes calling lock_many() cannot
  // deadlock. The timeout covers the whole set; on any failure the locks already taken are
  // released before the error (as lock()) is thrown. REQUIRES: the calling thread holds no
  // other lock of this directory (take all the keys it needs in one call; nesting a lock_many()
  // inside a lock() of one of its own keys is fine).
  [[nodiscard]] MultiLockGuard lock_many(const std::vector<std::string>& keys);

  // The lock file of `key`. Does no I/O.
  std::filesystem::path lock_path(std::string_view key) const;

  const std::filesystem::path& lock_dir() const noexcept { return dir_; }
  std::size_t stripes() const noexcept { return stripes_; }

 private:
  std::string file_name(std::string_view key) const;  // relative to dir_
  FileLock& lock_for_file(const std::string& name);

  // Constant after construction.
  const std::filesystem::path dir_;
  const std::chrono::nanoseconds lock_timeout_;
  const std::size_t stripes_;

  std::mutex mu_;
  // Guarded by mu_ (the map; each FileLock is thread-safe itself). Key: lock file name.
  std::map<std::string, std::unique_ptr<FileLock>, std::less<>> locks_;
};

}  // namespace lockdb
