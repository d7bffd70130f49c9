// json_io (lib/src/json_io.hpp): lockdb's JSON limits at the level of the module. The store's
// and the helpers' paths are tested with the limits in test_store.cpp and test_files.cpp.
#include <lockdb/files.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "json_io.hpp"
#include "support.hpp"

namespace json_io = lockdb::detail::json_io;
namespace fs = std::filesystem;
using lockdb::Store;
using lockdb::test::TempDir;
using nlohmann::json;

namespace {

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::string nested_objects(std::size_t depth) {
  std::string s;
  for (std::size_t i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(depth, '}');
  return s;
}

// A value `depth` levels deep, built without recursion.
json deep_value(std::size_t depth) {
  json v = json::array();
  for (std::size_t i = 1; i < depth; ++i) v = json::array({std::move(v)});
  return v;
}

lockdb::Errc code_of(const std::function<void()>& fn, std::string* what = nullptr) {
  try {
    fn();
  } catch (const lockdb::Error& e) {
    if (what) *what = e.what();
    return e.code();
  }
  FAIL("no lockdb::Error was thrown");
  return lockdb::Errc::io;
}

// Every file under `dir` but lock files, with its bytes.
std::map<fs::path, std::string> files_under(const fs::path& dir) {
  std::map<fs::path, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() != ".lock") {  // lock files are made first
      out[e.path()] = lockdb::test::read_text(e.path());
    }
  }
  return out;
}

std::size_t records_of(const Store& store, const std::string& key) {
  lockdb::Query q;
  q.key = key;
  return lockdb::History(store.dir()).records(q).size();
}

}  // namespace

TEST_CASE("parse takes 512 levels of nesting and refuses 513", "[json]") {
  REQUIRE(json_io::kMaxDepth == 512);
  for (const auto& make : {nested_arrays, nested_objects}) {
    const json ok = json_io::parse(make(512));
    REQUIRE(json_io::dump(ok, -1) == make(512));
    REQUIRE(json_io::accepts(make(512)));
    REQUIRE_FALSE(json_io::accepts(make(513)));
    try {
      (void)json_io::parse(make(513));
      FAIL("a document 513 levels deep parsed");
    } catch (const json::parse_error& e) {
      CHECK(e.byte == 0);
      CHECK(std::string(e.what()).find("nests deeper than 512 levels") != std::string::npos);
    }
  }
}

TEST_CASE("parse refuses 100,000 levels of nesting without a crash", "[json]") {
  const std::string deep = nested_arrays(100000);
  REQUIRE_THROWS_AS(json_io::parse(deep), json::parse_error);
  REQUIRE_FALSE(json_io::accepts(deep));
  // Cut short: the depth limit is reached before the end of the text.
  REQUIRE_THROWS_AS(json_io::parse(std::string(100000, '[')), json::parse_error);
}

TEST_CASE("parse gives nlohmann's value and its errors", "[json]") {
  REQUIRE(json_io::parse("{\"a\": [1, -2, 2.5, \"x\", null, true]}") ==
          json::parse("{\"a\": [1, -2, 2.5, \"x\", null, true]}"));
  REQUIRE(json_io::parse("18446744073709551615").is_number_unsigned());
  REQUIRE(json_io::parse("-1").is_number_integer());
  try {
    (void)json_io::parse("{\"a\": [1, 2}");
    FAIL("parse accepted a broken document");
  } catch (const json::parse_error& e) {
    CHECK(e.byte == 12);
  }
  REQUIRE_THROWS_AS(json_io::parse("1e400"), json::parse_error);  // beyond a double: refused
  REQUIRE_THROWS_AS(json_io::parse(""), json::parse_error);
  REQUIRE_FALSE(json_io::accepts("[1,]"));
  REQUIRE(json_io::accepts(" [1] "));
}

TEST_CASE("dump writes 512 levels and refuses 513 and 100,000, writing nothing", "[json]") {
  REQUIRE(json_io::dump(deep_value(512), -1) == nested_arrays(512));
  for (std::size_t depth : {std::size_t{513}, std::size_t{100000}}) {
    std::string out = "kept";
    try {
      json_io::append(out, deep_value(depth), 2);
      FAIL("a value " << depth << " levels deep was written");
    } catch (const json_io::ValueError& e) {
      CHECK(std::string(e.what()) == "the value nests deeper than 512 levels");
    }
    REQUIRE(out == "kept");
  }
  // Depth counts objects too, and a deep member anywhere.
  json wide = {{"a", 1}, {"b", deep_value(512)}};
  REQUIRE_THROWS_AS(json_io::dump(wide, -1), json_io::ValueError);
  wide["b"] = deep_value(511);
  REQUIRE(json_io::dump(wide, -1).size() == 2 * 511 + 12);
}

TEST_CASE("dump refuses NaN, infinities, binary and discarded values", "[json]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (const json& bad :
       {json(nan), json(inf), json(-inf), json::array({1, json(nan)}), json{{"x", {{"y", -inf}}}},
        json::binary({1, 2, 3}), json{{"b", json::binary({1})}}, json(json::value_t::discarded)}) {
    INFO(static_cast<int>(bad.type()));
    REQUIRE_THROWS_AS(json_io::dump(bad, 2), json_io::ValueError);
  }
  try {
    (void)json_io::dump(json{{"n", nan}}, -1);
  } catch (const json_io::ValueError& e) {
    CHECK(std::string(e.what()).find("NaN or infinite") != std::string::npos);
  }
  REQUIRE(json_io::dump(json(1.5), -1) == "1.5");
  REQUIRE(json_io::dump(json(std::numeric_limits<double>::max()), -1) == "1.7976931348623157e+308");
}

TEST_CASE("dump refuses a string that is not UTF-8, writes nlohmann's layout", "[json]") {
  REQUIRE_THROWS_AS(json_io::dump(json("a\xff"), -1), json_io::ValueError);
  REQUIRE_THROWS_AS(json_io::dump(json{{"k\xc3", 1}}, -1), json_io::ValueError);
  const json doc = {{"a", {1, 2}}, {"b", json::object()}, {"c", "\xc3\xa9\n"}};
  REQUIRE(json_io::dump(doc, 2) == doc.dump(2));
  REQUIRE(json_io::dump(doc, -1) == doc.dump());
}

TEST_CASE("append_escaped escapes as nlohmann's dump does", "[json]") {
  for (const std::string& s :
       {std::string("plain key"), std::string("q\"b\\"), std::string("\n\t\x01\x7f"),
        std::string("\xc3\xa9t\xc3\xa9"), std::string("nul\0in", 6)}) {
    std::string out = "<";
    json_io::append_escaped(out, s);
    REQUIRE(out == "<" + json(s).dump().substr(1, json(s).dump().size() - 2));
  }
  std::string out;
  json_io::append_escaped(out, "bad\xff");
  REQUIRE(out == "bad\xef\xbf\xbd");  // U+FFFD
}

// ---------------------------------------------------------------------------------------------
// The limits on the store's and the helpers' paths

TEST_CASE("Store writes refuse values deeper than 512 levels, NaN and infinities, nothing written",
          "[json]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  const json deep513 = deep_value(513);
  const json deep100k = deep_value(100000);
  // Deep values are made anew where a copy would be taken: nlohmann's copy recurses per level.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const auto before = files_under(store.dir());
  for (const json* bad : {&deep513, &deep100k}) {
    for (const std::string key : {"k", "new"}) {
      INFO("key " << key);
      std::string what;
      REQUIRE(code_of([&] { store.put(key, *bad); }, &what) == lockdb::Errc::invalid_argument);
      CHECK_THAT(what, Catch::Contains("nests deeper than 512 levels"));
      const std::size_t depth = bad == &deep513 ? 513 : 100000;
      REQUIRE(code_of([&] { store.update(key, [&](json& v) { v = deep_value(depth); }); }) ==
              lockdb::Errc::invalid_argument);
      REQUIRE(code_of([&] {
                store.compare_and_put(
                    key,
                    store.entry(key) ? store.entry(key)->version : std::optional<std::string>(),
                    *bad);
              }) == lockdb::Errc::invalid_argument);
      REQUIRE(code_of([&] {
                store.update_many({key, "other"}, [&](std::map<std::string, json>& m) {
                  m["other"] = 1;
                  m[key] = deep_value(depth);
                });
              }) == lockdb::Errc::invalid_argument);
    }
  }
  for (const json& bad :
       {json(nan), json(inf), json(-inf), json{{"a", {1, nan}}}, json::binary({1, 2})}) {
    std::string what;
    REQUIRE(code_of([&] { store.put("k", bad); }, &what) == lockdb::Errc::invalid_argument);
    CHECK_THAT(what, Catch::Contains("\"k\""));
    REQUIRE(code_of([&] { store.update("new", [&](json& v) { v = bad; }); }) ==
            lockdb::Errc::invalid_argument);
  }
  REQUIRE(files_under(store.dir()) == before);  // no key file, temp file or record
  REQUIRE(records_of(store, "k") == 1);
  REQUIRE_FALSE(store.contains("new"));

  // 512 levels are a value like any other: written, read back, logged, in the history.
  const json deep512 = deep_value(512);
  store.put("k", deep512);
  REQUIRE(store.get("k") == deep512);
  REQUIRE(store.update("k", [](json& v) { v = json::array({std::move(v)})[0]; }) == deep512);
  lockdb::Query q;
  q.key = "k";
  const auto records = lockdb::History(store.dir()).records(q);
  REQUIRE(records.size() == 3);
  REQUIRE(records.back().value == deep512);
  REQUIRE(store.verify().empty());
}

TEST_CASE("Store reads refuse key files deeper than 512 levels as corrupt, never crash", "[json]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  const fs::path file = store.file_path("k");
  for (std::size_t depth : {std::size_t{513}, std::size_t{100000}}) {
    INFO("depth " << depth);
    const std::string text = std::string(depth, '[') + std::string(depth, ']');
    lockdb::test::write_text(file, text);
    std::string what;
    REQUIRE(code_of([&] { (void)store.get("k"); }, &what) == lockdb::Errc::corrupt);
    CHECK_THAT(what,
               Catch::Contains("nests deeper than 512 levels") && Catch::Contains(file.string()));
    REQUIRE(code_of([&] { (void)store.entry("k"); }) == lockdb::Errc::corrupt);
    REQUIRE(code_of([&] { store.put("k", 2); }) == lockdb::Errc::corrupt);
    REQUIRE(code_of([&] { store.update("k", [](json& v) { v = 3; }); }) == lockdb::Errc::corrupt);
    REQUIRE(code_of([&] { store.increment("k"); }) == lockdb::Errc::corrupt);
    REQUIRE(code_of([&] { store.erase("k"); }) == lockdb::Errc::corrupt);
    REQUIRE(code_of([&] { store.compare_and_put("k", std::nullopt, 5); }) == lockdb::Errc::corrupt);
    REQUIRE(code_of([&] {
              store.update_many({"k"}, [](std::map<std::string, json>& m) { m["k"] = 4; });
            }) == lockdb::Errc::corrupt);
    REQUIRE(lockdb::test::read_text(file) == text);
    bool reported = false;
    for (const auto& f : store.verify()) {
      reported = reported || (f.kind == lockdb::Finding::Kind::corrupt_key_file && f.key == "k");
    }
    REQUIRE(reported);
  }
  lockdb::test::write_text(file, std::string(512, '[') + std::string(512, ']'));
  REQUIRE(store.get("k") == deep_value(512));
}

TEST_CASE("atomic_json_update refuses deep files as corrupt and deep or NaN documents", "[json]") {
  TempDir tmp;
  const fs::path file = tmp / "doc.json";
  for (std::size_t depth : {std::size_t{513}, std::size_t{100000}}) {
    INFO("depth " << depth);
    const std::string text = nested_objects(depth);
    lockdb::test::write_text(file, text);
    bool called = false;
    std::string what;
    REQUIRE(code_of([&] { lockdb::atomic_json_update(file, [&](json&) { called = true; }); },
                    &what) == lockdb::Errc::corrupt);
    CHECK_THAT(what,
               Catch::Contains("nests deeper than 512 levels") && Catch::Contains(file.string()));
    REQUIRE_FALSE(called);
    REQUIRE(lockdb::test::read_text(file) == text);
  }
  lockdb::test::write_text(file, nested_objects(512));
  REQUIRE(lockdb::atomic_json_update(file, [](json& doc) { doc["n"] = 1; }).size() == 2);
  // A document made too deep (or holding a NaN) by fn: refused, the file untouched.
  lockdb::test::write_text(file, "{\"n\": 1}\n");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<std::function<json()>> bad_docs = {
      [] {
        return json{{"d", deep_value(512)}};
      },
      [] { return deep_value(100000); },
      [nan] {
        return json{{"n", nan}};
      },
      [] {
        return json{{"n", -std::numeric_limits<double>::infinity()}};
      }};
  for (const auto& make : bad_docs) {
    REQUIRE(code_of([&] { lockdb::atomic_json_update(file, [&](json& doc) { doc = make(); }); }) ==
            lockdb::Errc::invalid_argument);
    const json bad = make();
    REQUIRE(code_of([&] { lockdb::locked_append_json(tmp / "log.jsonl", bad); }) ==
            lockdb::Errc::invalid_argument);
  }
  REQUIRE(lockdb::test::read_text(file) == "{\"n\": 1}\n");
  REQUIRE_FALSE(fs::exists(tmp / "log.jsonl"));
  REQUIRE(files_under(tmp.path()).size() == 1);  // the file (lock files aside)
}

TEST_CASE("a log line with a value deeper than 512 levels is skipped and reported, no crash",
          "[json]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  const fs::path segment = store.dir() / "log" / "000001.jsonl";
  // Record lines as the store writes them, around a value 513 and 100,000 levels deep.
  for (std::size_t depth : {std::size_t{513}, std::size_t{100000}}) {
    std::ofstream(segment, std::ios::binary | std::ios::app)
        << R"({"time":"2026-12-01T00:00:00.000000Z","key":"k","op":"put","prev":null,)"
        << R"("version":null,"pid":1,"host":"h","value":)" << std::string(depth, '[')
        << std::string(depth, ']') << "}\n";
  }
  store.put("k", 2);
  lockdb::History history(store.dir());
  lockdb::Query q;
  q.key = "k";
  const auto records = history.records(q);
  REQUIRE(records.size() == 2);
  REQUIRE(records.back().value == 2);
  REQUIRE(history.for_each(lockdb::Query{}, [](const lockdb::Record&) { return true; }) == 2);
  REQUIRE(history.value_at("k", std::chrono::system_clock::now()) == 2);
  std::size_t reported = 0;
  for (const auto& f : store.verify()) {
    if (f.kind == lockdb::Finding::Kind::torn_log_line) ++reported;
  }
  REQUIRE(reported >= 1);  // the skipped lines, reported
  (void)store.repair();
  lockdb::rebuild_store(store.dir(), tmp / "rebuilt");
  REQUIRE(Store(tmp / "rebuilt").get("k") == 2);
  (void)lockdb::compact_history_keep_last(store.dir(), 1);
  REQUIRE(records_of(store, "k") == 1);
}

TEST_CASE("a log line holding a string that is not UTF-8 is skipped and reported, no crash",
          "[json]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  const fs::path segment = store.dir() / "log" / "000001.jsonl";
  // Records as the store writes them, but with a byte 0xff in the value, in a member name of
  // the value, and in the host (found by fuzz_log_line: the value could be read, not written).
  for (const std::string& bad : {std::string(R"("host":"h","value":"a)") + "\xff" + "\"}",
                                 std::string(R"("host":"h","value":{")") + "\xcf\xff" + "\":1}}",
                                 std::string(R"("host":"h)") + "\xff" + "\",\"value\":3}"}) {
    std::ofstream(segment, std::ios::binary | std::ios::app)
        << R"({"time":"2026-12-01T00:00:00.000000Z","key":"k","op":"put","prev":null,)"
        << R"("version":null,"pid":1,)" << bad << "\n";
  }
  store.put("k", 2);
  lockdb::History history(store.dir());
  const auto records = history.records(lockdb::Query{});
  REQUIRE(records.size() == 2);
  for (const auto& r : records) REQUIRE_NOTHROW(r.value->dump());
  REQUIRE(records.back().value == 2);
  lockdb::Query q;
  q.key = "k";
  REQUIRE(history.records(q).size() == 2);
  std::vector<std::string> reported;
  for (const auto& f : store.verify()) {
    if (f.kind == lockdb::Finding::Kind::torn_log_line) reported.push_back(f.detail);
  }
  REQUIRE(reported.size() == 1);
  REQUIRE_THAT(reported[0], Catch::StartsWith("3 torn or unreadable line(s) in the log"));
  lockdb::rebuild_store(store.dir(), tmp / "rebuilt");
  REQUIRE(Store(tmp / "rebuilt").get("k") == 2);
  REQUIRE(lockdb::compact_history_keep_last(store.dir(), 1) == 1);
  REQUIRE(records_of(store, "k") == 1);
}

TEST_CASE("a log value with a zero significand and a large exponent reads as 0", "[json]") {
  // 0E220 took RapidJSON 1.1.0 to __builtin_clzll(0) (found by fuzz_log_line): the value read
  // must still be nlohmann's.
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  const fs::path segment = store.dir() / "log" / "000001.jsonl";
  for (const char* number : {"0E220", "0e-400", "0.000e+308", "-0E220"}) {
    std::ofstream(segment, std::ios::binary | std::ios::app)
        << R"({"time":"2026-12-01T00:00:00.000000Z","key":"k","op":"put","prev":null,)"
        << R"("version":null,"pid":1,"host":"h","value":)" << number << "}\n";
  }
  const auto records = lockdb::History(store.dir()).records(lockdb::Query{});
  REQUIRE(records.size() == 5);
  for (std::size_t i = 1; i < records.size(); ++i) {
    INFO("record " << i);
    REQUIRE(records[i].value->is_number_float());
    REQUIRE(records[i].value->get<double>() == 0.0);
  }
  REQUIRE(*records[1].value == json::parse("0E220"));
}
