// FileLock and SoftFileLock: cross-process locks on a lock file.
//
// FileLock is a hard OS lock (POSIX flock(2) on the lock file). The OS drops it when the holding
// process dies, so a crash never leaves a stale lock. It excludes Python's filelock.FileLock on
// the same path, both ways. SoftFileLock is a marker file for filesystems where OS locks fail
// (some network filesystems); it can go stale, see its comment.
//
// Threads: every method is thread-safe. A lock object is reentrant per thread: the thread that
// holds it may lock it again, and must unlock it as often (lock_counter() counts). Another thread
// of the same process waits, exactly like another process. Two lock objects on the same path in
// one process also exclude each other (so the same thread locking a second object on a path it
// already holds through a first one waits for itself: keep one object per path and thread).
//
// Fork: a child inherits no lock. In the child, is_locked() is false and unlock() throws
// Error{not_owner} instead of releasing the parent's lock; the child may lock the object anew.
// Forking while another thread is inside a call on the same object is not supported.
//
// Waiting never polls in coarse steps: FileLock blocks in the kernel and is woken as soon as the
// holder releases; a timed wait is cut off by a per-thread timer signal (see lock_file.hpp).
//
// State chart (per object):
//   unlocked --lock--> exclusive(n=1) --lock (same thread)--> exclusive(n+1)
//   unlocked --lock_shared--> shared(n=1) --lock_shared (any thread)--> shared(n+1)
//   exclusive/shared --unlock at n=1--> unlocked
//   lock() while this thread holds shared: Error{conflict} (an upgrade would deadlock).
//   lock_shared() while this thread holds exclusive: nests as exclusive(n+1).
#pragma once

#include <lockdb/config.hpp>
#include <lockdb/error.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace lockdb {

struct LockOptions {
  // Default timeout of acquire() and lock(). Negative: wait forever (the default).
  std::chrono::nanoseconds lock_timeout = kForever;
  // Permissions of the lock file. Empty: a created file gets 0666 & ~umask. Set: applied with
  // fchmod once the lock is held (never before), and only to a lock file this object created:
  // an existing file (or a hard link planted at the path) keeps its permissions.
  std::optional<unsigned> mode = std::nullopt;
};

struct SoftLockOptions {
  std::chrono::nanoseconds lock_timeout = kForever;
  std::optional<unsigned> mode = std::nullopt;
  // A marker written on another host is judged stale when neither it nor its heartbeat
  // (refresh()) changed for this long. Markers of this host are judged by pid liveness at once.
  std::chrono::nanoseconds stale_after = std::chrono::seconds(300);
};

namespace detail {
class LockState;  // private: the per-process half of a lock object (file_lock.cpp)
}

// RAII ownership of one hold of a lock, made by acquire(); releases it on destruction. Move-only.
// REQUIRES: it does not outlive the lock object.
class LockGuard {
 public:
  LockGuard() = default;
  LockGuard(LockGuard&& other) noexcept;
  LockGuard& operator=(LockGuard&& other) noexcept;
  ~LockGuard();

  // True while this guard holds its lock.
  bool is_locked() const noexcept { return lock_ != nullptr; }
  // Releases now. Throws what unlock() throws.
  void release();

 private:
  friend class BasicLock;
  LockGuard(detail::LockState* lock, bool shared) noexcept : lock_(lock), shared_(shared) {}

  detail::LockState* lock_ = nullptr;
  bool shared_ = false;
};

namespace detail {
// try_lock_for's duration as a timeout: a negative one tries once (never "forever").
template <class Rep, class Period>
constexpr std::chrono::nanoseconds try_timeout(const std::chrono::duration<Rep, Period>& d) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
  return ns < std::chrono::nanoseconds::zero() ? std::chrono::nanoseconds::zero() : ns;
}
}  // namespace detail

// The calls every lock object has: exclusive, reentrant holds of one lock file, as the standard
// Lockable and TimedLockable. FileLock and SoftFileLock are BasicLocks; a function that takes a
// BasicLock& works with either. Not made directly.
class BasicLock {
 public:
  virtual ~BasicLock();  // releases every hold this process has through this object
  BasicLock(const BasicLock&) = delete;
  BasicLock& operator=(const BasicLock&) = delete;

  // The lock file.
  const std::filesystem::path& path() const noexcept;

  // Acquires exclusively, waiting up to `timeout` (default: the options' lock_timeout).
  // THROWS Timeout when the wait ends first (immediately for a zero timeout; then the holder is
  // named where it can be known), Error{permission|io|lock_unsupported|invalid_argument} naming
  // the path when the lock file cannot be opened or locked (never reported as a timeout),
  // Error{conflict} when this thread holds the lock shared.
  [[nodiscard]] LockGuard acquire();
  [[nodiscard]] LockGuard acquire(std::chrono::nanoseconds timeout);

  // Drops one hold (exclusive or shared); the lock is released when the count reaches zero.
  // THROWS Error{not_owner} when this process holds nothing (e.g. a forked child).
  void release();

  // True when this process holds the lock through this object (any thread).
  bool is_locked() const;
  // Number of holds through this object (nested exclusive, or all shared holds).
  int lock_counter() const;

  // Lockable / TimedLockable. lock() waits for the options' lock_timeout (forever by default) and
  // throws like acquire(); try_lock*() return false on timeout and throw on real errors.
  void lock();
  bool try_lock();
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
    return try_for(false, detail::try_timeout(d));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
    return try_lock_for(t - Clock::now());
  }
  void unlock();

 protected:
  explicit BasicLock(std::unique_ptr<detail::LockState> state) noexcept;

  LockGuard acquire_hold(bool shared, std::chrono::nanoseconds timeout);
  bool try_for(bool shared, std::chrono::nanoseconds timeout);
  std::chrono::nanoseconds default_timeout() const noexcept;
  detail::LockState& state() const noexcept { return *state_; }

 private:
  std::unique_ptr<detail::LockState> state_;  // constant after construction
};

// Hard OS lock on `path` (flock on POSIX). Lockable, TimedLockable and SharedTimedLockable.
class FileLock : public BasicLock {
 public:
  // Does no I/O: the lock file is opened (and created, with missing parent directories) on the
  // first acquisition. THROWS Error{invalid_argument} when path is empty.
  explicit FileLock(std::filesystem::path path, LockOptions options = {});

  // Shared (reader) holds; the errors of acquire(). Many holders at once, no exclusive one.
  // SharedTimedLockable, so std::shared_lock works.
  [[nodiscard]] LockGuard acquire_shared();
  [[nodiscard]] LockGuard acquire_shared(std::chrono::nanoseconds timeout);
  void lock_shared();
  bool try_lock_shared();
  template <class Rep, class Period>
  bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& d) {
    return try_for(true, detail::try_timeout(d));
  }
  template <class Clock, class Duration>
  bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& t) {
    return try_lock_shared_for(t - Clock::now());
  }
  void unlock_shared();

  // Who holds the lock file's OS lock right now (Linux: from /proc/locks), if anyone.
  // A snapshot: it may change at once.
  std::optional<LockHolder> holder() const;
};

// Marker-file lock: the lock is held while `path` exists holding this holder's record (pid,
// host, process start token, time, nonce). Exclusive only. Waiting polls (1 ms growing to
// 25 ms): nothing tells a waiter when a file on a network filesystem disappears.
//
// Downsides, stated plainly: a holder that dies leaves its marker behind. On this host it is
// broken at once when its pid is gone or reused (start token differs). A marker from another
// host cannot be judged by pid, so it is broken only after `stale_after` without a heartbeat: a
// live holder on another host that holds longer than stale_after must call refresh(), or loses
// the lock. Clocks of the two hosts must agree to well within stale_after.
class SoftFileLock : public BasicLock {
 public:
  explicit SoftFileLock(std::filesystem::path path, SoftLockOptions options = {});

  // Renews the heartbeat of a held marker. THROWS Error{not_owner} when the marker is no longer
  // this holder's (it was broken as stale), Error{io} on I/O failure.
  void refresh();

  // The holder recorded in the marker, if a marker exists and parses.
  std::optional<LockHolder> holder() const;

  // Reads the marker at `path` and says whether it is stale by the rules above (false when
  // there is no marker). Used by tools that report on locks.
  static bool is_stale(const std::filesystem::path& path, std::chrono::nanoseconds stale_after);
};

}  // namespace lockdb
