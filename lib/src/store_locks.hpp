// KeyLocks (private): exclusive flock(2) locks: the store's key locks (kept open between uses,
// up to a bound), and the lock files of the files.hpp helpers (one process-wide instance that
// keeps nothing open between calls: max_open 0).
//
// A key lock is an exclusive flock(2) on the key's lock file (the key file's path + ".lock", or
// a stripe lock file) through the protocol of lock_file.hpp, the one FileLock uses, so it
// excludes FileLock, KeyedLockRegistry and Python's filelock on the same path. What KeyLocks adds
// is the descriptor kept open across writes (at most max_open of them, least recently used
// closed first; max_open 0: closed as soon as no thread holds or waits for it), opened read-only
// (a read-only descriptor does not keep the filesystem from being remounted read-only).
//
// Removal. A store of format 2 removes the lock file of a key that a write leaves absent (erased,
// or never created), while holding its lock, so that lock files stay as many as the live keys;
// the files.hpp helpers lock files anybody may delete. Both check after each flock that the
// descriptor's file still has a link (check_identity, lock_file::still_names), and otherwise open
// the path again. That makes removal safe: only the holder of the lock on the linked file
// unlinks it, so whoever then holds a lock on the unlinked inode sees a link count of 0 and
// retries on the file now at the path; two holders of one key's lock never both pass the check.
// A format-1 store never removes lock files (older lockdb versions share it, and they do not
// check), and skips the check.
//
// Threads: a slot's "taken" flag (mutex + condition variable) excludes this process's threads
// (flock does not: threads share the descriptor), then flock excludes other processes. Lock
// order: KeyLocks::mu_ is never held while waiting; slot flag -> flock. A thread that asks again
// for a lock it holds gets Error{conflict} instead of waiting for itself.
//
// Fork: a child never uses its parent's descriptors (flock on a shared open file description
// would not exclude the parent): the first acquire in the child closes them and starts over.
// Forking while another thread holds or waits for a key lock is not supported.
#pragma once

#include <chrono>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "os.hpp"

namespace lockdb::detail {

class KeyLocks {
  struct Slot;

 public:
  // One held lock; releases it on destruction. Move-only.
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& other) noexcept;
    Hold& operator=(Hold&& other) noexcept;
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold();

    // The filesystem type of the lock file (os::fs_magic), learnt once when it was opened.
    long fs_magic() const noexcept;

   private:
    friend class KeyLocks;
    Hold(KeyLocks* owner, Slot* slot, unsigned generation) noexcept
        : owner_(owner), slot_(slot), generation_(generation) {}
    void release() noexcept;
    KeyLocks* owner_ = nullptr;
    Slot* slot_ = nullptr;
    unsigned generation_ = 0;  // the process generation that took it (see os::fork_generation)
  };

  // `max_open`: descriptors of idle locks kept open (0: none, each closes as soon as no thread
  // holds or waits for its lock). `check_identity`: after each flock, make sure the lock file was
  // not deleted (see top).
  explicit KeyLocks(std::size_t max_open, bool check_identity = false);
  ~KeyLocks();
  // Opens lock paths beneath the directory `dir_fd` (borrowed: open while this lives), whose path
  // is the first `prefix` characters of every lock path (a store's keys/ and its '/'): by name
  // from there, following no symbolic link (os::open_beneath); lock files and directories made
  // there get `create`'s mode. `removable`: lock files there may be removed (check_identity, see
  // top). REQUIRES: called before the first acquire; then constant.
  void open_beneath(int dir_fd, std::size_t prefix, os::CreateMode create = {},
                    bool removable = false) noexcept;
  KeyLocks(const KeyLocks&) = delete;
  KeyLocks& operator=(const KeyLocks&) = delete;

  // Locks `lock_path` exclusively, creating it (and its directory) when missing; a lock file this
  // process may only read is locked through a read-only descriptor. `timeout`: negative waits
  // forever, zero tries once. THROWS Timeout naming the lock and its holder, Error{conflict} when
  // this thread already holds it, Error{permission|io|lock_unsupported|invalid_argument} naming
  // the lock file and the key (an empty key: the message names the lock file only).
  Hold acquire(const std::string& lock_path, std::chrono::nanoseconds timeout,
               std::string_view key);

 private:
  void give_back(Slot* slot) noexcept;  // this process's hold ends: wakes a waiting thread
  void unuse(Slot* slot) noexcept;      // one user less; closes idle slots beyond max_open_
  void forget_after_fork() noexcept;    // REQUIRES: mu_ held
  // Closes an idle slot's descriptor and forgets it; returns the next LRU position.
  // REQUIRES: mu_ held, the slot has no users.
  std::list<Slot*>::iterator evict(std::list<Slot*>::iterator it) noexcept;

  const std::size_t max_open_;  // constant after construction
  bool check_identity_;         // constant after open_beneath()
  int base_fd_ = -1;            // constant after open_beneath(); -1: lock paths as given
  std::size_t base_prefix_ = 0;
  os::CreateMode create_;  // constant after open_beneath()
  std::mutex mu_;
  // Guarded by mu_.
  std::unordered_map<std::string, std::unique_ptr<Slot>> slots_;
  std::list<Slot*> lru_;  // most recently used first
  unsigned generation_ = 0;
  std::vector<std::unique_ptr<Slot>> abandoned_;  // held by a parent thread at fork time
};

}  // namespace lockdb::detail
