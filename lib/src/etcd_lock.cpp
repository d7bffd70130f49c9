// EtcdLock: a lease-held lock key (etcd.hpp has the contract).
//
// Protocol: grant a lease of `ttl`, start keeping it alive, then try
//   txn: if create_revision(P/lock/name) == 0 then put(P/lock/name, holder, lease)
//        else range(P/lock/name)
// The key exists only while some lease keeps it, so a holder that stops renewing (death,
// partition) loses it after at most ttl. A waiter watches the key from the revision it read and
// tries again when it changes (or after a second, whichever comes first), until its timeout;
// then it revokes its lease and throws Timeout naming the holder read last.
#include <lockdb/etcd.hpp>

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "etcd_client.hpp"
#include "etcd_store.hpp"
#include "log_format.hpp"
#include "os.hpp"

namespace lockdb {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace etcd = detail::etcd;

namespace {

LockHolder holder_from(const std::string& value) {
  LockHolder h;
  json doc = json::parse(value, nullptr, false);
  if (!doc.is_object()) return h;
  h.pid = doc.value("pid", 0L);
  h.host = doc.value("host", std::string());
  h.program = doc.value("program", std::string());
  if (auto since = detail::log_format::parse_time(doc.value("since", std::string()))) {
    h.since = *since;
  }
  return h;
}

std::string holder_text() {
  const long pid = os::cached_pid();
  return json{{"pid", pid},
              {"host", os::hostname()},
              {"program", os::program_name(pid)},
              {"since", detail::log_format::format_time(std::chrono::system_clock::now())}}
      .dump();
}

}  // namespace

struct EtcdLock::State {
  State(std::string location_text, std::string lock_name, EtcdLockOptions o)
      : location(etcd::parse_location(location_text)),
        name(std::move(lock_name)),
        options(o),
        key(etcd::Layout(location.prefix).locks + name),
        path(location.text + "/lock/" + name),
        client(location.endpoints, o.request_timeout) {}

  ~State() { stop_keep_alive(); }

  void start_keep_alive() {
    stop = false;
    keeper = std::thread([this] {
      const auto period =
          std::max(std::chrono::milliseconds(100),
                   std::chrono::duration_cast<std::chrono::milliseconds>(options.ttl) / 3);
      std::unique_lock<std::mutex> guard(mu);
      while (!cv.wait_for(guard, period, [this] { return stop; })) {
        const std::int64_t id = lease;
        guard.unlock();
        std::int64_t ttl = -1;
        try {
          ttl = client.lease_keep_alive(id);
        } catch (const Error&) {  // unreachable for now: try again next period
        }
        guard.lock();
        if (ttl == 0) lost = true;  // the lease expired: the lock is gone
      }
    });
  }

  void stop_keep_alive() noexcept {
    {
      std::lock_guard<std::mutex> guard(mu);
      stop = true;
    }
    cv.notify_all();
    if (keeper.joinable()) keeper.join();
  }

  const etcd::Location location;
  const std::string name;
  const EtcdLockOptions options;
  const std::string key;
  const std::string path;
  etcd::Client client;

  std::mutex mu;
  std::condition_variable cv;
  std::thread keeper;
  bool stop = false;       // guarded by mu
  bool lost = false;       // guarded by mu
  std::int64_t lease = 0;  // guarded by mu (written only while no keeper runs)
  bool held = false;
};

EtcdLock::EtcdLock(std::string location, std::string name, EtcdLockOptions options) {
  if (name.empty() || name.find('/') != std::string::npos || name.find('\0') != std::string::npos) {
    throw Error(Errc::invalid_argument, "invalid etcd lock name \"" + name + "\"", {},
                "it is empty or holds '/' or NUL");
  }
  state_ = std::make_unique<State>(std::move(location), std::move(name), options);
}

EtcdLock::~EtcdLock() { release(); }
EtcdLock::EtcdLock(EtcdLock&&) noexcept = default;
EtcdLock& EtcdLock::operator=(EtcdLock&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
  }
  return *this;
}

const std::string& EtcdLock::name() const noexcept { return state_->name; }
const std::string& EtcdLock::lock_path() const noexcept { return state_->path; }

void EtcdLock::acquire(std::chrono::nanoseconds timeout) {
  State& s = *state_;
  if (s.held) {
    throw Error(Errc::conflict, "etcd lock \"" + s.name + "\"", s.path,
                "already held through this object");
  }
  const auto start = Clock::now();
  const std::int64_t lease = s.client.lease_grant(s.options.ttl);
  {
    std::lock_guard<std::mutex> guard(s.mu);
    s.lease = lease;
    s.lost = false;
  }
  s.start_keep_alive();  // the lease must outlive a long wait
  const std::string value = holder_text();
  try {
    for (;;) {
      json answer = s.client.txn(json::array({etcd::Client::compare_create(s.key, 0)}),
                                 json::array({etcd::Client::put_op(s.key, value, lease)}),
                                 json::array({etcd::Client::range_op(s.key)}));
      if (answer.value("succeeded", false)) {
        s.held = true;
        return;
      }
      std::optional<LockHolder> holder;
      const json& rr = answer.at("responses").at(0).at("response_range");
      if (auto kvs = rr.find("kvs"); kvs != rr.end() && !kvs->empty()) {
        holder = holder_from(etcd::key_value_from(kvs->at(0)).value);
      }
      const auto waited = Clock::now() - start;
      if (timeout.count() >= 0 && waited >= timeout) {
        throw Timeout("etcd lock \"" + s.name + "\"", s.path,
                      timeout.count() == 0
                          ? std::chrono::nanoseconds(0)
                          : std::chrono::duration_cast<std::chrono::nanoseconds>(waited),
                      holder);
      }
      auto wait = std::chrono::milliseconds(1000);
      if (timeout.count() >= 0) {
        wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                  timeout - waited + std::chrono::milliseconds(1)));
      }
      (void)s.client.watch_once(s.key, {}, etcd::int_field(answer.at("header"), "revision") + 1,
                                wait);
    }
  } catch (...) {
    s.stop_keep_alive();
    s.client.lease_revoke(lease);
    throw;
  }
}

bool EtcdLock::try_acquire() {
  try {
    acquire(std::chrono::nanoseconds(0));
    return true;
  } catch (const Timeout&) {
    return false;
  }
}

void EtcdLock::release() noexcept {
  if (!state_ || !state_->held) return;
  State& s = *state_;
  s.held = false;
  s.stop_keep_alive();
  // Revoking the lease deletes the key with it (and only if it is still ours).
  s.client.lease_revoke(s.lease);
}

bool EtcdLock::is_locked() const {
  if (!state_ || !state_->held) return false;
  std::lock_guard<std::mutex> guard(state_->mu);
  return !state_->lost;
}

std::optional<LockHolder> EtcdLock::holder() const {
  etcd::RangeRequest r;
  r.key = state_->key;
  auto result = state_->client.range(r);
  if (result.kvs.empty()) return std::nullopt;
  return holder_from(result.kvs.front().value);
}

EtcdLock EtcdLock::hold_singleton(std::string location, std::string name, EtcdLockOptions options) {
  EtcdLock lock(std::move(location), name, options);
  try {
    lock.acquire(std::chrono::nanoseconds(0));
  } catch (const Timeout& e) {
    throw AlreadyRunning(name, lock.lock_path(), e.holder());
  }
  return lock;
}

std::vector<EtcdLockInfo> etcd_locks(const std::string& location, EtcdLockOptions options) {
  const etcd::Location loc = etcd::parse_location(location);
  const etcd::Layout layout(loc.prefix);
  etcd::Client client(loc.endpoints, options.request_timeout);
  etcd::RangeRequest r;
  r.key = layout.locks;
  r.range_end = etcd::prefix_end(layout.locks);
  std::vector<EtcdLockInfo> out;
  for (const auto& kv : client.range_all(r).kvs) {
    out.push_back({kv.key.substr(layout.locks.size()), holder_from(kv.value), kv.lease});
  }
  return out;
}

}  // namespace lockdb
