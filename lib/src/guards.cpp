// SingletonGuard and KeyedLockRegistry (guards.hpp).
//
// SingletonGuard is a FileLock tried once (timeout 0) on "<dir>/<name>.singleton.lock". FileLock
// already opens with O_NOFOLLOW (a planted symlink is refused, its target never touched) and
// without O_TRUNC, and falls back to a read-only open for a file it may not write (flock needs no
// write access). No lock mode is passed, so no fchmod ever happens: a file owned by someone else
// is left exactly as it is. The holder's pid comes from /proc/locks (FileLock::holder()).
//
// KeyedLockRegistry maps a key to a lock file name as the store does (store_format.hpp), and keeps
// one FileLock per lock file name: two keys of one stripe share the object, so a thread holding one
// and locking the other nests instead of waiting for itself. lock_many() sorts the distinct file
// names and takes them in that order: every caller uses the same total order, so no cycle of
// waiters can form.
#include <lockdb/guards.hpp>
#include <lockdb/time.hpp>

#include <algorithm>
#include <set>

#include "os.hpp"
#include "store_format.hpp"

namespace lockdb {
namespace store_format = detail::store_format;

// ---------------------------------------------------------------------------------------------
// SingletonGuard

struct SingletonGuard::State {
  explicit State(std::filesystem::path path) : lock(std::move(path)) {}
  std::mutex mu;  // serialises acquire/release of this guard
  FileLock lock;
};

namespace {

void check_singleton_name(const std::string& name) {
  const char* cause = nullptr;
  if (name.empty()) {
    cause = "the name is empty";
  } else if (name == "." || name == "..") {
    cause = "the name may not be \".\" or \"..\"";
  } else if (name.find('/') != std::string::npos) {
    cause = "the name may not hold '/'";
  } else if (name.find('\0') != std::string::npos) {
    cause = "the name may not hold a NUL byte";
  }
  if (cause)
    throw Error(Errc::invalid_argument, "invalid singleton name '" + name + "'", {}, cause);
}

std::filesystem::path singleton_dir(std::filesystem::path lock_dir) {
  return lock_dir.empty() ? os::temp_dir() : lock_dir;
}

}  // namespace

SingletonGuard::SingletonGuard(std::string name, std::filesystem::path lock_dir)
    : name_(std::move(name)) {
  check_singleton_name(name_);
  lock_path_ = singleton_dir(std::move(lock_dir)) / (name_ + ".singleton.lock");
  state_ = std::make_unique<State>(lock_path_);
}

SingletonGuard::~SingletonGuard() { release(); }

SingletonGuard::SingletonGuard(SingletonGuard&&) noexcept = default;

SingletonGuard& SingletonGuard::operator=(SingletonGuard&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::move(other.name_);
    lock_path_ = std::move(other.lock_path_);
    state_ = std::move(other.state_);
  }
  return *this;
}

SingletonGuard SingletonGuard::hold(std::string name, std::filesystem::path lock_dir) {
  SingletonGuard guard(std::move(name), std::move(lock_dir));
  // The holder is looked up after the failed try; when it was gone by then, try again (a few
  // times), so that the error names a holder whenever one is seen.
  for (int attempt = 0;; ++attempt) {
    if (guard.acquire()) return guard;
    auto holder = guard.holder();
    if (holder || attempt == 3) throw AlreadyRunning(guard.name_, guard.lock_path_, holder);
  }
}

bool SingletonGuard::acquire() {
  if (!state_) throw Error(Errc::invalid_argument, "SingletonGuard was moved from", lock_path_);
  std::lock_guard lk(state_->mu);
  if (state_->lock.is_locked()) return true;
  return state_->lock.try_lock();
}

void SingletonGuard::release() noexcept {
  if (!state_) return;
  try {
    std::lock_guard lk(state_->mu);
    if (state_->lock.is_locked()) state_->lock.unlock();
  } catch (...) {  // unlock cannot fail while is_locked() holds; nothing to report from here
  }
}

bool SingletonGuard::is_locked() const { return state_ && state_->lock.is_locked(); }

std::optional<LockHolder> SingletonGuard::holder() const {
  if (!state_) return std::nullopt;
  return state_->lock.holder();
}

// ---------------------------------------------------------------------------------------------
// MultiLockGuard

MultiLockGuard& MultiLockGuard::operator=(MultiLockGuard&& other) noexcept {
  if (this != &other) {
    release();
    guards_ = std::move(other.guards_);
  }
  return *this;
}

void MultiLockGuard::release() noexcept {
  while (!guards_.empty()) {
    try {
      guards_.back().release();
    } catch (...) {  // a forked child's copy: nothing of ours to release
    }
    guards_.pop_back();
  }
}

// ---------------------------------------------------------------------------------------------
// KeyedLockRegistry

KeyedLockRegistry::KeyedLockRegistry(std::filesystem::path lock_dir,
                                     std::chrono::nanoseconds lock_timeout, std::size_t stripes)
    : dir_(std::move(lock_dir)), lock_timeout_(lock_timeout), stripes_(stripes) {
  if (dir_.empty()) throw Error(Errc::invalid_argument, "KeyedLockRegistry: lock_dir is empty");
}

KeyedLockRegistry::~KeyedLockRegistry() = default;

std::string KeyedLockRegistry::file_name(std::string_view key) const {
  if (auto problem = store_format::key_problem(key); !problem.empty()) {
    throw Error(Errc::invalid_argument, "invalid key " + store_format::quote_key(key), dir_,
                "the key " + problem);
  }
  std::string name;
  store_format::append_lock_file_relative(key, stripes_, name);
  return name;
}

std::filesystem::path KeyedLockRegistry::lock_path(std::string_view key) const {
  return dir_ / file_name(key);
}

FileLock& KeyedLockRegistry::lock_for_file(const std::string& name) {
  std::lock_guard lk(mu_);
  auto it = locks_.find(name);
  if (it == locks_.end()) {
    it = locks_.emplace(name, std::make_unique<FileLock>(dir_ / name)).first;
  }
  return *it->second;
}

FileLock& KeyedLockRegistry::get_lock(std::string_view key) {
  return lock_for_file(file_name(key));
}

LockGuard KeyedLockRegistry::lock(std::string_view key) {
  return get_lock(key).acquire(lock_timeout_);
}

MultiLockGuard KeyedLockRegistry::lock_many(const std::vector<std::string>& keys) {
  std::set<std::string> names;  // distinct, in the one global order
  for (const auto& key : keys) names.insert(file_name(key));

  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (lock_timeout_ >= std::chrono::nanoseconds::zero()) {
    deadline = add_saturating(std::chrono::steady_clock::now(), lock_timeout_);
  }
  std::vector<LockGuard> held;  // on a throw below, releases what was taken
  held.reserve(names.size());
  for (const auto& name : names) {
    FileLock& lock = lock_for_file(name);
    auto wait = lock_timeout_;
    if (deadline) {
      wait = std::max(std::chrono::nanoseconds::zero(),
                      std::chrono::duration_cast<std::chrono::nanoseconds>(
                          *deadline - std::chrono::steady_clock::now()));
    }
    held.push_back(lock.acquire(wait));
  }
  return MultiLockGuard(std::move(held));
}

}  // namespace lockdb
