// The seam between Store / History and a store that is not a directory (private).
//
// A Store or History opened on a location that names another backend (today: "etcd://...")
// holds one of these and forwards every public call to it; a directory store holds none and
// runs its own code. Each method has the contract of the public call of the same name
// (store.hpp, history.hpp).
#pragma once

#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lockdb::detail {

class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  virtual const std::filesystem::path& location() const noexcept = 0;
  virtual const StoreOptions& options() const noexcept = 0;
  virtual std::filesystem::path file_path(const std::string& key) const = 0;
  virtual std::optional<nlohmann::json> get(const std::string& key) const = 0;
  virtual std::optional<Entry> entry(const std::string& key) const = 0;
  virtual bool contains(const std::string& key) const = 0;
  virtual std::vector<std::string> keys() const = 0;
  // `op`: the operation the audit record names (already checked by Store).
  virtual std::string put(const std::string& key, const nlohmann::json& value,
                          std::string_view op) = 0;
  virtual nlohmann::json update(const std::string& key,
                                const std::function<void(nlohmann::json&)>& fn) = 0;
  virtual std::int64_t increment(const std::string& key, std::int64_t delta) = 0;
  virtual bool erase(const std::string& key) = 0;
  virtual bool compare_and_put(const std::string& key,
                               const std::optional<std::string>& expected_version,
                               const nlohmann::json& value, std::string_view op) = 0;
  virtual std::map<std::string, nlohmann::json> update_many(
      const std::vector<std::string>& keys,
      const std::function<void(std::map<std::string, nlohmann::json>&)>& fn) = 0;
  virtual std::vector<std::filesystem::path> lock_files() const = 0;
  virtual std::vector<Finding> verify() const = 0;
  virtual std::vector<Finding> repair() = 0;
};

class HistoryBackend {
 public:
  virtual ~HistoryBackend() = default;
  virtual std::size_t for_each(const Query& query,
                               const std::function<bool(const Record&)>& fn) const = 0;
  virtual std::optional<nlohmann::json> value_at(const std::string& key,
                                                 std::chrono::system_clock::time_point t) const = 0;
  virtual LogPosition end() const = 0;
  virtual LogPosition read_from(LogPosition from, const Query& query,
                                const std::function<void(const Record&)>& fn) const = 0;
  virtual std::size_t compact_keep_last(std::size_t keep_last) = 0;
  virtual std::size_t compact_before(std::chrono::system_clock::time_point before) = 0;
};

// The backend for `location`, or nullptr when it is a directory.
// THROWS Error{invalid_argument} for a location that does not parse; what opening throws.
std::unique_ptr<StoreBackend> open_store_backend(const std::filesystem::path& location,
                                                 const StoreOptions& options);
std::shared_ptr<HistoryBackend> open_history_backend(const std::filesystem::path& location);

}  // namespace lockdb::detail
