// The etcd JSON-gateway client (etcd_client.hpp has the contract).
#include "etcd_client.hpp"

#include "os.hpp"

#include <lockdb/error.hpp>

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <charconv>

namespace lockdb::detail::etcd {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------------
// Locations and codecs

bool is_location(std::string_view text) noexcept {
  return text.substr(0, kScheme.size()) == kScheme;
}

Location parse_location(std::string_view text) {
  Location loc;
  loc.text = std::string(text);
  auto bad = [&](const std::string& cause) {
    return Error(Errc::invalid_argument, "invalid etcd location", loc.text,
                 cause + " (expected etcd://host:port[,host:port...]/prefix)");
  };
  if (!is_location(text)) throw bad("it does not start with etcd://");
  std::string_view rest = text.substr(kScheme.size());
  const std::size_t slash = rest.find('/');
  std::string_view hosts = rest.substr(0, slash);
  if (slash != std::string_view::npos) loc.prefix = std::string(rest.substr(slash));
  while (!loc.prefix.empty() && loc.prefix.back() == '/') loc.prefix.pop_back();
  while (!hosts.empty()) {
    const std::size_t comma = hosts.find(',');
    std::string_view host = hosts.substr(0, comma);
    const std::size_t colon = host.rfind(':');
    int port = 0;
    if (colon == std::string_view::npos || colon == 0 ||
        std::from_chars(host.data() + colon + 1, host.data() + host.size(), port).ptr !=
            host.data() + host.size() ||
        port <= 0 || port > 65535) {
      throw bad("endpoint \"" + std::string(host) + "\" is not host:port");
    }
    loc.endpoints.emplace_back(host);
    if (comma == std::string_view::npos) break;
    hosts.remove_prefix(comma + 1);
  }
  if (loc.endpoints.empty()) throw bad("no endpoint");
  return loc;
}

namespace {
constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}
}  // namespace

std::string base64_encode(std::string_view bytes) {
  auto byte = [&](std::size_t i) -> std::uint32_t {
    return i < bytes.size() ? static_cast<unsigned char>(bytes[i]) : 0U;
  };
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t v = byte(i) << 16U | byte(i + 1) << 8U | byte(i + 2);
    const std::size_t left = bytes.size() - i;  // 1, 2 or 3 and more
    out += kBase64[v >> 18U];
    out += kBase64[(v >> 12U) & 63U];
    out += left > 1 ? kBase64[(v >> 6U) & 63U] : '=';
    out += left > 2 ? kBase64[v & 63U] : '=';
  }
  return out;
}

std::string base64_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3);
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const int v = base64_value(c);
    if (v < 0) throw Error(Errc::corrupt, "etcd answer", {}, "invalid base64");
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(prefix.back());
    if (last < 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

std::int64_t int_field(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) return 0;
  if (it->is_number_unsigned()) return static_cast<std::int64_t>(it->get<std::uint64_t>());
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_string()) {
    // Member ids are unsigned 64-bit: kept as their bit pattern.
    const auto& s = it->get_ref<const std::string&>();
    if (!s.empty() && s.front() == '-') {
      std::int64_t v = 0;
      std::from_chars(s.data(), s.data() + s.size(), v);
      return v;
    }
    std::uint64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return static_cast<std::int64_t>(v);
  }
  return 0;
}

KeyValue key_value_from(const json& kv) {
  KeyValue out;
  if (auto it = kv.find("key"); it != kv.end()) out.key = base64_decode(it->get<std::string>());
  if (auto it = kv.find("value"); it != kv.end()) out.value = base64_decode(it->get<std::string>());
  out.create_revision = int_field(kv, "create_revision");
  out.mod_revision = int_field(kv, "mod_revision");
  out.version = int_field(kv, "version");
  out.lease = int_field(kv, "lease");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Transport

namespace {

std::once_flag curl_once;

size_t collect(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

// What an error answer of etcd means: code and cause. `write`: the request changes data, so an
// answer that it timed out inside etcd leaves its outcome unknown (raft may still commit it).
Error gateway_error(const std::string& endpoint, long http, const std::string& body, bool write) {
  std::string message;
  long code = 0;
  json doc = json::parse(body, nullptr, false);
  if (doc.is_object()) {
    if (auto it = doc.find("message"); it != doc.end() && it->is_string()) message = *it;
    if (auto it = doc.find("error"); message.empty() && it != doc.end() && it->is_string()) {
      message = *it;
    }
    code = static_cast<long>(int_field(doc, "code"));
  }
  if (message.empty()) message = "HTTP " + std::to_string(http) + ": " + body.substr(0, 200);
  const std::string context = "etcd " + endpoint;
  if (message.find("request is too large") != std::string::npos ||
      message.find("larger than max") != std::string::npos) {
    return Error(Errc::invalid_argument, context, {},
                 "request too large (" + message + "; etcd's default limit is 1.5 MiB)");
  }
  if (code == 16 || code == 7 || message.find("auth") != std::string::npos ||
      message.find("user name") != std::string::npos ||
      message.find("permission denied") != std::string::npos) {
    return Error(Errc::permission, context, {}, "auth refused (" + message + ")");
  }
  if (message.find("no leader") != std::string::npos ||
      message.find("timed out") != std::string::npos ||
      message.find("leader changed") != std::string::npos) {
    const bool unknown = write && message.find("no leader") == std::string::npos;
    return Error(Errc::io, context, {},
                 "no quorum (" + message + ")" +
                     (unknown ? "; the request may or may not have been applied" : ""));
  }
  if (message.find("too many operations") != std::string::npos) {
    return Error(Errc::invalid_argument, context, {}, message);
  }
  return Error(Errc::io, context, {}, message);
}

}  // namespace

struct Client::Handle {
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  ~Handle() {
    if (curl != nullptr) curl_easy_cleanup(curl);
    if (headers != nullptr) curl_slist_free_all(headers);
  }
};

struct Client::Answer {
  CURLcode transport = CURLE_OK;
  long http = 0;
  std::string body;
  bool sent = false;  // the request may have reached etcd
};

Client::Client(std::vector<std::string> endpoints, milliseconds timeout)
    : endpoints_(std::move(endpoints)),
      timeout_(std::max(timeout, milliseconds(50))),
      pool_pid_(os::cached_pid()) {
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Client::~Client() {
  for (Handle* h : pool_) delete h;
}

Client::Handle* Client::take_handle() {
  {
    std::lock_guard<std::mutex> guard(pool_mu_);
    if (pool_pid_ != os::cached_pid()) {
      // A forked child: the pooled connections are its parent's too; close its copies.
      for (Handle* h : pool_) delete h;
      pool_.clear();
      pool_pid_ = os::cached_pid();
    }
    if (!pool_.empty()) {
      Handle* h = pool_.back();
      pool_.pop_back();
      return h;
    }
  }
  auto* h = new Handle;
  h->curl = curl_easy_init();
  h->headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (h->curl == nullptr || h->headers == nullptr) {
    delete h;
    throw Error(Errc::io, "etcd client", {}, "cannot initialise libcurl");
  }
  curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
  curl_easy_setopt(h->curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, collect);
  return h;
}

void Client::give_back(Handle* h) noexcept {
  try {
    std::lock_guard<std::mutex> guard(pool_mu_);
    pool_.push_back(h);
  } catch (...) {
    delete h;
  }
}

Client::Answer Client::post(Handle* h, const std::string& endpoint, std::string_view path,
                            const std::string& body, milliseconds wait) {
  Answer a;
  const std::string url = "http://" + endpoint + std::string(path);
  curl_easy_setopt(h->curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &a.body);
  curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<long>(wait.count(), 1)));
  curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::clamp<long>(wait.count(), 1, 1000)));
  a.transport = curl_easy_perform(h->curl);
  curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &a.http);
  a.sent = a.transport != CURLE_COULDNT_CONNECT && a.transport != CURLE_COULDNT_RESOLVE_HOST;
  if (a.transport == CURLE_OPERATION_TIMEDOUT) {
    // A connect that timed out sent nothing. The connect time alone does not tell: it is 0 on a
    // kept-alive connection too, over which the request went out at once. Sending starts at the
    // "pretransfer" point, which a transfer stuck in its connect never reaches.
    curl_off_t connected = 0, pretransfer = 0;
    curl_easy_getinfo(h->curl, CURLINFO_CONNECT_TIME_T, &connected);
    curl_easy_getinfo(h->curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    if (connected <= 0 && pretransfer <= 0) a.sent = false;
  }
  return a;
}

std::string Client::diagnose_timeout(const std::string& endpoint) {
  Handle* h = take_handle();
  Answer a = post(h, endpoint, "/v3/maintenance/status", "{}", milliseconds(300));
  give_back(h);
  if (a.transport != CURLE_OK || a.http != 200) return "no answer within the timeout";
  json doc = json::parse(a.body, nullptr, false);
  if (doc.is_object() && int_field(doc, "leader") == 0) {
    return "no answer within the timeout: no leader (no quorum)";
  }
  return "no answer within the timeout";
}

json Client::call(std::string_view path, const json& body, bool resendable) {
  const std::string text = body.dump();
  const auto deadline = Clock::now() + timeout_;
  const std::size_t n = endpoints_.size();
  const std::size_t first = preferred_.load(std::memory_order_relaxed) % n;
  std::string causes;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t index = (first + i) % n;
    const std::string& endpoint = endpoints_[index];
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    // A dead endpoint must leave time for the others: each try gets its share, at least 250 ms.
    const milliseconds share =
        i + 1 == n ? left
                   : std::min(left, std::max(milliseconds(250), left / static_cast<long>(n - i)));
    Handle* h = take_handle();
    Answer a = post(h, endpoint, path, text, share);
    give_back(h);
    if (a.transport == CURLE_OK) {
      if (a.http == 200) {
        preferred_.store(index, std::memory_order_relaxed);
        json doc = json::parse(a.body, nullptr, false);
        if (doc.is_discarded()) {
          throw Error(Errc::io, "etcd " + endpoint, {}, "the answer is not JSON");
        }
        return doc;
      }
      Error e = gateway_error(endpoint, a.http, a.body, /*write=*/!resendable);
      // A member without a leader may be cut off from the others: another may answer.
      const bool no_quorum = std::string_view(e.what()).find("no quorum") != std::string::npos;
      if (!no_quorum || !resendable) throw e;
      causes += std::string(causes.empty() ? "" : "; ") + e.what();
      continue;
    }
    std::string cause;
    // etcd answers a request over its size limit (1.5 MiB by default) and closes the connection,
    // which a client still sending the body sees as a send or receive failure.
    if ((a.transport == CURLE_SEND_ERROR || a.transport == CURLE_RECV_ERROR) &&
        text.size() > (3u << 19)) {
      throw Error(Errc::invalid_argument, "etcd " + endpoint, {},
                  "request too large (" + std::to_string(text.size()) +
                      " bytes of JSON; etcd's default limit is 1.5 MiB): " +
                      curl_easy_strerror(a.transport));
    }
    if (a.transport == CURLE_OPERATION_TIMEDOUT) {
      cause = diagnose_timeout(endpoint);
    } else if (a.transport == CURLE_COULDNT_CONNECT) {
      cause = "unreachable (connection refused)";
    } else {
      cause = std::string("unreachable (") + curl_easy_strerror(a.transport) + ")";
    }
    if (a.sent && !resendable) {
      throw Error(Errc::io, "etcd " + endpoint, {},
                  cause + "; the request may or may not have been applied");
    }
    causes += std::string(causes.empty() ? "" : "; ") + endpoint + ": " + cause;
  }
  std::string all;
  for (const auto& e : endpoints_) all += (all.empty() ? "" : ",") + e;
  throw Error(Errc::io, "etcd " + all, {},
              (causes.empty() ? std::string("no answer within the timeout") : causes) + " (" +
                  std::to_string(timeout_.count()) + " ms timeout)");
}

// ---------------------------------------------------------------------------------------------
// KV, leases, watch

RangeResult Client::range(const RangeRequest& r) {
  json body = {{"key", base64_encode(r.key)}};
  if (!r.range_end.empty()) body["range_end"] = base64_encode(r.range_end);
  if (r.limit > 0) body["limit"] = std::to_string(r.limit);
  if (r.revision > 0) body["revision"] = std::to_string(r.revision);
  if (r.min_create_revision > 0)
    body["min_create_revision"] = std::to_string(r.min_create_revision);
  if (r.keys_only) body["keys_only"] = true;
  json doc = call("/v3/kv/range", body, /*resendable=*/true);
  RangeResult out;
  out.revision = int_field(doc["header"], "revision");
  out.more = doc.value("more", false);
  if (auto it = doc.find("kvs"); it != doc.end()) {
    out.kvs.reserve(it->size());
    for (const auto& kv : *it) out.kvs.push_back(key_value_from(kv));
  }
  return out;
}

RangeResult Client::range_all(RangeRequest r) {
  if (r.limit == 0) r.limit = 1000;
  RangeResult all;
  for (;;) {
    RangeResult page = range(r);
    if (all.revision == 0) all.revision = page.revision;
    r.revision = all.revision;  // every page at the first page's revision
    const bool more = page.more && !page.kvs.empty();
    if (more) r.key = page.kvs.back().key + std::string(1, '\0');
    for (auto& kv : page.kvs) all.kvs.push_back(std::move(kv));
    if (!more) break;
  }
  return all;
}

json Client::txn(const json& compare, const json& success, const json& failure) {
  json body = json::object();
  if (!compare.empty()) body["compare"] = compare;
  if (!success.empty()) body["success"] = success;
  if (!failure.empty()) body["failure"] = failure;
  return call("/v3/kv/txn", body, /*resendable=*/false);
}

std::int64_t Client::lease_grant(std::chrono::seconds ttl) {
  json doc = call("/v3/lease/grant", {{"TTL", std::to_string(ttl.count())}}, true);
  const std::int64_t id = int_field(doc, "ID");
  if (id == 0) {
    throw Error(Errc::io, "etcd lease grant", {}, doc.value("error", std::string("no lease id")));
  }
  return id;
}

std::int64_t Client::lease_keep_alive(std::int64_t id) {
  json doc = call("/v3/lease/keepalive", {{"ID", std::to_string(id)}}, true);
  auto it = doc.find("result");
  return it == doc.end() ? 0 : int_field(*it, "TTL");
}

void Client::lease_revoke(std::int64_t id) noexcept {
  try {
    (void)call("/v3/lease/revoke", {{"ID", std::to_string(id)}}, true);
  } catch (...) {  // NOLINT(bugprone-empty-catch): the lease expires by itself
  }
}

namespace {
// The watch stream: one JSON object per line; stops the transfer once events came.
struct WatchStream {
  std::string buffer;
  std::vector<Event> events;
  std::string error;
};

size_t watch_chunk(char* data, size_t size, size_t count, void* user) {
  auto* s = static_cast<WatchStream*>(user);
  s->buffer.append(data, size * count);
  std::size_t nl;
  while ((nl = s->buffer.find('\n')) != std::string::npos) {
    json doc = json::parse(s->buffer.substr(0, nl), nullptr, false);
    s->buffer.erase(0, nl + 1);
    if (!doc.is_object()) continue;
    if (auto err = doc.find("error"); err != doc.end()) {
      s->error = err->is_object() ? err->value("message", err->dump()) : err->dump();
      return 0;
    }
    auto result = doc.find("result");
    if (result == doc.end()) continue;
    if (result->value("canceled", false)) {
      s->error = result->value("cancel_reason", std::string("watch canceled"));
      if (int_field(*result, "compact_revision") != 0) s->error += " (compacted)";
      return 0;
    }
    if (auto ev = result->find("events"); ev != result->end() && !ev->empty()) {
      for (const auto& e : *ev) {
        Event out;
        out.is_delete = e.value("type", std::string()) == "DELETE";
        if (auto kv = e.find("kv"); kv != e.end()) out.kv = key_value_from(*kv);
        s->events.push_back(std::move(out));
      }
      return 0;  // enough: stop the stream
    }
  }
  return size * count;
}
}  // namespace

std::vector<Event> Client::watch_once(const std::string& key, const std::string& range_end,
                                      std::int64_t start_revision, milliseconds wait) {
  json create = {{"key", base64_encode(key)}};
  if (!range_end.empty()) create["range_end"] = base64_encode(range_end);
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  const std::string body = json{{"create_request", create}}.dump();
  const std::size_t n = endpoints_.size();
  const std::size_t first = preferred_.load(std::memory_order_relaxed) % n;
  std::string causes;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& endpoint = endpoints_[(first + i) % n];
    CURL* curl = curl_easy_init();
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    if (curl == nullptr || headers == nullptr) {
      if (curl != nullptr) curl_easy_cleanup(curl);
      if (headers != nullptr) curl_slist_free_all(headers);
      throw Error(Errc::io, "etcd client", {}, "cannot initialise libcurl");
    }
    WatchStream stream;
    const std::string url = "http://" + endpoint + "/v3/watch";
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, watch_chunk);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &stream);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<long>(wait.count(), 1)));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::clamp<long>(wait.count(), 1, 1000)));
    const CURLcode rc = curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    if (!stream.events.empty()) return std::move(stream.events);
    if (!stream.error.empty())
      throw Error(Errc::io, "etcd " + endpoint + " watch", {}, stream.error);
    if (rc == CURLE_OPERATION_TIMEDOUT) return {};  // nothing happened within `wait`
    causes += std::string(causes.empty() ? "" : "; ") + endpoint + ": " + curl_easy_strerror(rc);
  }
  throw Error(Errc::io, "etcd watch", {}, "unreachable (" + causes + ")");
}

json Client::put_op(std::string_view key, std::string_view value, std::int64_t lease) {
  json put = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease != 0) put["lease"] = std::to_string(lease);
  return {{"request_put", std::move(put)}};
}

json Client::delete_op(std::string_view key) {
  return {{"request_delete_range", {{"key", base64_encode(key)}}}};
}

json Client::range_op(std::string_view key) {
  return {{"request_range", {{"key", base64_encode(key)}}}};
}

json Client::compare_mod(std::string_view key, std::int64_t mod_revision) {
  return {{"key", base64_encode(key)},
          {"target", "MOD"},
          {"result", "EQUAL"},
          {"mod_revision", std::to_string(mod_revision)}};
}

json Client::compare_create(std::string_view key, std::int64_t create_revision) {
  return {{"key", base64_encode(key)},
          {"target", "CREATE"},
          {"result", "EQUAL"},
          {"create_revision", std::to_string(create_revision)}};
}

}  // namespace lockdb::detail::etcd
