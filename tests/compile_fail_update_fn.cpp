// Must NOT compile: a void fn that takes the document by value, const& or auto&& would edit a
// copy, so atomic_json_update and Store::update refuse it with a static_assert
// (detail/json_fn.hpp). tests/CMakeLists.txt compiles this file once per LOCKDB_CASE and expects
// the message.
#include <lockdb/files.hpp>
#include <lockdb/store.hpp>

using nlohmann::json;

void files_case() {
#if LOCKDB_CASE == 1
  lockdb::atomic_json_update("f.json", [](json doc) { doc["x"] = 1; });
#elif LOCKDB_CASE == 2
  lockdb::atomic_json_update("f.json", [](const json& doc) { (void)doc; });
#elif LOCKDB_CASE == 3
  lockdb::atomic_json_update("f.json", [](auto&& doc) { doc["x"] = 1; });
#endif
}

void store_case(lockdb::Store& store) {
#if LOCKDB_CASE == 4
  store.update("k", [](json v) { v["x"] = 1; });
#elif LOCKDB_CASE == 5
  store.update("k", [](const json& v) { (void)v; });
#elif LOCKDB_CASE == 6
  store.update("k", [](auto&& v) { v["x"] = 1; });
#endif
}
