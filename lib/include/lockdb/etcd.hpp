// Locks on an etcd cluster: one lock for processes on any number of machines.
//
// An EtcdLock is a key "<prefix>/lock/<name>" under an etcd location
// ("etcd://host:port[,host:port...]/prefix", as for Store), created only when absent, attached
// to a lease. While held, a background thread keeps the lease alive (every third of its TTL);
// when the holder dies, hangs or is cut off from the cluster, the lease expires after its TTL and
// etcd deletes the key: the lock is free again. The key holds who holds it (pid, host, program,
// since), so a Timeout or AlreadyRunning names the holder as the file lock's do, and
// etcd_locks() (`lockdb locks etcd://...`) lists every holder.
//
// Threads: an EtcdLock object is not reentrant; guard one object with a mutex to share it
// between threads (different objects are independent). Fork: a child must not use its parent's
// held EtcdLock (the lease and its keep-alive thread belong to the parent). Waiting uses an etcd
// watch on the key, so a released lock is taken over promptly.
#pragma once

#include <lockdb/error.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lockdb {

struct EtcdLockOptions {
  // How long the lock outlives a holder that stopped renewing it (died, hung, cut off).
  std::chrono::seconds ttl = std::chrono::seconds(10);
  // Every request to etcd is bounded by this.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(5);
};

class EtcdLock {
 public:
  // Does no I/O. THROWS Error{invalid_argument} for a location that does not parse, or a name
  // that is empty or holds '/' or NUL.
  EtcdLock(std::string location, std::string name, EtcdLockOptions options = {});
  ~EtcdLock();  // releases
  EtcdLock(EtcdLock&&) noexcept;
  EtcdLock& operator=(EtcdLock&&) noexcept;

  // Blocks until held, or throws Timeout (naming the holder) after `timeout`; timeout < 0 waits
  // forever, 0 tries once. THROWS Error{io|permission} naming the endpoint when etcd cannot be
  // asked (unreachable, no quorum, auth refused); each request is bounded by request_timeout.
  // REQUIRES: not held through this object.
  void acquire(std::chrono::nanoseconds timeout);
  // Tries once. true: held now. THROWS as acquire.
  bool try_acquire();
  // Releases if held (deletes the key and revokes the lease); does nothing otherwise. Never
  // throws: a release that cannot reach etcd leaves the lock to expire with its lease.
  void release() noexcept;
  // True while held through this object and the lease has not been found expired.
  bool is_locked() const;
  // Who holds the lock right now, if anyone (a snapshot). THROWS as acquire.
  std::optional<LockHolder> holder() const;

  // Lockable.
  void lock() { acquire(kForever); }
  bool try_lock() { return try_acquire(); }
  void unlock() noexcept { release(); }

  // "One instance per cluster": an EtcdLock already held, as SingletonGuard::hold for a
  // directory. THROWS AlreadyRunning naming the holder when another process holds `name`.
  [[nodiscard]] static EtcdLock hold_singleton(std::string location, std::string name,
                                               EtcdLockOptions options = {});

  const std::string& name() const noexcept;
  // "etcd://.../prefix/lock/<name>".
  const std::string& lock_path() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// One held lock of a store's location, as etcd_locks() lists them.
struct EtcdLockInfo {
  std::string name{};
  LockHolder holder{};
  std::int64_t lease = 0;  // the etcd lease id
};
// Every lock held under `location`, by name. THROWS as EtcdLock::acquire.
std::vector<EtcdLockInfo> etcd_locks(const std::string& location, EtcdLockOptions options = {});

}  // namespace lockdb
