// The etcd backend's key layout and audit records (private; etcd_store.cpp has the long form).
#pragma once

#include <lockdb/history.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "etcd_client.hpp"

namespace lockdb::detail::etcd {

// The keys of a store under its prefix P.
struct Layout {
  explicit Layout(std::string prefix);
  std::string marker;  // P/lockdb
  std::string keys;    // P/k/   (+ key)
  std::string log;     // P/log/ (+ record id)
  std::string locks;   // P/lock/ (+ lock name)
};

// A unique, roughly time-ordered audit record id: "<ns hex>-<random hex>-<counter hex>".
std::string record_id();
// The audit record's JSON (the log's record fields without "version"); prev 0: absent before.
std::string render_record(std::string_view key, std::string_view op, const nlohmann::json* value,
                          std::int64_t prev);
// A Record from an audit record; its version is its create_revision. THROWS Error{corrupt}.
Record record_from(const KeyValue& kv);
// Every audit record created at or after `min_create_revision` (0: all), in commit order;
// `revision` (may be null) gets the revision they were read at.
std::vector<Record> read_records(Client& client, const Layout& layout,
                                 std::int64_t min_create_revision, std::int64_t* revision);
bool matches(const Query& query, const Record& record);

}  // namespace lockdb::detail::etcd
