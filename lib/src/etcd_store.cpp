// Store and History on an etcd v3 cluster (the "etcd://" backend; README "etcd backend").
//
// Layout under the location's prefix P:
//   P/lockdb        the marker ({"format":"lockdb","version":1,"created":...}), made on open
//   P/k/<key>       a key's value: its JSON text, as a key file holds it (without the final
//                   newline of a directory store's format 2)
//   P/log/<id>      one audit record per change (the history log's record fields, without
//                   "version": a record's version is its own create_revision, which is the
//                   revision of the transaction that wrote it and the key's new mod_revision)
//   P/lock/<name>   lease-held locks (etcd_lock.cpp)
//
// The version token is the key's mod_revision as decimal text. A write is: read the key (its
// value and mod_revision), decide, then one transaction: "if mod_revision(P/k/key) is still what
// was read, write the key and its audit record; else read the key again". A lost race retries
// with the value the failure branch returned, until StoreOptions::lock_timeout, then Timeout
// naming the key. update_many is the same over all its keys in one transaction.
#include <lockdb/store.hpp>

#include <algorithm>
#include <climits>
#include <random>
#include <set>

#include "etcd_client.hpp"
#include "etcd_store.hpp"
#include "json_io.hpp"
#include "log_format.hpp"
#include "os.hpp"
#include "store_backend.hpp"
#include "store_format.hpp"

namespace lockdb::detail {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace format = store_format;
// The etcd layout's own version (the marker's "version"), independent of the directory store's.
constexpr int kEtcdFormatVersion = 1;

namespace etcd {

std::string record_id() {
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 random(std::random_device{}() ^
                                      static_cast<std::uint64_t>(os::cached_pid()) << 32);
  char buf[64];
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  std::snprintf(buf, sizeof buf, "%016llx-%016llx-%08llx",
                static_cast<unsigned long long>(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()),
                static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(counter.fetch_add(1) & 0xffffffffu));
  return buf;
}

Layout::Layout(std::string prefix)
    : marker(prefix + "/lockdb"),
      keys(prefix + "/k/"),
      log(prefix + "/log/"),
      locks(prefix + "/lock/") {}

Record record_from(const KeyValue& kv) {
  json doc = json::parse(kv.value, nullptr, false);
  if (!doc.is_object()) {
    throw Error(Errc::corrupt, "etcd audit record", kv.key, "it does not parse");
  }
  Record r;
  namespace lf = log_format;
  if (auto t = lf::parse_time(doc.value(lf::kFieldTime, std::string()))) r.time = *t;
  r.key = doc.value(lf::kFieldKey, std::string());
  r.op = doc.value(lf::kFieldOp, std::string());
  if (auto it = doc.find(lf::kFieldValue); it != doc.end()) {
    r.value = *it;
    r.version = std::to_string(kv.create_revision);
  }
  if (auto it = doc.find(lf::kFieldPrev); it != doc.end() && it->is_string()) r.prev_version = *it;
  r.pid = doc.value(lf::kFieldPid, 0L);
  r.host = doc.value(lf::kFieldHost, std::string());
  r.segment = static_cast<std::uint64_t>(kv.create_revision);
  r.offset = 0;
  return r;
}

std::string render_record(std::string_view key, std::string_view op, const json* value,
                          std::int64_t prev) {
  namespace lf = log_format;
  json doc = {{lf::kFieldTime, lf::format_time(std::chrono::system_clock::now())},
              {lf::kFieldKey, key},
              {lf::kFieldOp, op},
              {lf::kFieldPrev, prev == 0 ? json() : json(std::to_string(prev))},
              {lf::kFieldPid, os::cached_pid()},
              {lf::kFieldHost, os::hostname()}};
  if (value != nullptr) doc[lf::kFieldValue] = *value;
  return doc.dump();
}

std::vector<Record> read_records(Client& client, const Layout& layout,
                                 std::int64_t min_create_revision, std::int64_t* revision) {
  RangeRequest r;
  r.key = layout.log;
  r.range_end = prefix_end(layout.log);
  r.min_create_revision = min_create_revision;
  RangeResult all = client.range_all(r);
  if (revision != nullptr) *revision = all.revision;
  std::sort(all.kvs.begin(), all.kvs.end(), [](const KeyValue& a, const KeyValue& b) {
    return a.create_revision != b.create_revision ? a.create_revision < b.create_revision
                                                  : a.key < b.key;
  });
  std::vector<Record> out;
  out.reserve(all.kvs.size());
  for (const auto& kv : all.kvs) out.push_back(record_from(kv));
  return out;
}

bool matches(const Query& q, const Record& r) {
  if (q.key && r.key != *q.key) return false;
  if (q.key_prefix && !r.key.starts_with(*q.key_prefix)) return false;
  if (q.since && r.time < *q.since) return false;
  if (q.until && r.time >= *q.until) return false;
  if (q.op && r.op != *q.op) return false;
  return true;
}

}  // namespace etcd

namespace {

using etcd::Client;
using etcd::KeyValue;

std::chrono::milliseconds request_timeout_of(const StoreOptions& o) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(o.request_timeout);
}

class EtcdStore final : public StoreBackend {
 public:
  EtcdStore(const fs::path& location, const StoreOptions& options)
      : location_(location),
        loc_(etcd::parse_location(location.native())),
        options_([&options] {
          StoreOptions o = options;
          o.shared_group = false;  // no files, so never group-shared (options() says so)
          return o;
        }()),
        layout_(loc_.prefix),
        client_(loc_.endpoints, request_timeout_of(options)) {
    // The marker: made once (create_revision 0 -> put), so that create = false can refuse a
    // prefix that holds no store.
    KeyValue marker;
    if (read(layout_.marker, marker)) return;
    if (!options_.create) {
      throw Error(Errc::not_found, "no lockdb store", location_,
                  "there is no " + layout_.marker + " key (create = false)");
    }
    json doc = {{format::kFieldFormat, format::kFormatName},
                {format::kFieldVersion, kEtcdFormatVersion},
                {format::kFieldCreated, log_format::format_time(std::chrono::system_clock::now())}};
    (void)client_.txn(json::array({Client::compare_create(layout_.marker, 0)}),
                      json::array({Client::put_op(layout_.marker, doc.dump())}), json::array());
  }

  const fs::path& location() const noexcept override { return location_; }
  const StoreOptions& options() const noexcept override { return options_; }

  fs::path file_path(const std::string& key) const override {
    return fs::path(loc_.text + "/k/" + valid(key));
  }

  std::optional<json> get(const std::string& key) const override {
    auto e = entry(key);
    if (!e) return std::nullopt;
    return std::move(e->value);
  }

  std::optional<Entry> entry(const std::string& key) const override {
    KeyValue kv;
    if (!read(data_key(key), kv)) return std::nullopt;
    return Entry{parse(key, kv.value), std::to_string(kv.mod_revision)};
  }

  bool contains(const std::string& key) const override {
    etcd::RangeRequest r;
    r.key = data_key(key);
    r.keys_only = true;
    return !client_.range(r).kvs.empty();
  }

  std::vector<std::string> keys() const override {
    etcd::RangeRequest r;
    r.key = layout_.keys;
    r.range_end = etcd::prefix_end(layout_.keys);
    r.keys_only = true;
    std::vector<std::string> out;
    for (auto& kv : client_.range_all(r).kvs) out.push_back(kv.key.substr(layout_.keys.size()));
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string put(const std::string& key, const json& value, std::string_view op) override {
    return write_one(key, op,
                     [&](const KeyValue* cur) {
                       if (cur) (void)parse(key, cur->value);
                       return Decision{Action::write, value};
                     })
        .version;
  }

  json update(const std::string& key, const std::function<void(json&)>& fn) override {
    return write_one(key, "update",
                     [&](const KeyValue* cur) {
                       json value = cur ? parse(key, cur->value) : json();
                       fn(value);
                       return Decision{Action::write, std::move(value)};
                     })
        .value;
  }

  std::int64_t increment(const std::string& key, std::int64_t delta) override {
    std::int64_t result = 0;
    write_one(key, "increment", [&](const KeyValue* cur) {
      std::int64_t before = 0;
      if (cur) {
        json value = parse(key, cur->value);
        if (!value.is_number_integer() ||
            (value.is_number_unsigned() &&
             value.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))) {
          std::string shown = value.dump();
          if (shown.size() > 80) shown = shown.substr(0, 77) + "...";
          throw Error(Errc::invalid_argument, context(key) + ": cannot increment", location_,
                      "the value is not a 64-bit signed integer: " + shown);
        }
        before = value.get<std::int64_t>();
      }
      if (__builtin_add_overflow(before, delta, &result)) {
        throw Error(Errc::invalid_argument, context(key) + ": cannot increment", location_,
                    std::to_string(before) + " + " + std::to_string(delta) +
                        " overflows a 64-bit signed integer");
      }
      return Decision{Action::write, json(result)};
    });
    return result;
  }

  bool erase(const std::string& key) override {
    return write_one(key, "erase",
                     [&](const KeyValue* cur) {
                       if (!cur) return Decision{};
                       (void)parse(key, cur->value);
                       return Decision{Action::erase, json()};
                     })
        .changed;
  }

  bool compare_and_put(const std::string& key, const std::optional<std::string>& expected,
                       const json& value, std::string_view op) override {
    const std::string k = data_key(key);
    KeyValue cur;
    const bool exists = read(k, cur);
    if (exists) (void)parse(key, cur.value);
    if (expected ? !exists || std::to_string(cur.mod_revision) != *expected : exists) return false;
    const std::string bytes = render(key, value);
    json success = json::array(
        {Client::put_op(k, bytes),
         Client::put_op(layout_.log + etcd::record_id(),
                        etcd::render_record(key, op, &value, exists ? cur.mod_revision : 0))});
    json answer = client_.txn(json::array({Client::compare_mod(k, exists ? cur.mod_revision : 0)}),
                              success, json::array());
    // A lost race: the key changed after it was read, so it no longer has the expected version.
    return answer.value("succeeded", false);
  }

  std::map<std::string, json> update_many(
      const std::vector<std::string>& keys,
      const std::function<void(std::map<std::string, json>&)>& fn) override {
    std::set<std::string> requested;
    for (const auto& key : keys) requested.insert(valid(key));
    json reads = json::array();
    for (const auto& key : requested) reads.push_back(Client::range_op(data_key(key)));
    const auto start = Clock::now();
    std::map<std::string, KeyValue> current;
    // The first read is a transaction of ranges (one snapshot of all keys); after a lost race the
    // failure branch reads them again.
    json answer = client_.txn(json::array(), reads, json::array());
    for (;;) {
      current.clear();
      const json& responses = answer.at("responses");
      std::size_t i = 0;
      for (const auto& key : requested) {
        const json& rr = responses.at(i++).at("response_range");
        if (auto kvs = rr.find("kvs"); kvs != rr.end() && !kvs->empty()) {
          current.emplace(key, etcd::key_value_from(kvs->at(0)));
        }
      }
      std::map<std::string, json> values;
      for (const auto& [key, kv] : current) values.emplace(key, parse(key, kv.value));
      fn(values);
      for (const auto& [key, value] : values) {
        if (!requested.count(key)) {
          throw Error(Errc::invalid_argument, "update_many", {},
                      "the function added key " + format::quote_key(key) +
                          ", which was not requested (nothing was written)");
        }
      }
      json compare = json::array();
      json success = json::array();
      const std::string id = etcd::record_id();
      std::size_t n = 0;
      for (const auto& key : requested) {
        auto cur = current.find(key);
        const std::int64_t mod = cur == current.end() ? 0 : cur->second.mod_revision;
        compare.push_back(Client::compare_mod(data_key(key), mod));
        auto it = values.find(key);
        char suffix[16];
        std::snprintf(suffix, sizeof suffix, "-%06zu", n);
        if (it == values.end()) {
          if (cur == current.end()) continue;
          success.push_back(Client::delete_op(data_key(key)));
        } else {
          std::string bytes = render(key, it->second);
          if (cur != current.end() && bytes == cur->second.value) continue;
          success.push_back(Client::put_op(data_key(key), bytes));
        }
        success.push_back(
            Client::put_op(layout_.log + id + suffix,
                           etcd::render_record(key, "update_many",
                                               it == values.end() ? nullptr : &it->second, mod)));
        ++n;
      }
      if (success.empty()) return values;
      answer = client_.txn(compare, success, reads);
      if (answer.value("succeeded", false)) return values;
      if (Clock::now() - start >= options_.lock_timeout) {
        throw Timeout("update_many", location_,
                      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start),
                      std::nullopt);
      }
    }
  }

  std::vector<fs::path> lock_files() const override { return {}; }

  std::vector<Finding> verify() const override {
    std::vector<Finding> out;
    etcd::RangeRequest r;
    r.key = layout_.keys;
    r.range_end = etcd::prefix_end(layout_.keys);
    auto data = client_.range_all(r);
    std::map<std::string, Record> last;
    for (auto& rec : etcd::read_records(client_, layout_, 0, nullptr)) last[rec.key] = rec;
    std::set<std::string> seen;
    for (const auto& kv : data.kvs) {
      const std::string key = kv.key.substr(layout_.keys.size());
      seen.insert(key);
      const fs::path where(loc_.text + "/k/" + key);
      if (!detail::json_io::accepts(kv.value)) {
        out.push_back({Finding::Kind::corrupt_key_file, key, where, "the value does not parse"});
        continue;
      }
      auto it = last.find(key);
      if (it == last.end() || !it->second.version ||
          *it->second.version != std::to_string(kv.mod_revision)) {
        out.push_back({Finding::Kind::unlogged_change, key, where,
                       "mod_revision " + std::to_string(kv.mod_revision) +
                           " has no audit record (written around the store)"});
      }
    }
    for (const auto& [key, rec] : last) {
      if (rec.value && !seen.count(key)) {
        out.push_back({Finding::Kind::missing_file, key, fs::path(loc_.text + "/k/" + key),
                       "the log says the key exists, etcd has no value"});
      }
    }
    return out;
  }

  std::vector<Finding> repair() override {
    // Each finding's key is logged as it is now, through a transaction that only applies when
    // the key did not change meanwhile; a corrupt value is moved aside to P/corrupt/<key>.
    std::vector<Finding> done;
    for (const auto& f : verify()) {
      const std::string k = data_key(f.key);
      KeyValue cur;
      const bool exists = read(k, cur);
      json compare = json::array({Client::compare_mod(k, exists ? cur.mod_revision : 0)});
      json success = json::array();
      if (f.kind == Finding::Kind::corrupt_key_file && exists) {
        success.push_back(Client::put_op(loc_.prefix + "/corrupt/" + f.key, cur.value));
        success.push_back(Client::delete_op(k));
        success.push_back(
            Client::put_op(layout_.log + etcd::record_id(),
                           etcd::render_record(f.key, "repair", nullptr, cur.mod_revision)));
      } else if (exists) {
        json value = parse(f.key, cur.value);
        success.push_back(Client::put_op(k, cur.value));
        success.push_back(
            Client::put_op(layout_.log + etcd::record_id(),
                           etcd::render_record(f.key, "repair", &value, cur.mod_revision)));
      } else {
        success.push_back(Client::put_op(layout_.log + etcd::record_id(),
                                         etcd::render_record(f.key, "repair", nullptr, 0)));
      }
      if (client_.txn(compare, success, json::array()).value("succeeded", false)) {
        done.push_back(f);
      }
    }
    return done;
  }

 private:
  enum class Action { keep, write, erase };
  struct Decision {
    Action action = Action::keep;
    json value;
  };
  struct Outcome {
    bool changed = false;
    json value;
    std::string version;
  };

  const std::string& valid(const std::string& key) const {
    if (std::string problem = format::key_problem(key); !problem.empty()) {
      throw Error(Errc::invalid_argument, "invalid key " + format::quote_key(key), {},
                  "the key " + problem);
    }
    return key;
  }
  std::string data_key(const std::string& key) const { return layout_.keys + valid(key); }
  std::string context(const std::string& key) const { return "key " + format::quote_key(key); }

  bool read(const std::string& k, KeyValue& out) const {
    etcd::RangeRequest r;
    r.key = k;
    auto result = client_.range(r);
    if (result.kvs.empty()) return false;
    out = std::move(result.kvs.front());
    return true;
  }

  json parse(const std::string& key, const std::string& bytes) const {
    try {
      return detail::json_io::parse(bytes);
    } catch (const json::exception& e) {
      throw Error(Errc::corrupt, context(key) + ": the value in etcd does not parse",
                  fs::path(loc_.text + "/k/" + key),
                  std::string(e.what()) + " (nothing was written)");
    }
  }

  std::string render(const std::string& key, const json& value) const {
    if (value.is_discarded()) {
      throw Error(Errc::invalid_argument, context(key), {}, "the value is a discarded json");
    }
    try {
      return detail::json_io::dump(value, 2);
    } catch (const detail::json_io::ValueError& e) {
      throw Error(Errc::invalid_argument, context(key) + ": the value cannot be stored", {},
                  e.what());
    }
  }

  template <class Decide>
  Outcome write_one(const std::string& key, std::string_view op, Decide&& decide) {
    const std::string k = data_key(key);
    const auto start = Clock::now();
    KeyValue cur;
    bool exists = read(k, cur);
    for (;;) {
      Decision d = decide(exists ? &cur : nullptr);
      Outcome out;
      if (d.action == Action::keep) return out;
      const std::int64_t prev = exists ? cur.mod_revision : 0;
      json success = json::array();
      if (d.action == Action::write) {
        success.push_back(Client::put_op(k, render(key, d.value)));
        success.push_back(Client::put_op(layout_.log + etcd::record_id(),
                                         etcd::render_record(key, op, &d.value, prev)));
      } else {
        success.push_back(Client::delete_op(k));
        success.push_back(Client::put_op(layout_.log + etcd::record_id(),
                                         etcd::render_record(key, op, nullptr, prev)));
      }
      json answer = client_.txn(json::array({Client::compare_mod(k, prev)}), success,
                                json::array({Client::range_op(k)}));
      if (answer.value("succeeded", false)) {
        out.changed = true;
        out.value = std::move(d.value);
        out.version = std::to_string(etcd::int_field(answer.at("header"), "revision"));
        return out;
      }
      const auto waited = Clock::now() - start;
      if (waited >= options_.lock_timeout) {
        throw Timeout(context(key) + ": every transaction lost to another writer",
                      fs::path(loc_.text + "/k/" + key),
                      std::chrono::duration_cast<std::chrono::nanoseconds>(waited), std::nullopt);
      }
      // Lost the race: the failure branch read the key as it is now.
      const json& rr = answer.at("responses").at(0).at("response_range");
      auto kvs = rr.find("kvs");
      exists = kvs != rr.end() && !kvs->empty();
      if (exists) cur = etcd::key_value_from(kvs->at(0));
    }
  }

  const fs::path location_;
  const etcd::Location loc_;
  const StoreOptions options_;
  const etcd::Layout layout_;
  mutable Client client_;
};

class EtcdHistory final : public HistoryBackend {
 public:
  explicit EtcdHistory(const fs::path& location)
      : loc_(etcd::parse_location(location.native())),
        layout_(loc_.prefix),
        client_(loc_.endpoints, std::chrono::duration_cast<std::chrono::milliseconds>(
                                    StoreOptions{}.request_timeout)) {
    etcd::RangeRequest r;
    r.key = layout_.marker;
    if (client_.range(r).kvs.empty()) {
      throw Error(Errc::not_found, "not a lockdb store", location, "there is no " + layout_.marker);
    }
  }

  std::size_t for_each(const Query& query,
                       const std::function<bool(const Record&)>& fn) const override {
    std::size_t n = 0;
    for (const auto& r : etcd::read_records(client_, layout_, 0, nullptr)) {
      if (!etcd::matches(query, r)) continue;
      if (query.limit && n >= *query.limit) break;
      ++n;
      if (!fn(r)) break;
    }
    return 0;
  }

  std::optional<json> value_at(const std::string& key,
                               std::chrono::system_clock::time_point t) const override {
    std::optional<json> value;
    for (const auto& r : etcd::read_records(client_, layout_, 0, nullptr)) {
      if (r.key == key && r.time <= t) value = r.value;
    }
    return value;
  }

  LogPosition end() const override {
    etcd::RangeRequest r;
    r.key = layout_.marker;
    return LogPosition{static_cast<std::uint64_t>(client_.range(r).revision) + 1, 0, 0};
  }

  // Reads the records made at or after revision from.segment; when there are none, waits (up
  // to one second) on an etcd watch of the log for the next ones.
  LogPosition read_from(LogPosition from, const Query& query,
                        const std::function<void(const Record&)>& fn) const override {
    const auto since = static_cast<std::int64_t>(std::max<std::uint64_t>(from.segment, 1));
    std::int64_t revision = 0;
    auto records = etcd::read_records(client_, layout_, since, &revision);
    if (records.empty()) {
      auto events = client_.watch_once(layout_.log, etcd::prefix_end(layout_.log), revision + 1,
                                       std::chrono::milliseconds(1000));
      if (events.empty()) return LogPosition{static_cast<std::uint64_t>(revision) + 1, 0, 0};
      records = etcd::read_records(client_, layout_, since, &revision);
    }
    std::size_t n = 0;
    for (const auto& r : records) {
      if (!etcd::matches(query, r)) continue;
      if (query.limit && n++ >= *query.limit) break;
      fn(r);
    }
    return LogPosition{static_cast<std::uint64_t>(revision) + 1, 0, 0};
  }

  std::size_t compact_keep_last(std::size_t keep_last) override {
    return compact([&](const std::vector<const KeyValue*>& of_key, std::size_t i) {
      return i + keep_last < of_key.size();
    });
  }

  std::size_t compact_before(std::chrono::system_clock::time_point before) override {
    return compact([&](const std::vector<const KeyValue*>& of_key, std::size_t i) {
      return etcd::record_from(*of_key[i]).time < before;
    });
  }

 private:
  // Deletes the audit records `drop(records of one key, index)` picks, never a key's last one.
  template <class Drop>
  std::size_t compact(Drop&& drop) {
    etcd::RangeRequest r;
    r.key = layout_.log;
    r.range_end = etcd::prefix_end(layout_.log);
    auto all = client_.range_all(r);
    std::sort(all.kvs.begin(), all.kvs.end(), [](const KeyValue& a, const KeyValue& b) {
      return a.create_revision != b.create_revision ? a.create_revision < b.create_revision
                                                    : a.key < b.key;
    });
    std::map<std::string, std::vector<const KeyValue*>> by_key;
    for (const auto& kv : all.kvs) by_key[etcd::record_from(kv).key].push_back(&kv);
    std::vector<std::string> doomed;
    for (const auto& [key, of_key] : by_key) {
      for (std::size_t i = 0; i + 1 < of_key.size(); ++i) {
        if (drop(of_key, i)) doomed.push_back(of_key[i]->key);
      }
    }
    constexpr std::size_t kBatch = 100;  // below etcd's default --max-txn-ops (128)
    for (std::size_t i = 0; i < doomed.size(); i += kBatch) {
      json ops = json::array();
      for (std::size_t j = i; j < std::min(doomed.size(), i + kBatch); ++j) {
        ops.push_back(Client::delete_op(doomed[j]));
      }
      (void)client_.txn(json::array(), ops, json::array());
    }
    return doomed.size();
  }

  const etcd::Location loc_;
  const etcd::Layout layout_;
  mutable Client client_;
};

}  // namespace

std::unique_ptr<StoreBackend> open_store_backend(const fs::path& location,
                                                 const StoreOptions& options) {
  if (!etcd::is_location(location.native())) return nullptr;
  return std::make_unique<EtcdStore>(location, options);
}

std::shared_ptr<HistoryBackend> open_history_backend(const fs::path& location) {
  if (!etcd::is_location(location.native())) return nullptr;
  return std::make_shared<EtcdHistory>(location);
}

}  // namespace lockdb::detail
