// KeyLocks: see store_locks.hpp for the protocol.
#include "store_locks.hpp"

#include <lockdb/error.hpp>

#include <cerrno>
#include <condition_variable>
#include <optional>
#include <utility>

#include "lock_file.hpp"
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

void KeyLocks::open_beneath(int dir_fd, std::size_t prefix, os::CreateMode create,
                            bool removable) noexcept {
  base_fd_ = dir_fd;
  base_prefix_ = prefix;
  create_ = create;
  check_identity_ = check_identity_ || removable;
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
        slot->fd = lock_file::open({lock_path, base_fd_, base_prefix_, create_},
                                   lock_file::Access::read_only,
                                   /*tell_created=*/false, prefixed(key, "cannot open lock file"))
                       .fd;
        slot->fs_magic = os::fs_magic(slot->fd);
      }
      if (int err = lock_file::lock(slot->fd, /*shared=*/false, deadline); err == EWOULDBLOCK) {
        throw Timeout(key_context(key), lock_path, timeout, holder_of(slot->fd));
      } else if (err != 0) {
        lock_file::throw_lock_failure(err, prefixed(key, "cannot lock"), lock_path);
      }
      if (!check_identity_ || lock_file::still_names(slot->fd, nullptr)) break;
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
