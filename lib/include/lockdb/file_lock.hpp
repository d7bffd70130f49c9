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
// holder releases; a timed wait is cut off by a per-thread timer signal (see file_lock.cpp).
#pragma once

#include <lockdb/config.hpp>
#include <lockdb/error.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace lockdb {

// A timeout: negative waits forever, zero tries once, positive waits up to that long.
inline constexpr std::chrono::nanoseconds kForever{-1};

struct LockOptions {
  // Default timeout of acquire() and lock(). Negative: wait forever (the default).
  std::chrono::nanoseconds timeout = kForever;
  // Permissions of the lock file. Empty: a created file gets 0666 & ~umask. Set: applied with
  // fchmod once the lock is held (never before), and only to a lock file this object created:
  // an existing file (or a hard link planted at the path) keeps its permissions.
  std::optional<unsigned> mode;
};

struct SoftLockOptions {
  std::chrono::nanoseconds timeout = kForever;
  std::optional<unsigned> mode;
  // A marker written on another host is judged stale when neither it nor its heartbeat
  // (refresh()) changed for this long. Markers of this host are judged by pid liveness at once.
  std::chrono::nanoseconds stale_after = std::chrono::seconds(300);
};

namespace detail {
class LockBase;
}

// RAII ownership of one hold of a lock; releases it on destruction. Move-only.
class LockGuard {
 public:
  LockGuard() = default;
  LockGuard(detail::LockBase* lock, bool shared) noexcept : lock_(lock), shared_(shared) {}
  LockGuard(LockGuard&& other) noexcept;
  LockGuard& operator=(LockGuard&& other) noexcept;
  ~LockGuard();

  bool owns_lock() const noexcept { return lock_ != nullptr; }
  // Releases now. Throws what unlock() throws.
  void release();

 private:
  detail::LockBase* lock_ = nullptr;
  bool shared_ = false;
};

namespace detail {

// The per-process half shared by FileLock and SoftFileLock: the reentrancy count, which thread
// holds it, fork detection. The cross-process half is backend_acquire / backend_release.
// State chart (per object):
//
//   unlocked --lock--> exclusive(n=1) --lock (same thread)--> exclusive(n+1)
//   unlocked --lock_shared--> shared(n=1) --lock_shared (any thread)--> shared(n+1)
//   exclusive/shared --unlock at n=1--> unlocked
//   lock() while this thread holds shared: Error{conflict} (an upgrade would deadlock).
//   lock_shared() while this thread holds exclusive: nests as exclusive(n+1).
class LockBase {
 public:
  LockBase(const LockBase&) = delete;
  LockBase& operator=(const LockBase&) = delete;

  // The lock file.
  const std::filesystem::path& path() const noexcept { return path_; }

  // Acquires exclusively, waiting up to `timeout` (default: the options' timeout).
  // THROWS Timeout when the wait ends first (immediately for a zero timeout; then the holder is
  // named where it can be known), Error{permission|io|lock_unsupported} naming the path when the
  // lock file cannot be opened or locked (never reported as a timeout), Error{conflict} when this
  // thread holds the lock shared.
  [[nodiscard]] LockGuard acquire();
  [[nodiscard]] LockGuard acquire(std::chrono::nanoseconds timeout);

  // Drops one hold (exclusive or shared); the lock is released when the count reaches zero.
  // THROWS Error{not_owner} when this process holds nothing (e.g. a forked child).
  void release();

  // True when this process holds the lock through this object (any thread).
  bool is_locked() const;
  // Number of holds through this object (nested exclusive, or all shared holds).
  int lock_counter() const;

  // Lockable / TimedLockable. lock() waits for the options' timeout (forever by default) and
  // throws like acquire(); try_lock*() return false on timeout and throw on real errors.
  void lock();
  bool try_lock();
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
    return try_acquire(false, to_timeout(d));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
    return try_lock_for(t - Clock::now());
  }
  void unlock();

  virtual ~LockBase();

 protected:
  LockBase(std::filesystem::path path, std::chrono::nanoseconds default_timeout);

  LockGuard acquire_shared_impl(std::chrono::nanoseconds timeout);
  bool try_acquire(bool shared, std::chrono::nanoseconds timeout);
  void unlock_shared_impl();

  // Cross-process acquire. Returns true when held, false when `deadline` passed; throws Error
  // for anything else. Called with no in-process lock held, by one thread at a time.
  virtual bool backend_acquire(bool shared,
                               std::optional<std::chrono::steady_clock::time_point> deadline) = 0;
  // Cross-process release. Must not throw.
  virtual void backend_release() noexcept = 0;
  // Drops a hold inherited through fork() without releasing it for the parent. Must not throw.
  virtual void backend_forget() noexcept = 0;
  // Who holds the lock, for the Timeout message; nullopt when it cannot be known.
  virtual std::optional<LockHolder> backend_holder() const = 0;

  template <class Rep, class Period>
  static std::chrono::nanoseconds to_timeout(const std::chrono::duration<Rep, Period>& d) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    return ns < std::chrono::nanoseconds::zero() ? std::chrono::nanoseconds::zero() : ns;
  }

  // Call at the top of every public entry: forgets state inherited through fork().
  // REQUIRES: mu_ held.
  void check_fork_locked();
  // For derived destructors: releases every hold of this process. Never throws.
  void release_all_on_destroy() noexcept;
  // Throws Timeout naming the holder where it can be known.
  [[noreturn]] void throw_timeout(std::chrono::nanoseconds timeout) const;

  // Constant after construction.
  const std::filesystem::path path_;
  const std::chrono::nanoseconds default_timeout_;

 private:
  enum class Mode : std::uint8_t { unlocked, shared, exclusive };
  bool acquire_locked(std::unique_lock<std::mutex>& lk, bool shared,
                      std::chrono::nanoseconds timeout);
  void release_locked(std::unique_lock<std::mutex>& lk, bool shared);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  Mode mode_ = Mode::unlocked;
  bool busy_ = false;                            // a thread is inside backend_acquire
  std::thread::id owner_;                        // exclusive holder
  int count_ = 0;                                // holds in the current mode
  std::vector<std::thread::id> shared_threads_;  // one entry per shared hold
  unsigned fork_generation_ = 0;                 // process generation of the state above
  bool inherited_ = false;                       // the state was dropped after a fork
};

}  // namespace detail

// Hard OS lock on `path` (flock on POSIX). Lockable, TimedLockable and SharedTimedLockable.
class FileLock : public detail::LockBase {
 public:
  // Does no I/O: the lock file is opened (and created, with missing parent directories) on the
  // first acquisition. REQUIRES: path is not empty.
  explicit FileLock(std::filesystem::path path, LockOptions options = {});
  ~FileLock() override;  // releases every hold this process has through this object

  // Shared (reader) locking; same errors as acquire(). Many holders at once, no exclusive one.
  [[nodiscard]] LockGuard acquire_shared();
  [[nodiscard]] LockGuard acquire_shared(std::chrono::nanoseconds timeout);
  void lock_shared();
  bool try_lock_shared();
  template <class Rep, class Period>
  bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& d) {
    return try_acquire(true, to_timeout(d));
  }
  template <class Clock, class Duration>
  bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& t) {
    return try_lock_shared_for(t - Clock::now());
  }
  void unlock_shared();

  // Who holds the lock file's OS lock right now (Linux: from /proc/locks), if anyone.
  // A snapshot: it may change at once.
  std::optional<LockHolder> holder() const;

 private:
  bool backend_acquire(bool shared,
                       std::optional<std::chrono::steady_clock::time_point> deadline) override;
  void backend_release() noexcept override;
  void backend_forget() noexcept override;
  std::optional<LockHolder> backend_holder() const override;

  // Constant after construction.
  const std::optional<unsigned> mode_;
  // Owned by the thread inside backend_* (LockBase serialises them).
  int fd_ = -1;
  bool mode_applied_ = false;
  bool path_verified_ = false;  // fd_ was checked against the path since it was opened
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
class SoftFileLock : public detail::LockBase {
 public:
  explicit SoftFileLock(std::filesystem::path path, SoftLockOptions options = {});
  ~SoftFileLock() override;

  // Renews the heartbeat of a held marker. THROWS Error{not_owner} when the marker is no longer
  // this holder's (it was broken as stale), Error{io} on I/O failure.
  void refresh();

  // The holder recorded in the marker, if a marker exists and parses.
  std::optional<LockHolder> holder() const;

  // Reads the marker at `path` and says whether it is stale by the rules above (false when
  // there is no marker). Used by tools that report on locks.
  static bool is_stale(const std::filesystem::path& path, std::chrono::nanoseconds stale_after);

 private:
  bool backend_acquire(bool shared,
                       std::optional<std::chrono::steady_clock::time_point> deadline) override;
  void backend_release() noexcept override;
  void backend_forget() noexcept override;
  std::optional<LockHolder> backend_holder() const override;

  // Constant after construction.
  const std::optional<unsigned> mode_;
  const std::chrono::nanoseconds stale_after_;
  // Owned by the thread inside backend_* (LockBase serialises them).
  mutable std::mutex nonce_mu_;
  std::string nonce_;  // guarded by nonce_mu_: of the marker we hold; empty when none
};

}  // namespace lockdb
