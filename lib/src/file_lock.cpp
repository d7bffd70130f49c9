// FileLock: the locking protocol.
//
// Why flock(2) and not fcntl(2) record locks. fcntl locks belong to the process, not to the
// descriptor: closing ANY descriptor of the file (a library reading it, say) silently drops the
// lock, and two descriptors of one process never exclude each other. flock locks belong to the
// open file description: they exclude every other open of the file, in this process or another,
// survive unrelated closes, and are released by the kernel when the last descriptor of the
// description closes, i.e. when the holder dies. Python's filelock uses flock too (fcntl.flock),
// which is what makes the two interoperate.
//
// Why lock files are never deleted. A waiter blocks on the inode it opened. If the holder
// unlinked the file on release, the waiter would wake holding a lock on an orphaned inode while a
// third process creates a fresh file at the path and locks that: two holders. So lockdb never
// removes lock files, and after every acquisition checks that its descriptor still names the
// path (same device and inode, link count > 0); if someone else removed or replaced the file it
// unlocks, reopens and tries again.
//
// Opening. O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC|O_NOFOLLOW, else O_RDWR without O_CREAT for an
// existing file: O_CLOEXEC keeps the lock out of exec'd children, O_NOFOLLOW refuses a symlink
// planted at the path (also where fs.protected_symlinks says EACCES for it), O_NONBLOCK keeps a
// planted FIFO from blocking the open, and anything but a regular file is refused. Nothing is
// truncated, and permissions are only changed with fchmod once the lock is held, and only on a
// file this object created (O_EXCL tells), never on one that was there. An existing lock file we
// may not write is opened read-only (flock does not need write access). The descriptor is kept open
// between acquisitions, so an uncontended lock+unlock costs two flock calls and a stat.
//
// NFS and FUSE. Linux emulates flock on NFS with whole-file fcntl locks (lockd); it works
// across hosts but then has fcntl's per-process semantics between two descriptors of one
// process. Some FUSE and network filesystems return ENOLCK or EOPNOTSUPP: lockdb reports that as
// Error{lock_unsupported} (use SoftFileLock there), never as a timeout.
//
// Fork. flock locks are inherited by a forked child through the shared open file description,
// and a child calling flock(LOCK_UN) on it would release the PARENT's lock. lockdb counts forks
// (pthread_atfork); an object used in a child forgets the inherited state: it closes its copy of
// the descriptor without unlocking (the parent's copy keeps the lock) and refuses to unlock.
//
// Waiting. See os_posix.cpp: blocked in flock(2), cut off at the deadline by a timer signal.
#include <lockdb/file_lock.hpp>
#include <lockdb/time.hpp>

#include <algorithm>
#include <cerrno>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>

#include "os.hpp"

namespace lockdb {

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
  if (detail::LockBase* l = std::exchange(lock_, nullptr)) l->release();
}

// ---------------------------------------------------------------------------------------------
// LockBase

namespace detail {

LockBase::LockBase(std::filesystem::path path, std::chrono::nanoseconds default_timeout)
    : path_(std::move(path)),
      default_timeout_(default_timeout),
      fork_generation_(os::fork_generation()) {
  if (path_.empty()) throw Error(Errc::invalid_argument, "lock path is empty");
}

LockBase::~LockBase() = default;

void LockBase::check_fork_locked() {
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

void LockBase::release_all_on_destroy() noexcept {
  std::unique_lock lk(mu_);
  check_fork_locked();
  if (mode_ != Mode::unlocked) backend_release();
  backend_forget();
  mode_ = Mode::unlocked;
  count_ = 0;
}

bool LockBase::acquire_locked(std::unique_lock<std::mutex>& lk, bool shared,
                              std::chrono::nanoseconds timeout) {
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

void LockBase::release_locked(std::unique_lock<std::mutex>&, bool shared) {
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

void LockBase::throw_timeout(std::chrono::nanoseconds timeout) const {
  std::optional<LockHolder> holder;
  try {
    holder = backend_holder();
  } catch (...) {
  }
  throw Timeout(path_,
                timeout < std::chrono::nanoseconds::zero() ? std::chrono::nanoseconds(0) : timeout,
                std::move(holder));
}

bool LockBase::try_acquire(bool shared, std::chrono::nanoseconds timeout) {
  std::unique_lock lk(mu_);
  return acquire_locked(lk, shared, timeout);
}

LockGuard LockBase::acquire() { return acquire(default_timeout_); }

LockGuard LockBase::acquire(std::chrono::nanoseconds timeout) {
  if (!try_acquire(false, timeout)) throw_timeout(timeout);
  return LockGuard(this, false);
}

LockGuard LockBase::acquire_shared_impl(std::chrono::nanoseconds timeout) {
  if (!try_acquire(true, timeout)) throw_timeout(timeout);
  return LockGuard(this, true);
}

void LockBase::release() {
  std::unique_lock lk(mu_);
  release_locked(lk, false);
}

void LockBase::unlock_shared_impl() {
  std::unique_lock lk(mu_);
  release_locked(lk, true);
}

bool LockBase::is_locked() const {
  std::unique_lock lk(mu_);
  const_cast<LockBase*>(this)->check_fork_locked();
  return mode_ != Mode::unlocked;
}

int LockBase::lock_counter() const {
  std::unique_lock lk(mu_);
  const_cast<LockBase*>(this)->check_fork_locked();
  return count_;
}

void LockBase::lock() {
  if (!try_acquire(false, default_timeout_)) throw_timeout(default_timeout_);
}

bool LockBase::try_lock() { return try_acquire(false, std::chrono::nanoseconds::zero()); }

void LockBase::unlock() { release(); }

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// FileLock

FileLock::FileLock(std::filesystem::path path, LockOptions options)
    : LockBase(std::move(path), options.timeout), mode_(options.mode) {}

FileLock::~FileLock() { release_all_on_destroy(); }

LockGuard FileLock::acquire_shared() { return acquire_shared_impl(default_timeout_); }
LockGuard FileLock::acquire_shared(std::chrono::nanoseconds timeout) {
  return acquire_shared_impl(timeout);
}
void FileLock::lock_shared() {
  if (!try_acquire(true, default_timeout_)) throw_timeout(default_timeout_);
}
bool FileLock::try_lock_shared() { return try_acquire(true, std::chrono::nanoseconds::zero()); }
void FileLock::unlock_shared() { unlock_shared_impl(); }

namespace {

[[noreturn]] void throw_open_error(const std::filesystem::path& path, int err) {
  switch (err) {
    case ELOOP:
      throw Error(Errc::invalid_argument, "cannot open lock file", path,
                  "it is a symbolic link (refused, not followed)");
    case EISDIR:
      throw Error(Errc::invalid_argument, "cannot open lock file", path, "it is a directory");
    case ENOTDIR:
      throw Error(Errc::invalid_argument, "cannot open lock file", path,
                  "a parent component is not a directory");
    default: os::throw_errno("cannot open lock file", path, err);
  }
}

}  // namespace

bool FileLock::backend_acquire(bool shared,
                               std::optional<std::chrono::steady_clock::time_point> deadline) {
  for (;;) {
    if (fd_ < 0) {
      // Created here (O_EXCL) or opened as it is: only a file this object created gets `mode`,
      // never one that was there (a hard link planted at the path would carry a chmod to
      // another file). O_NONBLOCK: a FIFO at the path must not block the open.
      constexpr int kCreate = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK;
      constexpr int kExisting = O_RDWR | O_NOFOLLOW | O_NONBLOCK;
      bool created = true;
      auto r = os::open(path(), kCreate, 0666);
      if (r.err == ENOENT && path().has_parent_path()) {
        if (auto s = os::mkdirs(path().parent_path()); !s.ok()) {
          throw_open_error(path().parent_path(), s.err);
        }
        r = os::open(path(), kCreate, 0666);
      }
      if (r.err == EEXIST) {
        created = false;
        r = os::open(path(), kExisting);
        if (r.err == ENOENT) continue;  // removed meanwhile: create it
      }
      if (r.err == EACCES) {  // a lock file we may read but not write still locks
        auto ro = os::open(path(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
        if (ro.ok() || ro.err == ELOOP) r = ro;
      }
      if (r.err == EACCES) {  // a symbolic link in a sticky directory (fs.protected_symlinks)
        if (auto st = os::lstat(path()); st.ok() && S_ISLNK(st.value.mode)) r.err = ELOOP;
      }
      if (!r.ok()) throw_open_error(path(), r.err);
      if (auto st = os::fstat(r.value); st.ok() && !S_ISREG(st.value.mode)) {
        os::close(r.value);
        throw Error(Errc::invalid_argument, "cannot open lock file", path(),
                    os::planted_problem(st.value, false));
      }
      fd_ = r.value;
      mode_applied_ = !created;  // `mode` is for a file this object creates only
      path_verified_ = false;
    }
    // One non-blocking try first: the uncontended path is a single system call.
    auto s = os::flock_until(fd_, shared, std::chrono::steady_clock::time_point{});
    const bool waited = s.err == EWOULDBLOCK;
    if (waited) s = os::flock_until(fd_, shared, deadline);
    if (!s.ok()) {
      if (s.err == EWOULDBLOCK) return false;
      if (s.err == ENOLCK || s.err == EOPNOTSUPP || s.err == EINVAL) {
        throw Error(Errc::lock_unsupported, "cannot lock", path(),
                    os::error_text(s.err) +
                        " (this filesystem refuses OS locks; SoftFileLock works there)");
      }
      os::throw_errno("cannot lock", path(), s.err);
    }
    // The descriptor must still name the path: someone may have removed or replaced the file
    // (see top). Removal and replacement by rename drop the inode's link count to zero, which
    // fstat sees; the full comparison with the path's inode is made whenever the file was just
    // opened or the lock had to be waited for, and costs a path lookup.
    auto mine = os::fstat(fd_);
    bool names_path = mine.ok() && mine.value.nlink > 0;
    if (names_path && (waited || !path_verified_)) {
      auto now_at_path = os::lstat(path());
      names_path = now_at_path.ok() && mine.value.dev == now_at_path.value.dev &&
                   mine.value.ino == now_at_path.value.ino;
    }
    if (names_path) {
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

void FileLock::backend_release() noexcept { (void)os::flock_unlock(fd_); }

void FileLock::backend_forget() noexcept {
  os::close(fd_);  // closing our copy never unlocks a description another process still has
  fd_ = -1;
  mode_applied_ = false;
}

std::optional<LockHolder> FileLock::backend_holder() const { return holder(); }

std::optional<LockHolder> FileLock::holder() const {
  auto st = os::stat(path());
  if (!st.ok()) return std::nullopt;
  return os::flock_holder(st.value.dev, st.value.ino);
}

}  // namespace lockdb
