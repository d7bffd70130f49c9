// KeyLocks: see store_locks.hpp for the protocol.
#include "store_locks.hpp"

#include <lockdb/error.hpp>

#include <cerrno>
#include <condition_variable>
#include <optional>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>

#include "os.hpp"
#include "store_format.hpp"

namespace lockdb::detail {

struct KeyLocks::Slot {
  explicit Slot(std::string p) : path(std::move(p)) {}
  const std::string path;
  // Which thread of this process holds the lock. A flag under a mutex, not a held mutex: the
  // holder's hold spans calls, and waits need a deadline (a condition variable).
  std::mutex mu;
  std::condition_variable released;
  bool taken = false;              // guarded by mu
  std::thread::id owner;           // guarded by mu: the holder, while taken
  int fd = -1;                     // used by the holder only (taking `taken` orders the accesses)
  long fs_magic = 0;               // of fd's file; set with fd
  int users = 0;                   // guarded by KeyLocks::mu_: holders and waiters
  std::list<Slot*>::iterator lru;  // guarded by KeyLocks::mu_
};

namespace {

// "key \"k\"" (empty without a key): built only when an error is thrown.
std::string key_context(std::string_view key) {
  return key.empty() ? std::string() : "key " + store_format::quote_key(key);
}

// "key \"k\": <what>" (just <what> without a key).
std::string prefixed(std::string_view key, const char* what) {
  if (key.empty()) return what;
  return key_context(key) + ": " + what;
}

// The lock file at `path`, or at path.substr(prefix) beneath `base_fd` (see open_beneath).
int open_lock_file(const std::string& path, std::string_view key, int base_fd, std::size_t prefix) {
  // Read-only: see the header. O_NONBLOCK: a FIFO planted at the path must not block the open.
  constexpr int kFlags = O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK;
  const std::string_view rel = std::string_view(path).substr(base_fd >= 0 ? prefix : 0);
  auto open = [&](int flags) {
    return base_fd >= 0 ? os::open_beneath(base_fd, rel, flags, 0666) : os::open(path, flags, 0666);
  };
  auto r = open(kFlags);
  if (r.err == ENOENT) {
    const auto slash = rel.rfind('/');
    if (slash != std::string_view::npos) {
      const std::string_view dir = rel.substr(0, slash);
      const os::Status s =
          base_fd >= 0 ? os::mkdirs_beneath(base_fd, dir) : os::mkdirs(std::filesystem::path(dir));
      if (!s.ok()) {
        if (base_fd >= 0) {
          os::throw_beneath(prefixed(key, "cannot create the directory of lock file"),
                            std::string_view(path).substr(0, prefix), base_fd, dir, s.err);
        }
        os::throw_errno(prefixed(key, "cannot create the directory of lock file"),
                        std::filesystem::path(dir), s.err);
      }
      r = open(kFlags);
    }
  }
  if (r.err == EACCES) {  // a lock file we may write but not read still locks
    auto wo = open(O_WRONLY | O_NOFOLLOW | O_NONBLOCK);
    if (wo.ok() || wo.err == ELOOP) r = wo;
  }
  if (r.err == EACCES) {  // a symbolic link in a sticky directory (fs.protected_symlinks)
    if (auto st = os::lstat(path); st.ok() && S_ISLNK(st.value.mode)) r.err = ELOOP;
  }
  if (!r.ok()) {
    if (base_fd >= 0) {
      os::throw_beneath(prefixed(key, "cannot open lock file"),
                        std::string_view(path).substr(0, prefix), base_fd, rel, r.err);
    }
    if (r.err == ELOOP) {
      throw Error(Errc::invalid_argument, prefixed(key, "cannot open lock file"), path,
                  "it is a symbolic link (refused, not followed)");
    }
    os::throw_errno(prefixed(key, "cannot open lock file"), path, r.err);
  }
  try {
    os::require_plain_file(r.value, prefixed(key, "cannot use lock file"), path,
                           /*one_link=*/false);
  } catch (...) {
    os::close(r.value);
    throw;
  }
  return r.value;
}

std::optional<LockHolder> holder_of(int fd) {
  auto st = os::fstat(fd);
  if (!st.ok()) return std::nullopt;
  return os::flock_holder(st.value.dev, st.value.ino);
}

LockHolder this_process() {
  LockHolder h;
  h.pid = os::pid();
  h.host = os::hostname();
  h.program = os::program_name(h.pid);
  return h;
}

}  // namespace

KeyLocks::KeyLocks(std::size_t max_open, bool check_identity)
    : max_open_(max_open), check_identity_(check_identity), generation_(os::fork_generation()) {}

void KeyLocks::open_beneath(int dir_fd, std::size_t prefix) noexcept {
  base_fd_ = dir_fd;
  base_prefix_ = prefix;
}

KeyLocks::~KeyLocks() {
  for (auto& [path, slot] : slots_) os::close(slot->fd);
  // Slots a parent's thread held at fork time have locked mutexes; never destroy those.
  for (auto& slot : abandoned_) (void)slot.release();
}

KeyLocks::Hold KeyLocks::acquire(const std::string& lock_path, std::chrono::nanoseconds timeout,
                                 std::string_view key) {
  const auto start = std::chrono::steady_clock::now();
  Slot* slot = nullptr;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (generation_ != os::fork_generation()) forget_after_fork();
    auto [it, inserted] = slots_.try_emplace(lock_path);
    if (inserted) {
      it->second = std::make_unique<Slot>(lock_path);
      lru_.push_front(it->second.get());
      it->second->lru = lru_.begin();
    } else {
      lru_.splice(lru_.begin(), lru_, it->second->lru);
    }
    slot = it->second.get();
    ++slot->users;
  }
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout >= std::chrono::nanoseconds::zero()) deadline = start + timeout;
  {
    std::unique_lock<std::mutex> guard(slot->mu);
    const bool mine = slot->taken && slot->owner == std::this_thread::get_id();
    bool got = !slot->taken;
    if (!got && !mine) {  // another thread of this process holds it
      auto free = [slot] { return !slot->taken; };
      if (deadline) {
        got = slot->released.wait_until(guard, *deadline, free);
      } else {
        slot->released.wait(guard, free);
        got = true;
      }
    }
    if (got) {
      slot->taken = true;
      slot->owner = std::this_thread::get_id();
    }
    guard.unlock();
    if (mine) {
      unuse(slot);
      throw Error(Errc::conflict, prefixed(key, "cannot lock"), lock_path,
                  "this thread already holds this lock (a store write from inside the "
                  "function of another write of the same key, or of a key sharing its stripe)");
    }
    if (!got) {
      unuse(slot);
      throw Timeout(key_context(key), lock_path, timeout, this_process());
    }
  }
  try {
    for (;;) {
      if (slot->fd < 0) {
        slot->fd = open_lock_file(lock_path, key, base_fd_, base_prefix_);
        slot->fs_magic = os::fs_magic(slot->fd);
      }
      auto s = os::flock_until(slot->fd, /*shared=*/false, deadline);
      if (!s.ok()) {
        if (s.err == EWOULDBLOCK)
          throw Timeout(key_context(key), lock_path, timeout, holder_of(slot->fd));
        if (s.err == ENOLCK || s.err == EOPNOTSUPP || s.err == EINVAL) {
          throw Error(Errc::lock_unsupported, prefixed(key, "cannot lock"), lock_path,
                      os::error_text(s.err) + " (this filesystem refuses OS locks)");
        }
        os::throw_errno(prefixed(key, "cannot lock"), lock_path, s.err);
      }
      if (!check_identity_) break;
      auto st = os::fstat(slot->fd);
      if (!st.ok()) os::throw_errno(prefixed(key, "cannot stat lock file"), lock_path, st.err);
      if (st.value.nlink > 0) break;
      // Deleted while we opened or waited: a lock on it excludes nobody. Open the path again.
      os::close(slot->fd);  // closing drops the lock
      slot->fd = -1;
    }
  } catch (...) {
    give_back(slot);
    throw;
  }
  return Hold(this, slot, generation_);
}

void KeyLocks::give_back(Slot* slot) noexcept {
  {
    std::lock_guard<std::mutex> guard(slot->mu);
    slot->taken = false;
    slot->owner = std::thread::id();
  }
  slot->released.notify_one();
  unuse(slot);
}

void KeyLocks::unuse(Slot* slot) noexcept {
  std::lock_guard<std::mutex> guard(mu_);
  --slot->users;
  // Close the least recently used idle locks beyond the bound.
  for (auto it = lru_.end(); slots_.size() > max_open_ && it != lru_.begin();) {
    --it;
    if ((*it)->users == 0) it = evict(it);
  }
}

std::list<KeyLocks::Slot*>::iterator KeyLocks::evict(std::list<Slot*>::iterator it) noexcept {
  Slot* slot = *it;
  it = lru_.erase(it);
  os::close(slot->fd);  // idle: no thread holds its mutex, nobody can get it without mu_
  const std::string path = slot->path;  // the map's key dies with the slot
  slots_.erase(path);
  return it;
}

void KeyLocks::forget_after_fork() noexcept {
  for (auto& [path, slot] : slots_) {
    os::close(slot->fd);  // the child's copy; never unlocks what the parent holds
    if (slot->users != 0) abandoned_.push_back(std::move(slot));
  }
  slots_.clear();
  lru_.clear();
  generation_ = os::fork_generation();
}

KeyLocks::Hold::Hold(Hold&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      slot_(std::exchange(other.slot_, nullptr)),
      generation_(other.generation_) {}

KeyLocks::Hold& KeyLocks::Hold::operator=(Hold&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::exchange(other.owner_, nullptr);
    slot_ = std::exchange(other.slot_, nullptr);
    generation_ = other.generation_;
  }
  return *this;
}

KeyLocks::Hold::~Hold() { release(); }

long KeyLocks::Hold::fs_magic() const noexcept { return slot_ ? slot_->fs_magic : 0; }

void KeyLocks::Hold::release() noexcept {
  if (!slot_) return;
  // A forked child must not unlock: the lock belongs to the parent's open file description.
  if (generation_ == os::fork_generation()) (void)os::flock_unlock(slot_->fd);
  owner_->give_back(slot_);
  slot_ = nullptr;
  owner_ = nullptr;
}

}  // namespace lockdb::detail
