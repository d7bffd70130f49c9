// FileLock and the per-process half every lock object shares (reentrancy, shared holds, fork).
//
// The cross-process half is the flock(2) protocol of lock_file.hpp (why flock, who may remove a
// lock file, NFS, FUSE, fork). A FileLock keeps its descriptor open between acquisitions, so
// an uncontended lock+unlock costs two flock calls and an fstat; after each flock it checks that
// the descriptor still names the path (anybody may delete a FileLock's file) and otherwise opens
// the path again. It opens read-write (an exclusive lock on NFS needs it) and applies its `mode`
// with fchmod once the lock is held, only to a file it created.
//
// Fork: an object used in a child forgets the inherited state: it closes its copy of the
// descriptor without unlocking (the parent's copy keeps the lock) and refuses to unlock.
#include <lockdb/file_lock.hpp>
#include <lockdb/time.hpp>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "lock_file.hpp"
#include "lock_state.hpp"
#include "os.hpp"

namespace lockdb {
namespace lock_file = detail::lock_file;

// ---------------------------------------------------------------------------------------------
// LockGuard

LockGuard::LockGuard(LockGuard&& other) noexcept
    : lock_(std::exchange(other.lock_, nullptr)), shared_(other.shared_) {}

LockGuard& LockGuard::operator=(LockGuard&& other) noexcept {
  if (this != &other) {
    try {
      release();
    } catch (...) {
    }
    lock_ = std::exchange(other.lock_, nullptr);
    shared_ = other.shared_;
  }
  return *this;
}

LockGuard::~LockGuard() {
  try {
    release();
  } catch (...) {  // a forked child's guard: nothing to release here
  }
}

void LockGuard::release() {
  if (detail::LockState* l = std::exchange(lock_, nullptr)) l->release(shared_);
}

// ---------------------------------------------------------------------------------------------
// LockState

namespace detail {

LockState::LockState(std::filesystem::path path, std::chrono::nanoseconds default_timeout)
    : path_(std::move(path)),
      default_timeout_(default_timeout),
      fork_generation_(os::fork_generation()) {
  if (path_.empty()) throw Error(Errc::invalid_argument, "lock path is empty");
}

LockState::~LockState() = default;

void LockState::check_fork_locked() {
  unsigned generation = os::fork_generation();
  if (generation == fork_generation_) return;
  fork_generation_ = generation;
  inherited_ = mode_ != Mode::unlocked;
  backend_forget();
  mode_ = Mode::unlocked;
  busy_ = false;
  owner_ = {};
  count_ = 0;
  shared_threads_.clear();
}

void LockState::release_all_on_destroy() noexcept {
  std::unique_lock lk(mu_);
  check_fork_locked();
  if (mode_ != Mode::unlocked) backend_release();
  backend_forget();
  mode_ = Mode::unlocked;
  count_ = 0;
}

bool LockState::try_acquire(bool shared, std::chrono::nanoseconds timeout) {
  std::unique_lock lk(mu_);
  check_fork_locked();
  const auto me = std::this_thread::get_id();
  if (mode_ == Mode::exclusive && owner_ == me) {  // reentry (a shared request nests too)
    ++count_;
    return true;
  }
  if (!shared && mode_ == Mode::shared &&
      std::find(shared_threads_.begin(), shared_threads_.end(), me) != shared_threads_.end()) {
    throw Error(Errc::conflict, "cannot lock exclusively while this thread holds it shared", path_,
                "upgrading would deadlock");
  }
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout >= std::chrono::nanoseconds::zero())
    deadline = add_saturating(std::chrono::steady_clock::now(), timeout);

  // Wait until no other thread of this process holds the object or is acquiring it.
  auto available = [&] {
    return !busy_ && (mode_ == Mode::unlocked || (shared && mode_ == Mode::shared));
  };
  if (!available()) {
    if (!deadline) {
      cv_.wait(lk, available);
    } else if (!cv_.wait_until(lk, *deadline, available)) {
      return false;
    }
  }
  if (mode_ == Mode::shared) {  // join the process's shared hold
    ++count_;
    shared_threads_.push_back(me);
    return true;
  }

  busy_ = true;
  lk.unlock();
  bool acquired = false;
  try {
    acquired = backend_acquire(shared, deadline);
  } catch (...) {
    lk.lock();
    busy_ = false;
    cv_.notify_all();
    throw;
  }
  lk.lock();
  busy_ = false;
  if (acquired) {
    inherited_ = false;
    count_ = 1;
    if (shared) {
      mode_ = Mode::shared;
      shared_threads_.push_back(me);
    } else {
      mode_ = Mode::exclusive;
      owner_ = me;
    }
  }
  cv_.notify_all();
  return acquired;
}

void LockState::release(bool shared) {
  std::unique_lock lk(mu_);
  check_fork_locked();
  if (mode_ == Mode::unlocked) {
    if (inherited_) {
      throw Error(Errc::not_owner, "cannot release", path_,
                  "the lock is held by the parent process; a forked child never holds it");
    }
    throw Error(Errc::not_owner, "cannot release", path_, "this process does not hold the lock");
  }
  if (mode_ == Mode::shared) {
    auto me = std::this_thread::get_id();
    auto it = std::find(shared_threads_.begin(), shared_threads_.end(), me);
    if (it == shared_threads_.end()) it = shared_threads_.begin();  // released by another thread
    shared_threads_.erase(it);
  }
  (void)shared;
  if (--count_ > 0) return;
  backend_release();
  mode_ = Mode::unlocked;
  owner_ = {};
  cv_.notify_all();
}

void LockState::acquire(bool shared, std::chrono::nanoseconds timeout) {
  if (try_acquire(shared, timeout)) return;
  std::optional<LockHolder> holder;
  try {
    holder = backend_holder();
  } catch (...) {
  }
  throw Timeout(path_,
                timeout < std::chrono::nanoseconds::zero() ? std::chrono::nanoseconds(0) : timeout,
                std::move(holder));
}

bool LockState::is_locked() const {
  std::unique_lock lk(mu_);
  const_cast<LockState*>(this)->check_fork_locked();
  return mode_ != Mode::unlocked;
}

int LockState::lock_counter() const {
  std::unique_lock lk(mu_);
  const_cast<LockState*>(this)->check_fork_locked();
  return count_;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// FileLock's backend

namespace {

class FileLockState final : public detail::LockState {
 public:
  FileLockState(std::filesystem::path path, const LockOptions& options)
      : LockState(std::move(path), options.lock_timeout), mode_(options.mode) {}
  ~FileLockState() override { release_all_on_destroy(); }

  std::optional<LockHolder> holder() const {
    auto st = os::stat(path());
    if (!st.ok()) return std::nullopt;
    return os::flock_holder(st.value.dev, st.value.ino);
  }

 private:
  bool backend_acquire(bool shared, std::optional<std::chrono::steady_clock::time_point> deadline) {
    for (;;) {
      if (fd_ < 0) {
        // Only a file this object created gets `mode`, never one that was there (a hard link
        // planted at the path would carry a chmod to another file).
        const auto opened =
            lock_file::open({path().native()}, lock_file::Access::read_write,
                            /*tell_created=*/mode_.has_value(), "cannot open lock file");
        fd_ = opened.fd;
        mode_applied_ = !opened.created;
        path_verified_ = false;
      }
      bool waited = false;
      if (int err = lock_file::lock(fd_, shared, deadline, &waited); err == EWOULDBLOCK) {
        return false;
      } else if (err != 0) {
        lock_file::throw_lock_failure(err, "cannot lock", path().native());
      }
      // The descriptor must still name the path (lock_file.hpp). Removal and replacement by rename
      // drop the link count, which fstat sees; the comparison with the path's inode costs a path
      // lookup, made when the file was just opened or the lock had to be waited for.
      if (lock_file::still_names(fd_, waited || !path_verified_ ? path().c_str() : nullptr)) {
        path_verified_ = true;
        break;
      }
      (void)os::flock_unlock(fd_);
      os::close(fd_);
      fd_ = -1;
    }
    if (mode_ && !mode_applied_) {
      if (auto s = os::fchmod(fd_, *mode_); !s.ok() && s.err != EPERM) {
        (void)os::flock_unlock(fd_);
        os::throw_errno("cannot set the lock file's mode", path(), s.err);
      }
      mode_applied_ = true;
    }
    return true;
  }

  void backend_release() noexcept override { (void)os::flock_unlock(fd_); }

  void backend_forget() noexcept override {
    os::close(fd_);  // closing our copy never unlocks a description another process still has
    fd_ = -1;
    mode_applied_ = false;
  }

  std::optional<LockHolder> backend_holder() const override { return holder(); }

  // Constant after construction.
  const std::optional<unsigned> mode_;
  // Owned by the thread inside backend_* (LockState serialises them).
  int fd_ = -1;
  bool mode_applied_ = false;
  bool path_verified_ = false;  // fd_ was checked against the path since it was opened
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// BasicLock

BasicLock::BasicLock(std::unique_ptr<detail::LockState> state) noexcept
    : state_(std::move(state)) {}
BasicLock::~BasicLock() = default;

const std::filesystem::path& BasicLock::path() const noexcept { return state_->path(); }
std::chrono::nanoseconds BasicLock::default_timeout() const noexcept {
  return state_->default_timeout();
}
LockGuard BasicLock::acquire() { return acquire_hold(false, default_timeout()); }
LockGuard BasicLock::acquire(std::chrono::nanoseconds timeout) {
  return acquire_hold(false, timeout);
}
LockGuard BasicLock::acquire_hold(bool shared, std::chrono::nanoseconds timeout) {
  state_->acquire(shared, timeout);
  return LockGuard(state_.get(), shared);
}
bool BasicLock::try_for(bool shared, std::chrono::nanoseconds timeout) {
  return state_->try_acquire(shared, timeout);
}
void BasicLock::release() { state_->release(false); }
bool BasicLock::is_locked() const { return state_->is_locked(); }
int BasicLock::lock_counter() const { return state_->lock_counter(); }
void BasicLock::lock() { state_->acquire(false, default_timeout()); }
bool BasicLock::try_lock() { return try_for(false, std::chrono::nanoseconds::zero()); }
void BasicLock::unlock() { state_->release(false); }

// ---------------------------------------------------------------------------------------------
// FileLock

FileLock::FileLock(std::filesystem::path path, LockOptions options)
    : BasicLock(std::make_unique<FileLockState>(std::move(path), options)) {}

LockGuard FileLock::acquire_shared() { return acquire_hold(true, default_timeout()); }
LockGuard FileLock::acquire_shared(std::chrono::nanoseconds timeout) {
  return acquire_hold(true, timeout);
}
void FileLock::lock_shared() { state().acquire(true, default_timeout()); }
bool FileLock::try_lock_shared() { return try_for(true, std::chrono::nanoseconds::zero()); }
void FileLock::unlock_shared() { state().release(true); }
std::optional<LockHolder> FileLock::holder() const {
  return static_cast<const FileLockState&>(state()).holder();
}

}  // namespace lockdb
