// A small etcd v3 client over etcd's JSON gateway (private).
//
// etcd serves its gRPC API as JSON on the client URL ("/v3/kv/range", "/v3/kv/txn", ...: the
// grpc-gateway), keys and values base64, 64-bit integers as strings. This client speaks it
// through libcurl: one POST per call, connections kept alive in a pool of easy handles (one per
// concurrent caller), so a call costs one round trip.
//
// Endpoints and failover: calls go to the endpoint that answered last; when it cannot be
// reached the next one is tried. A call that may have reached etcd (a write whose answer was
// lost) is not sent again: its outcome is unknown and the caller gets the error.
//
// Errors: every failure is a lockdb::Error naming the endpoint and the cause: unreachable
// (Errc::io), no quorum / no leader (Errc::io), request too large (Errc::invalid_argument),
// auth refused (Errc::permission). Every call is bounded by the client's timeout (watch: by its
// own). Thread-safe: one client may serve any number of threads. Fork: a child may keep using
// its parent's client (it opens its own connections); not while another thread is in a call.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lockdb::detail::etcd {

// "etcd://host:port[,host:port...]/prefix": endpoints and the key prefix (no trailing '/').
struct Location {
  std::vector<std::string> endpoints;  // "127.0.0.1:2379"
  std::string prefix;                  // "/myapp" ("" for the root)
  std::string text;                    // the location as given
};
inline constexpr std::string_view kScheme = "etcd://";
bool is_location(std::string_view text) noexcept;
// THROWS Error{invalid_argument} naming the location when it does not parse.
Location parse_location(std::string_view text);

std::string base64_encode(std::string_view bytes);
std::string base64_decode(std::string_view text);  // THROWS Error{corrupt} on bad input
// The smallest key greater than every key starting with `prefix` (etcd's range_end).
std::string prefix_end(std::string prefix);

// One key-value as etcd returns it (key and value decoded).
struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};
KeyValue key_value_from(const nlohmann::json& kv);
std::int64_t int_field(const nlohmann::json& object, const char* name);  // 0 when absent

struct RangeRequest {
  std::string key;
  std::string range_end;  // empty: just `key`
  std::int64_t limit = 0;
  std::int64_t revision = 0;
  std::int64_t min_create_revision = 0;
  bool keys_only = false;
};
struct RangeResult {
  std::vector<KeyValue> kvs;
  bool more = false;
  std::int64_t revision = 0;  // the store's revision the answer was read at
};

// A watch event.
struct Event {
  bool is_delete = false;
  KeyValue kv;
};

class Client {
 public:
  Client(std::vector<std::string> endpoints, std::chrono::milliseconds timeout);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // POSTs `body` to `path` ("/v3/kv/range"); returns the answer. `resendable`: the call may be
  // sent again to another endpoint after it may have reached one (reads, lease calls).
  // THROWS Error as described above.
  nlohmann::json call(std::string_view path, const nlohmann::json& body, bool resendable);

  // One range read, or all pages of it at one revision (`range_all`).
  RangeResult range(const RangeRequest& request);
  RangeResult range_all(RangeRequest request);

  // A transaction: compares, then the success or failure ops (JSON as etcd takes them).
  // Returns the whole answer ("succeeded", "responses", "header").
  nlohmann::json txn(const nlohmann::json& compare, const nlohmann::json& success,
                     const nlohmann::json& failure);

  // Leases. grant returns the lease id; keep_alive returns the remaining TTL (0: gone).
  std::int64_t lease_grant(std::chrono::seconds ttl);
  std::int64_t lease_keep_alive(std::int64_t id);
  void lease_revoke(std::int64_t id) noexcept;

  // Watches [key, range_end) from `start_revision` and returns the first batch of events, or
  // nothing when none came within `wait`. THROWS Error when no endpoint answers.
  std::vector<Event> watch_once(const std::string& key, const std::string& range_end,
                                std::int64_t start_revision, std::chrono::milliseconds wait);

  const std::vector<std::string>& endpoints() const noexcept { return endpoints_; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }

  // Op builders for txn().
  static nlohmann::json put_op(std::string_view key, std::string_view value,
                               std::int64_t lease = 0);
  static nlohmann::json delete_op(std::string_view key);
  static nlohmann::json range_op(std::string_view key);
  static nlohmann::json compare_mod(std::string_view key, std::int64_t mod_revision);
  static nlohmann::json compare_create(std::string_view key, std::int64_t create_revision);

 private:
  struct Handle;
  struct Answer;
  Handle* take_handle();
  void give_back(Handle* h) noexcept;
  // One POST to one endpoint; `wait` bounds it.
  Answer post(Handle* h, const std::string& endpoint, std::string_view path,
              const std::string& body, std::chrono::milliseconds wait);
  // Why an endpoint that timed out did not answer: "no leader (no quorum)" when its status says
  // so, else a plain "no answer".
  std::string diagnose_timeout(const std::string& endpoint);

  const std::vector<std::string> endpoints_;  // constant after construction
  const std::chrono::milliseconds timeout_;   // constant after construction
  std::atomic<std::size_t> preferred_{0};     // the endpoint that answered last
  std::mutex pool_mu_;
  std::vector<Handle*> pool_;  // idle handles, guarded by pool_mu_
  long pool_pid_;              // the process the pool's connections belong to, guarded by pool_mu_
};

}  // namespace lockdb::detail::etcd
