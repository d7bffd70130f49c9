// LockState (private): the per-process half shared by FileLock and SoftFileLock: the reentrancy
// count, which threads hold it, fork detection (file_lock.hpp has the state chart). The
// cross-process half is the backend a derived class supplies (file_lock.cpp, soft_file_lock.cpp).
#pragma once

#include <lockdb/error.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace lockdb::detail {

class LockState {
 public:
  LockState(const LockState&) = delete;
  LockState& operator=(const LockState&) = delete;
  virtual ~LockState();

  const std::filesystem::path& path() const noexcept { return path_; }
  std::chrono::nanoseconds default_timeout() const noexcept { return default_timeout_; }

  // Takes one hold. true: held; false: `timeout` ran out (see FileLock::acquire for the rest).
  bool try_acquire(bool shared, std::chrono::nanoseconds timeout);
  // try_acquire that throws Timeout (naming the holder where it can be known) instead of false.
  void acquire(bool shared, std::chrono::nanoseconds timeout);
  // Drops one hold. THROWS Error{not_owner} when this process holds nothing.
  void release(bool shared);
  bool is_locked() const;
  int lock_counter() const;

 protected:
  LockState(std::filesystem::path path, std::chrono::nanoseconds default_timeout);

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

  // For derived destructors: releases every hold of this process. Never throws.
  void release_all_on_destroy() noexcept;

 private:
  enum class Mode : std::uint8_t { unlocked, shared, exclusive };
  // Forgets state inherited through fork(); called at the top of every entry. REQUIRES: mu_ held.
  void check_fork_locked();

  // Constant after construction.
  const std::filesystem::path path_;
  const std::chrono::nanoseconds default_timeout_;

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

}  // namespace lockdb::detail
