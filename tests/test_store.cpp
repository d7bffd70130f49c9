// Store: API, key encoding, errors, verify/repair, and real processes sharing a store.
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log_writer.hpp"
#include "os.hpp"
#include "replace.hpp"
#include "seed_python.hpp"
#include "store_format.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using lockdb::Store;
using lockdb::test::Child;
using lockdb::test::describe;
using lockdb::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> helper(std::vector<std::string> args) {
  args.insert(args.begin(), lockdb::test::helper_path());
  return args;
}

// FNV-1a-64 of the bytes as 16 hex digits, computed here independently of the library.
std::string fnv_version(const std::string& bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::vector<lockdb::Record> records_of(const Store& store, const std::string& key) {
  lockdb::Query q;
  q.key = key;
  return lockdb::History(store.dir()).records(q);
}

// Every file under `dir` whose name ends in ".tmp" or holds ".tmp" followed by digits.
std::vector<fs::path> temp_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    if (lockdb::detail::store_format::temp_owner(e.path().filename().string())) {
      out.push_back(e.path());
    }
  }
  return out;
}

// Checks that each record's prev is the version of the record before it (absent for the first).
void require_chained(const std::vector<lockdb::Record>& records) {
  std::optional<std::string> last;
  for (std::size_t i = 0; i < records.size(); ++i) {
    INFO("record " << i);
    REQUIRE(records[i].prev_version == last);
    last = records[i].version;
  }
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

}  // namespace

// ---------------------------------------------------------------------------------------------
// Opening

TEST_CASE("a new store has a marker, keys/ and log/, and reopens", "[store]") {
  TempDir tmp;
  const fs::path dir = tmp / "db";
  {
    Store store(dir);
    REQUIRE(store.dir() == dir);
  }
  REQUIRE(fs::is_directory(dir / "keys"));
  REQUIRE(fs::is_directory(dir / "log"));
  json marker = json::parse(lockdb::test::read_text(dir / "lockdb-store.json"));
  REQUIRE(marker["format"] == "lockdb-store");
  REQUIRE(marker["version"] == 2);
  REQUIRE(marker["lock_stripes"] == 0);
  Store again(dir, lockdb::StoreOptions{.create = false});
  REQUIRE(again.keys().empty());
}

TEST_CASE("opening what is not a store is a clear error", "[store]") {
  TempDir tmp;
  std::string what;

  // No store, and create = false.
  REQUIRE(code_of([&] { Store s(tmp / "none", lockdb::StoreOptions{.create = false}); }, &what) ==
          lockdb::Errc::not_found);
  REQUIRE_FALSE(fs::exists(tmp / "none"));
  fs::create_directory(tmp / "empty");
  REQUIRE(code_of([&] { Store s(tmp / "empty", lockdb::StoreOptions{.create = false}); }) ==
          lockdb::Errc::not_found);

  // A directory with other files: never turned into a store.
  fs::create_directory(tmp / "photos");
  lockdb::test::write_text(tmp / "photos" / "cat.jpg", "meow");
  REQUIRE(code_of([&] { Store s(tmp / "photos"); }, &what) == lockdb::Errc::corrupt);
  REQUIRE_THAT(what, Catch::Contains("cat.jpg"));
  REQUIRE_FALSE(fs::exists(tmp / "photos" / "lockdb-store.json"));

  // A marker that does not parse, of another format, or of a newer version.
  fs::create_directory(tmp / "bad");
  lockdb::test::write_text(tmp / "bad" / "lockdb-store.json", "{not json");
  REQUIRE(code_of([&] { Store s(tmp / "bad"); }) == lockdb::Errc::corrupt);
  lockdb::test::write_text(tmp / "bad" / "lockdb-store.json", R"({"format":"other","version":1})");
  REQUIRE(code_of([&] { Store s(tmp / "bad"); }) == lockdb::Errc::corrupt);
  lockdb::test::write_text(tmp / "bad" / "lockdb-store.json",
                           R"({"format":"lockdb-store","version":3})");
  REQUIRE(code_of([&] { Store s(tmp / "bad"); }, &what) == lockdb::Errc::version);
  REQUIRE_THAT(what, Catch::Contains("newer"));

  // A file where the store should be.
  lockdb::test::write_text(tmp / "file", "x");
  REQUIRE(code_of([&] { Store s(tmp / "file"); }) == lockdb::Errc::invalid_argument);
}

TEST_CASE("concurrent openers of a new directory agree on one marker", "[store]") {
  TempDir tmp;
  const fs::path dir = tmp / "db";
  const int n = 8;
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < n; ++i) {
    kids.push_back(std::make_unique<Child>(helper({"store-open-increment", dir.string(), "n"})));
  }
  for (auto& k : kids) REQUIRE(k->expect_line("READY"));
  for (auto& k : kids) k->write_line("go");
  for (auto& k : kids) {
    auto line = k->read_line();
    REQUIRE(line);
    CHECK(*line == "DONE");
    REQUIRE(k->wait() == 0);
  }
  REQUIRE(Store(dir).get("n") == json(n));
  for (const auto& e : fs::directory_iterator(dir)) {
    REQUIRE(e.path().filename().string().front() != '.');  // no marker temp left
  }
}

// ---------------------------------------------------------------------------------------------
// The API

TEST_CASE("put, get, entry, contains, keys, erase", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  REQUIRE_FALSE(store.get("config"));
  REQUIRE_FALSE(store.entry("config"));
  REQUIRE_FALSE(store.contains("config"));

  const json value = {{"name", "lockdb"}, {"workers", 4}, {"tags", {"a", "b"}}};
  const std::string version = store.put("config", value);
  REQUIRE(store.get("config") == value);
  REQUIRE(store.contains("config"));

  // The key's file is named after the key and holds the value's JSON text, as Python's
  // json.dumps(value, indent=2) writes it, and a final newline; the version is FNV-1a-64 of the
  // text without that newline.
  const fs::path file = store.file_path("config");
  REQUIRE(file.filename() == "config.json");
  REQUIRE(file.parent_path().parent_path() == store.dir() / "keys");
  const std::string text = lockdb::test::read_text(file);
  REQUIRE(text ==
          "{\n  \"name\": \"lockdb\",\n  \"tags\": [\n    \"a\",\n    \"b\"\n  ],\n  "
          "\"workers\": 4\n}\n");
  REQUIRE(version == fnv_version(text.substr(0, text.size() - 1)));
  REQUIRE(store.entry("config")->version == version);
  REQUIRE(store.entry("config")->value == value);
  REQUIRE(fs::exists(fs::path(file.string() + ".lock")));

  // Same bytes, same version; different bytes, a different one.
  REQUIRE(store.put("config", value) == version);
  REQUIRE(store.put("config", json{{"name", "other"}}) != version);

  store.put("b", 2);
  store.put("a", json::array());
  REQUIRE(store.keys() == std::vector<std::string>{"a", "b", "config"});

  REQUIRE(store.erase("b"));
  REQUIRE_FALSE(store.erase("b"));
  REQUIRE_FALSE(store.get("b"));
  REQUIRE_FALSE(fs::exists(store.file_path("b")));
  REQUIRE(store.keys() == std::vector<std::string>{"a", "config"});

  // The log: one record per write, none for the erase that found nothing.
  auto records = records_of(store, "config");
  REQUIRE(records.size() == 3);
  REQUIRE(records[0].op == "put");
  REQUIRE(records[0].value == value);
  require_chained(records);
  auto b = records_of(store, "b");
  REQUIRE(b.size() == 2);
  REQUIRE(b[1].op == "erase");
  REQUIRE_FALSE(b[1].value);
  REQUIRE_FALSE(b[1].version);
  REQUIRE(b[1].prev_version == b[0].version);
  REQUIRE(b[1].pid == ::getpid());
}

TEST_CASE("values of any size round-trip through get and update", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  // Key files around the sizes where reading changes buffers (4 KiB, 16 KiB) and a large one.
  for (std::size_t size : {4090u, 4093u, 4094u, 4095u, 16382u, 16383u, 16384u, 1u << 20}) {
    INFO("file size " << size + 3);
    const json value = std::string(size, 'v');  // the file holds "vv...v"
    store.put("big", value);
    REQUIRE(fs::file_size(store.file_path("big")) == size + 3);
    REQUIRE(store.get("big") == value);
    const json grown = store.update("big", [](json& v) { v = v.get<std::string>() + "w"; });
    REQUIRE(grown.get<std::string>().size() == size + 1);
    REQUIRE(store.get("big") == grown);
  }
}

TEST_CASE("a small key file is read with one read(2) where a short read is the end", "[store]") {
  namespace os = lockdb::os;
  TempDir tmp;
  auto read_with = [&](std::size_t size, bool short_read_ends, int fail_read) {
    const fs::path file = tmp / ("f" + std::to_string(size));
    std::ofstream(file, std::ios::binary) << std::string(size, 'x');
    auto fd = os::open(file, O_RDONLY);
    REQUIRE(fd.ok());
    if (fail_read > 0) os::fail_nth(os::Op::read, fail_read, EIO);
    auto r = os::read_all(fd.value, short_read_ends);
    os::clear_faults();
    os::close(fd.value);
    return r;
  };
  for (std::size_t size : {0u, 1u, 100u, 4095u}) {
    INFO("size " << size);
    // The second read(2) would fail: only the first one runs.
    auto one = read_with(size, /*short_read_ends=*/true, 2);
    REQUIRE(one.ok());
    REQUIRE(one.value == std::string(size, 'x'));
    // Without the flag a second read(2) looks for the end.
    if (size > 0) REQUIRE(read_with(size, /*short_read_ends=*/false, 2).err == EIO);
  }
  // A full first read is not the end: the rest is read.
  for (std::size_t size : {4096u, 4097u, 100000u}) {
    INFO("size " << size);
    REQUIRE(read_with(size, /*short_read_ends=*/true, 0).value == std::string(size, 'x'));
    REQUIRE(read_with(size, /*short_read_ends=*/true, 2).err == EIO);
  }
  REQUIRE(os::short_reads_end(0x01021994));        // tmpfs
  REQUIRE(os::short_reads_end(0xEF53));            // ext4
  REQUIRE_FALSE(os::short_reads_end(0x6969));      // NFS
  REQUIRE_FALSE(os::short_reads_end(0x65735546));  // FUSE
  REQUIRE_FALSE(os::short_reads_end(0));           // unknown

  // The store reads its key files so where their filesystem allows.
  Store store(tmp / "db");
  store.put("k", json{{"a", 1}});
  if (os::short_reads_end(os::fs_magic(tmp.path()))) {
    os::fail_nth(os::Op::read, 2, EIO);
    auto value = store.get("k");
    os::clear_faults();
    REQUIRE(value == json{{"a", 1}});
  } else {
    WARN("the temp directory's filesystem may return short reads: the store reads to EOF there");
  }
}

TEST_CASE("update: fn sees null for a missing key, may edit in place or return", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  json seen = "unset";
  REQUIRE(store.update("k", [&](json& v) {
    seen = v;
    v = {{"n", 1}};
  }) == json{{"n", 1}});
  REQUIRE(seen.is_null());
  REQUIRE(store.update("k", [](const json& v) {
    return json{{"n", v["n"].get<int>() + 1}};
  }) == json{{"n", 2}});
  REQUIRE(store.update("k", [](json v) {
    v["n"] = v["n"].get<int>() + 1;
    return v;
  }) == json{{"n", 3}});
  // Generic lambdas: auto& edits in place (its body does not compile for a const json), a
  // const auto& one returns the new value.
  REQUIRE(store.update("k", [](auto& v) { v["n"] = v["n"].template get<int>() + 1; }) ==
          json{{"n", 4}});
  REQUIRE(store.update("k", [](const auto& v) {
    return json{{"n", v["n"]}, {"m", 0}};
  }) == json{{"n", 4}, {"m", 0}});
  // std::function objects.
  std::function<void(json&)> edit = [](json& v) { v["edited"] = true; };
  std::function<json(const json&)> replace = [](const json& v) { return v["n"]; };
  REQUIRE(store.update("k", edit) == json{{"n", 4}, {"m", 0}, {"edited", true}});
  REQUIRE(store.update("k", replace) == json(4));
  REQUIRE(store.get("k") == json(4));
  // (A void fn taking the value by value, const& or auto&& does not compile:
  // tests/compile_fail_update_fn.cpp.)
  auto records = records_of(store, "k");
  REQUIRE(records.size() == 7);
  for (const auto& r : records) REQUIRE(r.op == "update");
  require_chained(records);

  // An exception from fn writes nothing.
  REQUIRE_THROWS_AS(store.update("k", [](json&) { throw std::runtime_error("no"); }),
                    std::runtime_error);
  REQUIRE(store.get("k") == json(4));
  REQUIRE(records_of(store, "k").size() == 7);
}

TEST_CASE("increment: missing is 0, a non-integer or an overflow is an error", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  REQUIRE(store.increment("n") == 1);
  REQUIRE(store.increment("n", 41) == 42);
  REQUIRE(store.increment("n", -50) == -8);
  REQUIRE(lockdb::test::read_text(store.file_path("n")) == "-8\n");

  std::string what;
  store.put("s", "text");
  REQUIRE(code_of([&] { store.increment("s"); }, &what) == lockdb::Errc::invalid_argument);
  REQUIRE_THAT(what, Catch::Contains("\"s\"") && Catch::Contains("not an integer"));
  store.put("f", 1.5);
  REQUIRE(code_of([&] { store.increment("f"); }) == lockdb::Errc::invalid_argument);

  store.put("big", INT64_MAX - 1);
  REQUIRE(store.increment("big") == INT64_MAX);
  REQUIRE(code_of([&] { store.increment("big"); }, &what) == lockdb::Errc::invalid_argument);
  REQUIRE_THAT(what, Catch::Contains("overflow"));
  REQUIRE(store.get("big") == json(INT64_MAX));
  store.put("low", INT64_MIN);
  REQUIRE(code_of([&] { store.increment("low", -1); }) == lockdb::Errc::invalid_argument);
  store.put("huge", json(std::uint64_t{1} << 63));
  REQUIRE(code_of([&] { store.increment("huge"); }) == lockdb::Errc::invalid_argument);
  REQUIRE(records_of(store, "big").size() == 2);  // put + the one increment that fit

  // Key files written by others: read as JSON reads them, whatever shape the integer has.
  auto incr_text = [&](const std::string& text) {
    fs::create_directories(store.file_path("w").parent_path());
    lockdb::test::write_text(store.file_path("w"), text);
    return store.increment("w");
  };
  REQUIRE(incr_text("-0") == 1);
  REQUIRE(incr_text(" 5\n") == 6);
  REQUIRE(incr_text("9223372036854775806") == INT64_MAX);
  REQUIRE(code_of([&] { incr_text("007"); }) == lockdb::Errc::corrupt);  // JSON has no octal
  REQUIRE(code_of([&] { incr_text("-"); }) == lockdb::Errc::corrupt);
  REQUIRE(code_of([&] { incr_text("9223372036854775808"); }) == lockdb::Errc::invalid_argument);
  REQUIRE(code_of([&] { incr_text("1e3"); }) == lockdb::Errc::invalid_argument);  // a float
}

TEST_CASE("compare_and_put writes only at the expected version", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  REQUIRE(store.compare_and_put("k", std::nullopt, 1));  // only if absent
  REQUIRE_FALSE(store.compare_and_put("k", std::nullopt, 2));
  auto e = store.entry("k");
  REQUIRE(e->value == 1);
  REQUIRE_FALSE(store.compare_and_put("k", std::string("0000000000000000"), 3));
  REQUIRE(store.compare_and_put("k", e->version, 4));
  REQUIRE_FALSE(store.compare_and_put("k", e->version, 5));  // stale now
  REQUIRE(store.get("k") == 4);
  REQUIRE_FALSE(store.compare_and_put("absent", std::string(e->version), 1));
  REQUIRE_FALSE(store.contains("absent"));
  auto records = records_of(store, "k");
  REQUIRE(records.size() == 2);
  REQUIRE(records[1].op == "cas");
  require_chained(records);
}

TEST_CASE("update_many sees and edits all keys, one record per changed key", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("a", 1);
  store.put("b", 2);
  store.put("c", 3);
  auto written = store.update_many({"c", "a", "b", "d", "a"}, [](std::map<std::string, json>& m) {
    REQUIRE(m == std::map<std::string, json>{{"a", 1}, {"b", 2}, {"c", 3}});
    m["a"] = 10;   // changed
    m.erase("b");  // erased
    m["d"] = 4;    // created
    // "c" unchanged: not written, not logged
  });
  REQUIRE(written == std::map<std::string, json>{{"a", 10}, {"c", 3}, {"d", 4}});
  REQUIRE(store.get("a") == 10);
  REQUIRE_FALSE(store.get("b"));
  REQUIRE(store.get("c") == 3);
  REQUIRE(store.get("d") == 4);
  REQUIRE(records_of(store, "a").size() == 2);
  REQUIRE(records_of(store, "a")[1].op == "update_many");
  REQUIRE(records_of(store, "b").size() == 2);
  REQUIRE_FALSE(records_of(store, "b")[1].version);
  REQUIRE(records_of(store, "c").size() == 1);
  REQUIRE(records_of(store, "d").size() == 1);

  // A key that was not requested: nothing is written.
  std::string what;
  REQUIRE(code_of(
              [&] {
                store.update_many({"a"}, [](std::map<std::string, json>& m) {
                  m["a"] = 11;
                  m["zzz"] = 1;
                });
              },
              &what) == lockdb::Errc::invalid_argument);
  REQUIRE_THAT(what, Catch::Contains("zzz"));
  REQUIRE(store.get("a") == 10);
  REQUIRE_FALSE(store.contains("zzz"));
}

TEST_CASE("update_many from processes locking overlapping keys in any order", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  const int n = 200;
  std::vector<std::vector<std::string>> orders = {
      {"x", "y", "z"}, {"z", "y", "x"}, {"y", "z", "x"}, {"z", "x"}};
  std::vector<std::unique_ptr<Child>> kids;
  for (const auto& order : orders) {
    std::vector<std::string> args = {"store-update-many", store.dir().string(), std::to_string(n)};
    args.insert(args.end(), order.begin(), order.end());
    kids.push_back(std::make_unique<Child>(helper(args)));
  }
  for (auto& k : kids) REQUIRE(k->expect_line("READY"));
  for (auto& k : kids) k->write_line("go");
  for (auto& k : kids) REQUIRE(k->expect_line("DONE"));
  for (auto& k : kids) REQUIRE(k->wait() == 0);
  REQUIRE(store.get("x") == 4 * n);
  REQUIRE(store.get("y") == 3 * n);
  REQUIRE(store.get("z") == 4 * n);
  for (const char* key : {"x", "y", "z"}) require_chained(records_of(store, key));
}

TEST_CASE("each record's value equals the written value, scalars and documents alike", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  const std::vector<json> values = {json(1),
                                    json(-0.1),
                                    json(1e300),
                                    json("caf\u00e9 \u0001 \"quoted\" \\ \n tab\t"),
                                    json(true),
                                    json(nullptr),
                                    json::array(),
                                    json::object(),
                                    json{{"a", {1, 2, "x\ny"}}, {"b", {{"c", nullptr}}}}};
  for (const auto& v : values) store.put("k", v);
  const auto records = records_of(store, "k");
  REQUIRE(records.size() == values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    INFO(values[i].dump());
    REQUIRE(records[i].value == values[i]);
  }
}

TEST_CASE("threads of one process share a Store", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  const int threads = 6, n = 300;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < n; ++i) store.increment("shared");
    });
  }
  for (auto& t : pool) t.join();
  REQUIRE(store.get("shared") == threads * n);
  auto records = records_of(store, "shared");
  REQUIRE(records.size() == static_cast<std::size_t>(threads * n));
  require_chained(records);

  // A write from inside update's fn on the same key would wait for itself: it is refused.
  std::string what;
  REQUIRE(code_of([&] { store.update("shared", [&](json&) { store.increment("shared"); }); },
                  &what) == lockdb::Errc::conflict);
  REQUIRE_THAT(what, Catch::Contains("already holds"));
  REQUIRE(store.get("shared") == threads * n);
}

TEST_CASE("a forked child keeps using the parent's Store", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.increment("n");
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = 1;
    try {
      for (int i = 0; i < 100; ++i) store.increment("n");
      code = 0;
    } catch (...) {
    }
    ::_exit(code);
  }
  for (int i = 0; i < 100; ++i) store.increment("n");
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(store.get("n") == 201);
  require_chained(records_of(store, "n"));
}

TEST_CASE("lock_stripes: N stripe lock files, recorded in the marker", "[store]") {
  TempDir tmp;
  const fs::path dir = tmp / "db";
  Store store(dir, lockdb::StoreOptions{.lock_stripes = 4});
  for (int i = 0; i < 20; ++i) store.increment("k" + std::to_string(i));
  REQUIRE(json::parse(lockdb::test::read_text(dir / "lockdb-store.json"))["lock_stripes"] == 4);
  int stripe_files = 0, per_key_locks = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir / "keys")) {
    std::string name = e.path().filename().string();
    if (name.rfind("stripe-", 0) == 0) ++stripe_files;
    if (name.size() > 10 && name.substr(name.size() - 10) == ".json.lock") ++per_key_locks;
  }
  REQUIRE(stripe_files <= 4);
  REQUIRE(stripe_files >= 1);
  REQUIRE(per_key_locks == 0);
  // Opening with default options adopts the store's stripes; asking for others is an error.
  REQUIRE(Store(dir).options().lock_stripes == 4);
  REQUIRE(code_of([&] { Store s(dir, lockdb::StoreOptions{.lock_stripes = 8}); }) ==
          lockdb::Errc::invalid_argument);
  // update_many over keys that share stripes takes each stripe once.
  store.update_many({"k0", "k1", "k2", "k3", "k4", "k5"}, [](std::map<std::string, json>& m) {
    for (auto& [k, v] : m) v = v.get<int>() + 1;
  });
  REQUIRE(store.get("k5") == 2);
  REQUIRE(store.lock_files().size() == 5);  // 4 stripes + the log's lock
  REQUIRE(store.verify().empty());
}

TEST_CASE("durability none swaps the new file in, a leftover old file is an orphaned temp",
          "[store]") {
  TempDir tmp;
  Store store(tmp / "db");  // durability none: swap in, then unlink the old file
  if (!lockdb::detail::swap_in_pays(lockdb::os::fs_magic(tmp.path()))) {
    // Only where a rename over a file costs a writeback (ext4, btrfs) does the store swap.
    WARN("skipped: the temp directory's filesystem is not one where the store swaps files in");
    return;
  }
  store.put("k", 1);
  const fs::path file = store.file_path("k");
  const auto inode_before = fs::status(file).type();
  REQUIRE(inode_before == fs::file_type::regular);
  // The unlink of the swapped-out old file fails (as if the process died right after the swap):
  // the write has succeeded, and the old content is left under the temp name.
  lockdb::os::fail_nth(lockdb::os::Op::unlink, 1, EIO);
  REQUIRE(store.put("k", 2) == fnv_version("2"));
  lockdb::os::clear_faults();
  REQUIRE(store.get("k") == 2);
  auto temps = temp_files(store.dir());
  REQUIRE(temps.size() == 1);
  REQUIRE(lockdb::test::read_text(temps[0]) == "1\n");
  auto findings = store.verify();
  INFO(describe(findings));
  REQUIRE(findings.size() == 1);
  REQUIRE(findings[0].kind == lockdb::Finding::Kind::orphan_temp);
  REQUIRE(store.repair().size() == 1);
  REQUIRE(temp_files(store.dir()).empty());
  REQUIRE(store.verify().empty());
}

TEST_CASE("durability full writes and fsyncs, a failed fsync fails the write", "[store]") {
  TempDir tmp;
  Store store(tmp / "db", lockdb::StoreOptions{.durability = lockdb::Durability::full});
  store.put("k", 1);
  REQUIRE(store.increment("k") == 2);
  lockdb::os::fail_nth(lockdb::os::Op::fsync, 1, EIO);
  std::string what;
  REQUIRE(code_of([&] { store.increment("k"); }, &what) == lockdb::Errc::io);
  lockdb::os::clear_faults();
  REQUIRE_THAT(what, Catch::Contains("\"k\"") && Catch::Contains("fsync"));
  REQUIRE(store.get("k") == 2);
  REQUIRE(temp_files(store.dir()).empty());
  REQUIRE(records_of(store, "k").size() == 2);
  REQUIRE(store.erase("k"));
  REQUIRE(store.verify().empty());
}

// Every fsync of a durability-full write fails in turn (1st, 2nd, ... until the write makes
// fewer): a failed fsync before the change is in place leaves the old value; one after it (the
// directory's, the log's) keeps the change and logs it, and says it may not survive power loss.
// Either way the call throws Error{io}, the log and the store agree, and no temp file stays.
TEST_CASE("a failed fsync after the change is in place keeps it logged, and says so", "[store]") {
  TempDir tmp;
  Store store(tmp / "db", lockdb::StoreOptions{.durability = lockdb::Durability::full});
  struct Outcomes {
    int taken_back = 0;
    int kept = 0;
  };
  // `write` changes the store; `changed` tells whether its change is in place.
  auto each_fsync_fails = [&](const std::string& name, const std::function<void()>& write,
                              const std::function<bool()>& changed,
                              const std::function<void()>& reset) {
    Outcomes o;
    for (int nth = 1;; ++nth) {
      INFO(name << ": fsync " << nth << " fails");
      reset();
      lockdb::os::fail_nth(lockdb::os::Op::fsync, nth, EIO);
      std::optional<lockdb::Errc> code;
      std::string what;
      try {
        write();
      } catch (const lockdb::Error& e) {
        code = e.code();
        what = e.what();
      }
      lockdb::os::clear_faults();
      INFO(what);
      REQUIRE(temp_files(store.dir()).empty());
      REQUIRE(describe(store.verify()).empty());
      if (!code) break;  // it makes fewer fsyncs than nth: it succeeded
      REQUIRE(*code == lockdb::Errc::io);
      REQUIRE_THAT(what, Catch::Contains("fsync"));
      if (changed()) {
        ++o.kept;
        REQUIRE_THAT(what, Catch::Contains("logged") && Catch::Contains("power loss"));
      } else {
        ++o.taken_back;
        REQUIRE_THAT(what, !Catch::Contains("logged"));
      }
    }
    return o;
  };

  store.put("k", 1);
  Outcomes inc = each_fsync_fails(
      "increment", [&] { store.increment("k"); }, [&] { return store.get("k") == 2; },
      [&] { store.put("k", 1); });
  CHECK(inc.taken_back == 1);  // the temp file's fsync
  CHECK(inc.kept == 2);        // the directory's and the log's

  Outcomes erase = each_fsync_fails(
      "erase", [&] { store.erase("k"); }, [&] { return !store.contains("k"); },
      [&] { store.put("k", 1); });
  CHECK(erase.taken_back == 0);
  CHECK(erase.kept == 2);  // the directory's and the log's

  // Two keys in different directories: two temp files and the intent (file and txn/) before
  // anything is decided; the log (both records in one append) and two directories after.
  std::string b = "b";
  while (store.file_path(b).parent_path() == store.file_path("a").parent_path()) b += "b";
  Outcomes many = each_fsync_fails(
      "update_many",
      [&] {
        store.update_many({"a", b}, [&b](std::map<std::string, json>& m) {
          m["a"] = m["a"].get<int>() + 1;
          m[b] = m[b].get<int>() + 1;
        });
      },
      [&] {
        const bool a = store.get("a") == 2;
        REQUIRE(a == (store.get(b) == 2));  // both or neither
        return a;
      },
      [&] {
        store.put("a", 1);
        store.put(b, 1);
      });
  CHECK(many.taken_back == 4);
  CHECK(many.kept == 3);
}

// ---------------------------------------------------------------------------------------------
// Keys

TEST_CASE("hostile keys round-trip and stay inside the store", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  std::vector<std::string> keys = {"config",
                                   "Config",
                                   "CONFIG",
                                   "cOnFiG",
                                   "/",
                                   "//",
                                   "..",
                                   ".",
                                   "...",
                                   "../../etc/passwd",
                                   "/etc/passwd",
                                   "a/b/c",
                                   "a\\b",
                                   std::string("nul\0byte", 8),
                                   std::string(1, '\0'),
                                   "\x01\x02\x1f\x7f",
                                   "tab\there",
                                   "new\nline",
                                   "CON",
                                   "con",
                                   "Con",
                                   "nul",
                                   "NUL.txt",
                                   "con.json",
                                   "aux.",
                                   "com1",
                                   "COM9",
                                   "lpt1.x",
                                   "lpt10",
                                   "conin$",
                                   "prn.tar.gz",
                                   ".hidden",
                                   ".json",
                                   "x.json",
                                   "x.json.lock",
                                   "x.tmp123",
                                   ".x.json.0123456789ab.tmp",
                                   "%2f",
                                   "%41",
                                   "^A",
                                   "^a",
                                   "~",
                                   "a~",
                                   "trailing.",
                                   "trailing ",
                                   " leading",
                                   "a:b*c?d\"e<f>g|h",
                                   "\xc3\xa9t\xc3\xa9",
                                   "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
                                   "\xf0\x9f\x94\x92",
                                   "\xc3\x89T\xc3\x89",  // ÉTÉ: differs from "été" only in case
                                   std::string(1024, 'a'),
                                   std::string(1024, 'A'),
                                   std::string(1024, '/'),
                                   std::string(1023, 'a') + "A",
                                   std::string(200, 'a') + "." + std::string(300, 'b'),
                                   std::string(199, 'c') + "." + std::string(200, 'd'),
                                   std::string(200, 'e') + "con.x"};
  {
    std::string utf8;  // 512 two-byte characters: 1024 bytes
    for (int i = 0; i < 512; ++i) utf8 += "\xc3\xa9";
    keys.push_back(utf8);
    std::string four;  // 256 four-byte characters
    for (int i = 0; i < 256; ++i) four += "\xf0\x9f\x94\x92";
    keys.push_back(four);
  }
  std::set<std::string> unique(keys.begin(), keys.end());
  REQUIRE(unique.size() == keys.size());

  std::map<std::string, std::string> folded;  // case-folded relative path -> key
  const fs::path keys_dir = store.dir() / "keys";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    INFO("key #" << i << " " << lockdb::detail::store_format::quote_key(key));
    store.put(key, json{{"i", i}});
    fs::path file = store.file_path(key);
    fs::path rel = file.lexically_relative(keys_dir);
    REQUIRE(!rel.empty());
    for (const auto& part : rel) {
      std::string name = part.string();
      REQUIRE(name != "..");
      REQUIRE(name != ".");
      REQUIRE(name.size() <= 230);  // room for ".lock" and temp names within 255
      REQUIRE(name.front() != '.');
      std::string base = name.substr(0, name.find('.'));
      for (auto& c : base) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      for (const char* device : {"con", "prn", "aux", "nul", "com1", "com9", "lpt1"}) {
        REQUIRE(base != device);
      }
      for (char c : name) {
        REQUIRE(static_cast<unsigned char>(c) >= 0x20);
        REQUIRE(static_cast<unsigned char>(c) < 0x7f);
        REQUIRE(std::string("/\\:*?\"<>|").find(c) == std::string::npos);
      }
    }
    std::string lower = rel.string();
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    REQUIRE(folded.emplace(lower, key).second);  // distinct even on a case-insensitive disk
    REQUIRE(fs::exists(file));
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    INFO("key #" << i);
    REQUIRE(store.get(keys[i]) == json{{"i", i}});
  }
  // Plain keys stay readable.
  REQUIRE(store.file_path("config").filename() == "config.json");
  REQUIRE(store.file_path("Config").filename() == "^Config.json");
  REQUIRE(store.file_path("user:42").filename() == "user%3a42.json");
  REQUIRE(store.file_path("con").filename() == "%63on.json");
  // keys() returns exactly what was put.
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  REQUIRE(store.keys() == sorted);
  // Nothing outside the store.
  std::set<std::string> top;
  for (const auto& e : fs::directory_iterator(tmp.path())) top.insert(e.path().filename().string());
  REQUIRE(top == std::set<std::string>{"db"});
  REQUIRE(store.verify().empty());
  for (const auto& key : keys) REQUIRE(store.erase(key));
  REQUIRE(store.keys().empty());
}

TEST_CASE("invalid keys are rejected, naming the key, nothing is written", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  const std::vector<std::string> bad = {
      "",         std::string(1025, 'a'), "\xff", "ab\xc0\xaf", "\xed\xa0\x80",
      "\xe6\x97", "\xf4\x90\x80\x80",     "\xc3", "\x80",       "ok\xfe"};
  for (const auto& key : bad) {
    INFO(lockdb::detail::store_format::quote_key(key));
    std::string what;
    REQUIRE(code_of([&] { store.put(key, 1); }, &what) == lockdb::Errc::invalid_argument);
    REQUIRE_THAT(what, Catch::Contains("invalid key"));
    REQUIRE(code_of([&] { (void)store.get(key); }) == lockdb::Errc::invalid_argument);
    REQUIRE(code_of([&] { (void)store.file_path(key); }) == lockdb::Errc::invalid_argument);
  }
  REQUIRE(store.keys().empty());
  REQUIRE(fs::is_empty(store.dir() / "keys"));
}

TEST_CASE("path escapes are rejected", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  // A key file replaced by a symlink to a file outside the store is refused, not followed.
  lockdb::test::write_text(tmp / "outside.json", "\"secret\"");
  store.put("k", 1);
  fs::remove(store.file_path("k"));
  fs::create_symlink(tmp / "outside.json", store.file_path("k"));
  std::string what;
  REQUIRE(code_of([&] { (void)store.get("k"); }, &what) == lockdb::Errc::invalid_argument);
  REQUIRE_THAT(what, Catch::Contains("symbolic link"));
  REQUIRE(code_of([&] { store.put("k", 2); }) == lockdb::Errc::invalid_argument);
  REQUIRE(lockdb::test::read_text(tmp / "outside.json") == "\"secret\"");

  // Files planted under keys/ with names that are no key's canonical encoding are not keys.
  const fs::path shard = store.dir() / "keys" / "00";
  fs::create_directories(shard);
  lockdb::test::write_text(shard / "..%2f..%2fx.json", "1");  // not canonical ('.' first)
  lockdb::test::write_text(shard / "Config.json", "1");       // uppercase must be "^C"
  lockdb::test::write_text(shard / "a%2F.json", "1");         // uppercase hex
  const std::string other = lockdb::detail::store_format::shard_of("config") == "00" ? "01" : "00";
  fs::create_directories(store.dir() / "keys" / other);
  lockdb::test::write_text(store.dir() / "keys" / other / "config.json", "1");  // wrong shard
  REQUIRE(store.keys().empty());  // a symlink is no key file either
  REQUIRE_FALSE(store.contains("k"));
  auto findings = store.verify();
  INFO(describe(findings));
  int bad_names = 0, missing = 0, planted = 0;
  for (const auto& f : findings) {
    bad_names += f.kind == lockdb::Finding::Kind::bad_file_name;
    missing += f.kind == lockdb::Finding::Kind::missing_file && f.key == "k";
    planted += f.kind == lockdb::Finding::Kind::planted_file;
  }
  REQUIRE(bad_names == 4);  // the four planted names
  REQUIRE(planted == 1);    // the symlink
  REQUIRE(missing == 1);    // the log says "k" exists
  REQUIRE(findings.size() == 6);
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST_CASE("a corrupt key file is reported, never overwritten", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  const fs::path file = store.file_path("k");
  lockdb::test::write_text(file, "{\"half\": ");
  std::string what;
  REQUIRE(code_of([&] { (void)store.get("k"); }, &what) == lockdb::Errc::corrupt);
  REQUIRE_THAT(what, Catch::Contains("\"k\"") && Catch::Contains(file.string()));
  REQUIRE(code_of([&] { (void)store.entry("k"); }) == lockdb::Errc::corrupt);
  REQUIRE(code_of([&] { store.put("k", 2); }) == lockdb::Errc::corrupt);
  REQUIRE(code_of([&] { store.update("k", [](json& v) { v = 3; }); }) == lockdb::Errc::corrupt);
  REQUIRE(code_of([&] { store.increment("k"); }) == lockdb::Errc::corrupt);
  REQUIRE(code_of([&] { store.erase("k"); }) == lockdb::Errc::corrupt);
  const std::string corrupt_version = fnv_version("{\"half\": ");
  for (const auto& expected : {std::optional<std::string>(), std::optional<std::string>("0"),
                               std::optional<std::string>(corrupt_version)}) {
    INFO("compare_and_put expecting " << expected.value_or("absence"));
    REQUIRE(code_of([&] { store.compare_and_put("k", expected, 5); }) == lockdb::Errc::corrupt);
  }
  REQUIRE(code_of([&] {
            store.update_many({"k"}, [](std::map<std::string, json>& m) { m["k"] = 4; });
          }) == lockdb::Errc::corrupt);
  REQUIRE(lockdb::test::read_text(file) == "{\"half\": ");
  REQUIRE(temp_files(store.dir()).empty());
  REQUIRE(records_of(store, "k").size() == 1);
}

TEST_CASE("a full disk fails the write, the old value stays, no temp file stays", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", json{{"v", 1}});
  const std::string before = lockdb::test::read_text(store.file_path("k"));

  // The key file's write fails.
  lockdb::os::fail_nth(lockdb::os::Op::write, 1, ENOSPC);
  std::string what;
  bool thrown = false;
  try {
    store.put("k", json{{"v", 2}});
  } catch (const lockdb::Error& e) {
    thrown = true;
    what = e.what();
    REQUIRE(e.code() == lockdb::Errc::io);
    REQUIRE(e.sys_errno() == ENOSPC);
    REQUIRE(e.path() == store.file_path("k"));
  }
  lockdb::os::clear_faults();
  REQUIRE(thrown);
  REQUIRE_THAT(what, Catch::Contains("\"k\"") && Catch::Contains("No space left"));
  REQUIRE(lockdb::test::read_text(store.file_path("k")) == before);
  REQUIRE(temp_files(store.dir()).empty());
  REQUIRE(records_of(store, "k").size() == 1);

  // The key file is written but the log append fails: the write is taken back.
  lockdb::os::fail_nth(lockdb::os::Op::write, 2, ENOSPC);
  REQUIRE(code_of([&] { store.put("k", json{{"v", 3}}); }, &what) == lockdb::Errc::io);
  lockdb::os::clear_faults();
  REQUIRE_THAT(what, Catch::Contains("taken back"));
  REQUIRE(lockdb::test::read_text(store.file_path("k")) == before);
  REQUIRE(temp_files(store.dir()).empty());
  REQUIRE(records_of(store, "k").size() == 1);
  REQUIRE(store.verify().empty());

  // A new key whose log append fails is removed again.
  lockdb::os::fail_nth(lockdb::os::Op::write, 2, ENOSPC);
  REQUIRE(code_of([&] { store.put("new", 1); }) == lockdb::Errc::io);
  lockdb::os::clear_faults();
  REQUIRE_FALSE(store.contains("new"));

  // update_many stages every file before renaming any: a failure leaves all keys as they were.
  store.put("a", 1);
  store.put("b", 1);
  lockdb::os::fail_nth(lockdb::os::Op::write, 2, ENOSPC);
  REQUIRE(code_of([&] {
            store.update_many({"a", "b"}, [](std::map<std::string, json>& m) {
              m["a"] = 2;
              m["b"] = 2;
            });
          }) == lockdb::Errc::io);
  lockdb::os::clear_faults();
  REQUIRE(store.get("a") == 1);
  REQUIRE(store.get("b") == 1);
  REQUIRE(temp_files(store.dir()).empty());
  REQUIRE(store.verify().empty());

  // The append of both records fails (writes: temp a, temp b, intent, records): nothing is in
  // place, and the error says so (update_many is all or nothing).
  lockdb::os::fail_nth(lockdb::os::Op::write, 4, ENOSPC);
  REQUIRE(code_of(
              [&] {
                store.update_many({"a", "b"}, [](std::map<std::string, json>& m) {
                  m["a"] = 3;
                  m["b"] = 3;
                });
              },
              &what) == lockdb::Errc::io);
  lockdb::os::clear_faults();
  REQUIRE_THAT(what, Catch::Contains("taken back") && Catch::Contains("nothing was logged"));
  REQUIRE(store.get("a") == 1);
  REQUIRE(store.get("b") == 1);
  REQUIRE(temp_files(store.dir()).empty());
  REQUIRE(store.verify().empty());
}

TEST_CASE("a read-only store: writes fail with permission, reads work", "[store]") {
  TempDir tmp;
  const fs::path dir = tmp / "db";
  {
    Store store(dir);
    store.put("k", 1);  // as the owner (root here): files 0644, directories 0755
  }
  fs::permissions(tmp.path(),
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  // root bypasses permissions: the write is tried by the unprivileged uid 65534.
  auto r = lockdb::test::run(helper({"store-put-as", "65534", dir.string(), "k", "2"}));
  if (::geteuid() != 0) {
    REQUIRE_THAT(r.out, Catch::Contains("SETUID-FAILED"));
    SUCCEED("not root: cannot switch to another uid here");
    return;
  }
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("ERROR permission key \"k\""));
  REQUIRE_THAT(r.out, Catch::Contains("Permission denied"));
  REQUIRE_THAT(r.out, Catch::Contains("GET 1"));
  Store store(dir);
  REQUIRE(store.get("k") == 1);
  REQUIRE(temp_files(dir).empty());
  REQUIRE(records_of(store, "k").size() == 1);
}

TEST_CASE("a key locked by another process: Timeout naming the key, the lock and holder",
          "[store]") {
  TempDir tmp;
  Store store(tmp / "db", lockdb::StoreOptions{.lock_timeout = 150ms});
  store.put("k", 1);
  const fs::path lock = store.file_path("k").string() + ".lock";
  Child holder(helper({"hold", "hard", lock.string()}));
  REQUIRE(holder.expect_line("LOCKED"));
  auto t0 = std::chrono::steady_clock::now();
  try {
    store.increment("k");
    FAIL("increment returned while another process holds the key's lock");
  } catch (const lockdb::Timeout& e) {
    REQUIRE(std::chrono::steady_clock::now() - t0 >= 150ms);
    REQUIRE(e.code() == lockdb::Errc::timeout);
    REQUIRE(e.path() == lock);
    REQUIRE(e.holder());
    REQUIRE(e.holder()->pid == holder.pid());
    REQUIRE_THAT(e.what(), Catch::StartsWith("key \"k\": lock not acquired within 150 ms"));
  }
  REQUIRE(store.get("k") == 1);  // reads take no lock
  holder.write_line("release");
  REQUIRE(holder.expect_line("RELEASED"));
  REQUIRE(store.increment("k") == 2);
  REQUIRE(holder.wait() == 0);

  // With one stripe lock file for all keys the lock's path names no key: the message does.
  Store striped(tmp / "striped", lockdb::StoreOptions{.lock_timeout = 100ms, .lock_stripes = 1});
  striped.put("config", 1);
  const std::vector<fs::path> stripes = striped.lock_files();
  REQUIRE(stripes.size() == 2);  // the stripe and the log's lock
  const fs::path stripe = stripes[0];
  REQUIRE(stripe.filename() == "stripe-0.lock");
  Child stripe_holder(helper({"hold", "hard", stripe.string()}));
  REQUIRE(stripe_holder.expect_line("LOCKED"));
  std::string what;
  REQUIRE(code_of([&] { striped.put("config", 2); }, &what) == lockdb::Errc::timeout);
  REQUIRE_THAT(what, Catch::StartsWith("key \"config\": lock not acquired") &&
                         Catch::Contains(stripe.string()));
  stripe_holder.write_line("release");
  REQUIRE(stripe_holder.expect_line("RELEASED"));
  REQUIRE(stripe_holder.wait() == 0);
  REQUIRE(striped.get("config") == 1);
}

// ---------------------------------------------------------------------------------------------
// verify / repair

TEST_CASE("verify finds what was changed around the store, repair fixes it", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  for (const char* k : {"changed", "deleted", "corrupt", "fine"}) store.put(k, 1);
  store.put("gap", 1);

  lockdb::test::write_text(store.file_path("changed"), "2");      // unlogged change
  fs::remove(store.file_path("deleted"));                         // missing file
  lockdb::test::write_text(store.file_path("corrupt"), "{oops");  // corrupt
  lockdb::test::write_text(store.file_path("gap"), "5");          // a gap, then a logged write
  store.increment("gap");
  // A key file nobody logged, and temp files of writers that died.
  const fs::path created = store.file_path("created");
  fs::create_directories(created.parent_path());
  lockdb::test::write_text(created, "\"hello\"");
  const fs::path our_temp = created.parent_path() / ".created.json.0123456789ab.tmp";
  const fs::path python_temp = created.parent_path() / "created.tmp4242";
  lockdb::test::write_text(our_temp, "\"half");
  lockdb::test::write_text(python_temp, "\"hal");

  auto findings = store.verify();
  INFO(describe(findings));
  std::multiset<std::string> got;
  for (const auto& f : findings)
    got.insert(std::string(lockdb::finding_kind_name(f.kind)) + " " + f.key);
  REQUIRE(got == std::multiset<std::string>{"unlogged_change changed", "missing_file deleted",
                                            "corrupt_key_file corrupt", "unlogged_change gap",
                                            "missing_file created", "orphan_temp created",
                                            "orphan_temp created"});
  // verify changed nothing.
  REQUIRE(fs::exists(our_temp));
  REQUIRE(store.verify().size() == findings.size());

  auto done = store.repair();
  INFO(describe(done));
  REQUIRE(done.size() == findings.size());
  auto after = store.verify();
  INFO(describe(after));
  REQUIRE(after.empty());
  REQUIRE_FALSE(fs::exists(our_temp));
  REQUIRE_FALSE(fs::exists(python_temp));
  REQUIRE(store.get("changed") == 2);
  REQUIRE_FALSE(store.contains("deleted"));
  REQUIRE(store.get("corrupt") == 1);  // its last logged value, restored
  REQUIRE(records_of(store, "corrupt").back().op == "repair");
  REQUIRE(store.get("created") == "hello");
  REQUIRE(store.get("gap") == 6);
  bool moved_aside = false;
  for (const auto& e : fs::directory_iterator(store.file_path("corrupt").parent_path())) {
    std::string name = e.path().filename().string();
    if (name.rfind("corrupt.json.corrupt-", 0) == 0) {
      moved_aside = true;
      REQUIRE(lockdb::test::read_text(e.path()) == "{oops");
    }
  }
  REQUIRE(moved_aside);
  auto repaired = records_of(store, "changed");
  REQUIRE(repaired.back().op == "repair");
  REQUIRE(repaired.back().value == 2);
  REQUIRE(repaired.back().prev_version == repaired[0].version);
  REQUIRE(repaired.back().version == fnv_version("2"));
  // Keys stay usable; the chain continues from the repair record.
  REQUIRE(store.increment("changed") == 3);
  REQUIRE(store.verify().empty());
}

TEST_CASE("a torn log line: reported until a repair acknowledges it", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  store.put("other", 1);
  const fs::path segment = store.dir() / "log" / "000001.jsonl";
  auto append_to_log = [&](const std::string& bytes) {
    std::ofstream(segment, std::ios::binary | std::ios::app) << bytes;
  };
  auto kinds = [](const std::vector<lockdb::Finding>& findings) {
    std::multiset<std::string> out;
    for (const auto& f : findings) out.insert(lockdb::finding_kind_name(f.kind));
    return out;
  };

  // A writer killed in the middle of its append: the key file has the new value, the log only
  // the start of its record. The next record starts on a fresh line.
  lockdb::test::write_text(store.file_path("k"), "2");
  append_to_log(R"({"time":"2026-12-01T00:00:00.000000Z","key":"k","op":"put","val)");
  store.put("other", 2);
  auto findings = store.verify();
  INFO(describe(findings));
  REQUIRE(kinds(findings) == std::multiset<std::string>{"torn_log_line", "unlogged_change"});
  auto done = store.repair();
  INFO(describe(done));
  REQUIRE(kinds(done) == kinds(findings));
  for (const auto& f : done) {
    if (f.kind == lockdb::Finding::Kind::torn_log_line) {
      REQUIRE_THAT(f.detail, Catch::Contains("marked as seen"));
    }
  }
  REQUIRE(store.verify().empty());
  REQUIRE(store.get("k") == 2);
  REQUIRE(records_of(store, "other").size() == 2);  // the record after the torn line is read

  // Bytes someone wrote into the log, with no key disagreeing: not a store record's remains. A
  // repair that has nothing to log acknowledges them with a seen marker, which names no key: no
  // reader takes it for a record, nor counts it as torn.
  append_to_log("not a record\n");
  findings = store.verify();
  INFO(describe(findings));
  REQUIRE(kinds(findings) == std::multiset<std::string>{"torn_log_line"});
  const auto records_before = lockdb::History(store.dir()).records().size();
  done = store.repair();
  REQUIRE(kinds(done) == std::multiset<std::string>{"torn_log_line"});
  REQUIRE_THAT(done.front().detail, Catch::Contains("not the remains of a store record") &&
                                        Catch::Contains("acknowledged by a seen marker"));
  REQUIRE(store.verify().empty());
  const std::string text = lockdb::test::read_text(segment);
  const std::string marker = text.substr(text.rfind('\n', text.size() - 2) + 1);
  REQUIRE_THAT(marker, Catch::StartsWith(R"({"time":")") &&
                           Catch::Contains(R"(","op":"repair","pid":)") &&
                           Catch::EndsWith(R"(,"lines":1}}
)"));
  REQUIRE(marker.find("\"key\"") == std::string::npos);
  const json seen = json::parse(marker)["seen"];
  REQUIRE(seen["segment"] == 1);
  REQUIRE(text.compare(seen["offset"].get<std::size_t>(), 13, "not a record\n") == 0);
  lockdb::History history(store.dir());
  REQUIRE(history.records().size() == records_before);
  REQUIRE(history.for_each({}, [](const lockdb::Record&) { return true; }) == 2);  // the torn
  REQUIRE(store.repair().empty());  // nothing left to acknowledge: nothing appended
  REQUIRE(lockdb::test::read_text(segment) == text);

  // A marker acknowledges the lines up to the last one its repair saw, not those after it.
  append_to_log("more bytes\n");
  findings = store.verify();
  REQUIRE(kinds(findings) == std::multiset<std::string>{"torn_log_line"});
  REQUIRE_THAT(findings.front().detail, Catch::StartsWith("1 torn or unreadable line(s)"));
  // A repair record (here for a key changed around the store) acknowledges the torn lines before
  // it as well, and then no marker is needed.
  lockdb::test::write_text(store.file_path("other"), "3");
  REQUIRE(kinds(store.repair()) == std::multiset<std::string>{"torn_log_line", "unlogged_change"});
  REQUIRE(store.verify().empty());
  REQUIRE(lockdb::test::read_text(segment).find(R"("lines":1}})", text.size()) ==
          std::string::npos);
}

TEST_CASE("verify reports stale soft markers at lock paths, repair empties them in place",
          "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  fs::path lock = store.file_path("k");
  lock += ".lock";

  // A SoftFileLock (nfs_safe_write on the key file, Python's SoftFileLock) while its holder lives.
  Child soft(helper({"hold", "soft", lock.string()}));
  REQUIRE(soft.expect_line("LOCKED"));
  const std::string live_marker = lockdb::test::read_text(lock);
  REQUIRE_FALSE(live_marker.empty());
  fs::path live_tomb = lock;
  live_tomb += ".break-live";
  lockdb::test::write_text(live_tomb, live_marker);  // a breaker at work: no finding
  {
    auto findings = store.verify();
    INFO(describe(findings));
    REQUIRE(findings.empty());
  }
  soft.kill(SIGKILL);
  REQUIRE(soft.wait() == 128 + SIGKILL);
  fs::remove(live_tomb);

  // Its holder died: the marker stays. Writes still work (the store's flock on the same file),
  // and a dead breaker's leftovers lie next to it.
  store.put("k", 1);
  const std::string dead_marker = lockdb::test::read_text(lock);
  REQUIRE(dead_marker == live_marker);
  fs::path tomb = lock, moved = lock;
  tomb += ".break-0123abcd";
  moved += ".stale-89abcdef";
  lockdb::test::write_text(tomb, dead_marker);
  lockdb::test::write_text(moved, dead_marker);

  auto findings = store.verify();
  INFO(describe(findings));
  std::set<std::string> paths;
  for (const auto& f : findings) {
    REQUIRE(f.kind == lockdb::Finding::Kind::stale_marker);
    REQUIRE(f.key == "k");
    REQUIRE_THAT(f.detail, Catch::Contains("pid " + std::to_string(soft.pid())));
    paths.insert(f.path.string());
  }
  REQUIRE(paths == std::set<std::string>{lock.string(), tomb.string(), moved.string()});
  REQUIRE(lockdb::test::read_text(lock) == dead_marker);  // verify changed nothing
  REQUIRE(fs::exists(tomb));

  // repair empties the marker without removing the lock file: a process may hold it open.
  struct stat before {};
  REQUIRE(::stat(lock.c_str(), &before) == 0);
  auto done = store.repair();
  INFO(describe(done));
  REQUIRE(done.size() == 3);
  struct stat after {};
  REQUIRE(::stat(lock.c_str(), &after) == 0);
  REQUIRE(after.st_ino == before.st_ino);
  REQUIRE(after.st_size == 0);
  REQUIRE_FALSE(fs::exists(tomb));
  REQUIRE_FALSE(fs::exists(moved));
  REQUIRE(store.verify().empty());
  REQUIRE(store.increment("k") == 2);

  // The same for a stripe lock file.
  Store striped(tmp / "striped", lockdb::StoreOptions{.lock_stripes = 2});
  striped.put("a", 1);
  striped.put("b", 1);
  std::vector<fs::path> stripes;
  for (const auto& e : fs::directory_iterator(tmp / "striped" / "keys")) {
    if (e.path().filename().string().rfind("stripe-", 0) == 0) stripes.push_back(e.path());
  }
  REQUIRE_FALSE(stripes.empty());
  lockdb::test::write_text(stripes[0], dead_marker);
  auto striped_findings = striped.verify();
  REQUIRE(striped_findings.size() == 1);
  REQUIRE(striped_findings[0].kind == lockdb::Finding::Kind::stale_marker);
  REQUIRE(striped_findings[0].key.empty());
  REQUIRE(striped_findings[0].path == stripes[0]);
  REQUIRE(striped.repair().size() == 1);
  REQUIRE(fs::file_size(stripes[0]) == 0);
  REQUIRE(striped.verify().empty());
}

TEST_CASE("verify after compaction: dropped records leave no false gaps", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  for (int i = 0; i < 6; ++i) store.put("k", i);
  store.put("other", 1);
  lockdb::test::write_text(store.file_path("k"), "40");  // a gap in records compaction keeps
  store.increment("k");
  REQUIRE(lockdb::compact_history_keep_last(store.dir(), 3) > 0);
  auto records = records_of(store, "k");
  REQUIRE(records.size() == 3);
  REQUIRE(records[0].prev_version);  // the chain's start was dropped
  auto findings = store.verify();
  INFO(describe(findings));
  REQUIRE(findings.size() == 1);
  REQUIRE(findings[0].kind == lockdb::Finding::Kind::unlogged_change);
  REQUIRE(findings[0].key == "k");
  REQUIRE(store.repair().size() == 1);
  REQUIRE(store.verify().empty());
  store.put("k", 7);
  REQUIRE(store.verify().empty());
}

TEST_CASE("verify looks again under the key's lock: a write in flight is no finding", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  const fs::path lock = store.file_path("k").string() + ".lock";
  // Another process holds the key's lock while the key file already has a new value and its
  // record is not appended yet: what a writer looks like between its rename and its append.
  Child holder(helper({"hold", "hard", lock.string()}));
  REQUIRE(holder.expect_line("LOCKED"));
  lockdb::test::write_text(store.file_path("k"), "2");
  std::vector<lockdb::Finding> findings;
  std::thread verifier([&] { findings = store.verify(); });
  // The writer appends its record, then unlocks.
  {
    lockdb::detail::LogWriter log(store.dir() / "log", store.options().log_segment_bytes,
                                  lockdb::Durability::none);
    json two = 2;
    lockdb::detail::RecordFields f;
    f.time = std::chrono::system_clock::now();
    f.key = "k";
    f.op = "put";
    f.value = &two;
    std::string prev = fnv_version("1"), version = fnv_version("2");
    f.prev_version = prev;
    f.version = version;
    log.append(lockdb::detail::render_record(f));
  }
  holder.write_line("release");
  REQUIRE(holder.expect_line("RELEASED"));
  verifier.join();
  INFO(describe(findings));
  REQUIRE(findings.empty());
  REQUIRE(holder.wait() == 0);
}

// ---------------------------------------------------------------------------------------------
// Processes

TEST_CASE("8 processes x 2000 increments of one key: exactly 16000, 16000 chained records",
          "[store][concurrency][stress]") {
  TempDir tmp;
  Store store(tmp / "db");
  const int procs = 8, n = 2000 / LOCKDB_STRESS_DIVISOR;
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < procs; ++i) {
    kids.push_back(std::make_unique<Child>(
        helper({"store-increment", store.dir().string(), "counter", std::to_string(n)})));
  }
  for (auto& k : kids) REQUIRE(k->expect_line("READY"));
  for (auto& k : kids) k->write_line("go");
  for (auto& k : kids) REQUIRE(k->wait() == 0);
  REQUIRE(store.get("counter") == procs * n);

  auto records = records_of(store, "counter");
  REQUIRE(records.size() == static_cast<std::size_t>(procs * n));
  std::optional<std::string> last;
  std::set<long> pids;
  for (std::size_t i = 0; i < records.size(); ++i) {
    INFO("record " << i);
    REQUIRE(records[i].op == "increment");
    REQUIRE(records[i].prev_version == last);
    REQUIRE(records[i].value == json(i + 1));  // commit order is log order
    REQUIRE(records[i].version == fnv_version(std::to_string(i + 1)));
    last = records[i].version;
    pids.insert(records[i].pid);
  }
  REQUIRE(pids.size() == static_cast<std::size_t>(procs));
  REQUIRE(store.entry("counter")->version == *last);
  REQUIRE(store.verify().empty());
}

TEST_CASE("8 writers on their own 100 keys while 2 readers loop: every read is whole",
          "[store][concurrency][stress]") {
  TempDir tmp;
  Store store(tmp / "db");
  const int writers = 8, nkeys = 100, rounds = 12 / LOCKDB_STRESS_DIVISOR;
  std::vector<std::unique_ptr<Child>> w, r;
  std::vector<std::string> reader_args = {"store-reader", store.dir().string(),
                                          std::to_string(nkeys)};
  for (int i = 0; i < writers; ++i) {
    std::string prefix = "w" + std::to_string(i) + "/";
    reader_args.push_back(prefix);
    w.push_back(std::make_unique<Child>(helper({"store-writer", store.dir().string(), prefix,
                                                std::to_string(nkeys), std::to_string(rounds)})));
  }
  for (int i = 0; i < 2; ++i) r.push_back(std::make_unique<Child>(helper(reader_args)));
  for (auto& k : r) REQUIRE(k->expect_line("READY"));
  for (auto& k : w) REQUIRE(k->expect_line("READY"));
  for (auto& k : w) k->write_line("go");
  for (auto& k : w) REQUIRE(k->expect_line("DONE"));
  for (auto& k : r) k->write_line("stop");
  for (auto& k : r) {
    auto line = k->read_line();
    REQUIRE(line);
    INFO(*line);
    std::istringstream in(*line);
    std::string word_reads, word_bad;
    long reads = 0, bad = -1;
    in >> word_reads >> reads >> word_bad >> bad;
    REQUIRE(word_reads == "READS");
    REQUIRE(reads >= writers * nkeys);
    REQUIRE(bad == 0);
    REQUIRE(k->wait() == 0);
  }
  for (auto& k : w) REQUIRE(k->wait() == 0);
  REQUIRE(store.keys().size() == static_cast<std::size_t>(writers * nkeys));
  REQUIRE(store.get("w3/7").value()["round"] == rounds);
  REQUIRE(lockdb::History(store.dir()).records().size() ==
          static_cast<std::size_t>(writers * nkeys * rounds));
  REQUIRE(store.verify().empty());
}

TEST_CASE("SIGKILLed writers, 50 rounds: files parse, counts bounded, repair restores agreement",
          "[store][concurrency][stress]") {
  TempDir tmp;
  Store store(tmp / "db");
  const int workers = 4, rounds = 50 / LOCKDB_STRESS_DIVISOR;
  std::mt19937 rng(20261130);
  long acked_shared = 0;
  std::vector<long> acked_own(workers, 0);
  long killed_total = 0;
  std::map<std::string, int> seen_kinds;
  for (int round = 0; round < rounds; ++round) {
    INFO("round " << round);
    std::vector<std::unique_ptr<Child>> kids;
    for (int i = 0; i < workers; ++i) {
      kids.push_back(std::make_unique<Child>(helper(
          {"store-crash-worker", store.dir().string(), "shared", "own" + std::to_string(i)})));
    }
    for (auto& k : kids) REQUIRE(k->expect_line("READY"));
    // Kill each worker after a random number of its acknowledgements (0..60): somewhere in the
    // middle of a write, at a moment no one chose.
    for (int i = 0; i < workers; ++i) {
      const int acks = std::uniform_int_distribution<int>(0, 60)(rng);
      for (int a = 0; a < acks; ++a) {
        auto line = kids[static_cast<std::size_t>(i)]->read_line();
        REQUIRE(line);
        (*line == "S" ? acked_shared : acked_own[static_cast<std::size_t>(i)]) += 1;
      }
      kids[static_cast<std::size_t>(i)]->kill(SIGKILL);
    }
    for (int i = 0; i < workers; ++i) {
      auto& kid = *kids[static_cast<std::size_t>(i)];
      REQUIRE(kid.wait() == 128 + SIGKILL);
      // Acknowledgements already in the pipe count too.
      while (auto line = kid.read_line()) {
        (*line == "S" ? acked_shared : acked_own[static_cast<std::size_t>(i)]) += 1;
      }
    }
    killed_total += workers;

    // Every key file parses; each count is at least what was acknowledged and at most that plus
    // one write per killed worker (done, not yet acknowledged).
    for (const auto& key : store.keys()) REQUIRE_NOTHROW(store.get(key));
    const long shared = store.get("shared").value_or(0).get<long>();
    REQUIRE(shared >= acked_shared);
    REQUIRE(shared <= acked_shared + killed_total);
    for (int i = 0; i < workers; ++i) {
      const long own = store.get("own" + std::to_string(i)).value_or(0).get<long>();
      REQUIRE(own >= acked_own[static_cast<std::size_t>(i)]);
      REQUIRE(own <= acked_own[static_cast<std::size_t>(i)] + 1);
    }
    // Make the acknowledged counts exact again for the next round's bounds.
    acked_shared = shared;
    for (int i = 0; i < workers; ++i) {
      acked_own[static_cast<std::size_t>(i)] =
          store.get("own" + std::to_string(i)).value_or(0).get<long>();
    }
    killed_total = 0;

    // verify finds only what repair fixes; after repair, log and store agree.
    auto findings = store.verify();
    for (const auto& f : findings) {
      INFO(describe(findings));
      ++seen_kinds[lockdb::finding_kind_name(f.kind)];
      // A kill in the middle of a log append (a record across a page boundary) leaves a torn
      // line, with its key disagreeing with the log: the repair record marks it as seen.
      REQUIRE((f.kind == lockdb::Finding::Kind::unlogged_change ||
               f.kind == lockdb::Finding::Kind::missing_file ||
               f.kind == lockdb::Finding::Kind::orphan_temp ||
               f.kind == lockdb::Finding::Kind::torn_log_line));
    }
    auto fixed = store.repair();
    REQUIRE(fixed.size() == findings.size());
    auto after = store.verify();
    INFO(describe(after));
    REQUIRE(after.empty());
    for (const auto& key : store.keys()) {
      auto records = records_of(store, key);
      REQUIRE(!records.empty());
      REQUIRE(records.back().version == store.entry(key)->version);
      REQUIRE(records.back().value == store.get(key));
    }
    REQUIRE(temp_files(store.dir()).empty());
  }
  // Report what the kills produced (informational: depends on timing).
  for (const auto& [kind, n] : seen_kinds) WARN(kind << ": " << n);
}

TEST_CASE("the seed's Python atomic_json_update and Store::increment share a key file",
          "[store][concurrency]") {
  const std::string python = lockdb::test::python_with_filelock();
  if (python.empty()) {
    WARN("no python3 with filelock: skipped");
    return;
  }
  TempDir tmp;
  Store store(tmp / "db");
  store.put("counter", 0);  // the store creates the key; Python then writes around it
  const fs::path script = tmp / "seed_increment.py";
  // The seed's atomic_json_update, verbatim. filelock polls every 50 ms while a lock is busy;
  // FileLock is rebound to poll every 1 ms so that both sides really interleave (same lock,
  // same files).
  lockdb::test::write_text(script, std::string(lockdb::test::kSeedAtomicJsonUpdate) + R"PY(
import filelock

class FileLock(filelock.FileLock):
    def acquire(self, timeout=None, poll_interval=0.001, **kwargs):
        return super().acquire(timeout=timeout, poll_interval=poll_interval, **kwargs)

path, n = sys.argv[1], int(sys.argv[2])
print("READY", flush=True)
sys.stdin.readline()
for _ in range(n):
    atomic_json_update(path, lambda v: v + 1)
print("DONE", flush=True)
)PY");
  const int py_n = 400 / LOCKDB_STRESS_DIVISOR, procs = 2, store_n = 1500 / LOCKDB_STRESS_DIVISOR;
  Child py({python, script.string(), store.file_path("counter").string(), std::to_string(py_n)});
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < procs; ++i) {
    kids.push_back(std::make_unique<Child>(
        helper({"store-increment", store.dir().string(), "counter", std::to_string(store_n)})));
  }
  REQUIRE(py.expect_line("READY"));
  for (auto& k : kids) REQUIRE(k->expect_line("READY"));
  py.write_line("go");
  for (auto& k : kids) k->write_line("go");
  REQUIRE(py.expect_line("DONE"));
  REQUIRE(py.wait() == 0);
  for (auto& k : kids) REQUIRE(k->wait() == 0);
  // One more logged write after all others: Python's writes then lie between logged ones even
  // when the store's processes finished first (filelock polls, and may only get the lock then).
  store.increment("counter");

  // Exact total: nobody's increment was lost.
  REQUIRE(store.get("counter") == py_n + procs * store_n + 1);

  // The log holds the store's writes; every Python write shows as a gap in the chain. Each gap
  // spans the Python increments between two logged values, so together they count exactly the
  // Python writes.
  auto records = records_of(store, "counter");
  REQUIRE(records.size() == static_cast<std::size_t>(2 + procs * store_n));
  long python_seen = 0;
  std::size_t gaps = 0;
  for (std::size_t i = 1; i < records.size(); ++i) {
    if (records[i].prev_version != records[i - 1].version) {
      ++gaps;
      python_seen += (records[i].value->get<long>() - 1) - records[i - 1].value->get<long>();
    } else {
      REQUIRE(records[i].value->get<long>() == records[i - 1].value->get<long>() + 1);
    }
  }
  REQUIRE(python_seen == py_n);
  REQUIRE(gaps >= 1);

  auto findings = store.verify();
  INFO(describe(findings));
  std::size_t unlogged = 0;
  for (const auto& f : findings) {
    REQUIRE(f.kind == lockdb::Finding::Kind::unlogged_change);
    REQUIRE(f.key == "counter");
    ++unlogged;
  }
  REQUIRE(unlogged == gaps);
  REQUIRE(store.repair().size() == unlogged);
  REQUIRE(store.verify().empty());
}

// ---------------------------------------------------------------------------------------------
// Examples

#ifdef LOCKDB_EXAMPLE_WORKER_COUNTERS
TEST_CASE("example: worker_counters", "[store][examples]") {
  TempDir tmp;
  auto r = lockdb::test::run({LOCKDB_EXAMPLE_WORKER_COUNTERS, (tmp / "db").string(), "4", "25"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("jobs_done = 100 (expected 100)"));
  REQUIRE_THAT(r.out, Catch::Contains("history of \"jobs_done\": 100 records"));
  Store store(tmp / "db");
  REQUIRE(store.get("jobs_done") == 100);
  REQUIRE(store.verify().empty());
}
#endif

#ifdef LOCKDB_EXAMPLE_HELLO_STORE
TEST_CASE("example: hello_store, the README's first program", "[store][examples]") {
  TempDir tmp;
  auto r = lockdb::test::run({LOCKDB_EXAMPLE_HELLO_STORE, (tmp / "db").string()});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Catch::StartsWith("jobs_done = 4000\n"));
  REQUIRE_THAT(r.out, Catch::Contains(" put by pid "));
  Store store(tmp / "db");
  REQUIRE(store.get("jobs_done") == 4000);
  REQUIRE(store.verify().empty());
}
#endif

#ifdef LOCKDB_EXAMPLE_SHARED_CONFIG
TEST_CASE("example: shared_config", "[store][examples]") {
  TempDir tmp;
  auto r = lockdb::test::run({LOCKDB_EXAMPLE_SHARED_CONFIG, (tmp / "db").string(), "4"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  Store store(tmp / "db");
  auto config = store.get("config").value();
  REQUIRE(config["members"].size() == 4);
  REQUIRE(config["revision"] == 4);
  REQUIRE_THAT(r.out, Catch::Contains("4 processes joined"));
}
#endif

#ifdef LOCKDB_EXAMPLE_AUDIT_TRAIL
TEST_CASE("example: audit_trail", "[store][examples]") {
  TempDir tmp;
  auto r = lockdb::test::run({LOCKDB_EXAMPLE_AUDIT_TRAIL, (tmp / "db").string()});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("put"));
  REQUIRE_THAT(r.out, Catch::Contains("erase"));
  REQUIRE_THAT(r.out, Catch::Contains("unlogged change"));
}
#endif

// ---- store format 2 ----

TEST_CASE("format 2 spreads keys that differ only at the end over every shard", "[store]") {
  namespace format = lockdb::detail::store_format;
  const std::vector<std::pair<std::string, std::string>> families = {
      {"k", ""}, {"worker-", ""}, {"job/", ""}, {"user:", ""}};
  const int n = 10000;
  for (const auto& [prefix, suffix] : families) {
    CAPTURE(prefix);
    std::map<std::string, int> per_shard;
    for (int i = 0; i < n; ++i) ++per_shard[format::shard_of(prefix + std::to_string(i) + suffix)];
    int most = 0;
    for (const auto& [shard, count] : per_shard) most = std::max(most, count);
    CHECK(per_shard.size() >= 250);
    CHECK(most <= 2 * n / 256);  // the mean is 39
  }
  // Format 1 (plain FNV-1a's top byte) kept them in a few directories: k0..k127 in 4.
  std::set<std::string> old_shards;
  for (int i = 0; i < 128; ++i) old_shards.insert(format::shard_of("k" + std::to_string(i), 1));
  CHECK(old_shards.size() == 4);

  // The store puts each key file in its format-2 shard.
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k7", 7);
  REQUIRE(store.file_path("k7").parent_path().filename() == format::shard_of("k7"));
  REQUIRE(fs::exists(store.file_path("k7")));
}

TEST_CASE("a key file's final newline is no change: an editor's save keeps the version",
          "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  const std::string version = store.put("cfg", json{{"workers", 4}});
  const fs::path file = store.file_path("cfg");
  const std::string text = lockdb::test::read_text(file);
  REQUIRE(text == "{\n  \"workers\": 4\n}\n");
  // Saved without the newline, then with it again: the same version, nothing for verify.
  lockdb::test::write_text(file, text.substr(0, text.size() - 1));
  REQUIRE(store.entry("cfg")->version == version);
  REQUIRE(store.verify().empty());
  lockdb::test::write_text(file, text);
  REQUIRE(store.entry("cfg")->version == version);
  REQUIRE(store.verify().empty());
  // A real edit is a change.
  lockdb::test::write_text(file, "{\"workers\": 5}\n");
  REQUIRE(store.entry("cfg")->version != version);
  auto findings = store.verify();
  REQUIRE(findings.size() == 1);
  REQUIRE(findings[0].kind == lockdb::Finding::Kind::unlogged_change);
  // An increment of a file an editor left without the newline reads it all the same.
  fs::create_directories(store.file_path("n").parent_path());
  lockdb::test::write_text(store.file_path("n"), "41");
  REQUIRE(store.increment("n") == 42);
  REQUIRE(lockdb::test::read_text(store.file_path("n")) == "42\n");
}

namespace {

// The lock files beneath keys/ (key locks: "<name>.json.lock"), as paths relative to keys/.
std::set<std::string> key_lock_files(const Store& store) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(store.dir() / "keys")) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.ends_with(".json.lock")) {
      out.insert(e.path().lexically_relative(store.dir() / "keys").string());
    }
  }
  return out;
}

std::set<std::string> lock_files_of_live_keys(const Store& store) {
  std::set<std::string> out;
  for (const auto& key : store.keys()) {
    out.insert(fs::path(store.file_path(key).string() + ".lock")
                   .lexically_relative(store.dir() / "keys")
                   .string());
  }
  return out;
}

}  // namespace

TEST_CASE("4 processes erase, re-create and increment keys: never two inside one key's lock",
          "[store][concurrency][stress]") {
  TempDir tmp;
  Store store(tmp / "db");
  const fs::path inside = tmp / "inside";
  fs::create_directory(inside);
  const int procs = 4, n = 400 / LOCKDB_STRESS_DIVISOR;
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < procs; ++i) {
    kids.push_back(std::make_unique<Child>(
        helper({"store-erase-churn", store.dir().string(), std::to_string(n), std::to_string(i + 1),
                inside.string()})));
  }
  for (auto& k : kids) REQUIRE(k->expect_line("READY"));
  for (auto& k : kids) k->write_line("go");
  for (auto& k : kids) REQUIRE(k->expect_line("DONE"));
  for (auto& k : kids) REQUIRE(k->wait() == 0);

  // Every change of a key follows the one before it in the log (none lost to a second holder),
  // and the key's value is its last logged one.
  for (const std::string key : {"e0", "e1", "e2", "e3"}) {
    CAPTURE(key);
    std::optional<std::string> last;
    std::optional<json> value;
    for (const auto& r : records_of(store, key)) {
      REQUIRE(r.prev_version == last);
      last = r.version;
      value = r.value;
      if (r.op == "update") REQUIRE(r.value.has_value());
    }
    REQUIRE(store.get(key) == (last ? value : std::nullopt));
  }
  // Lock files: exactly those of the live keys.
  REQUIRE(key_lock_files(store) == lock_files_of_live_keys(store));
  REQUIRE(store.verify().empty());
}

TEST_CASE("erasing a key removes its lock file, repair removes one a crash left", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("a", 1);
  store.put("b", 2);
  const fs::path lock_a = store.file_path("a").string() + ".lock";
  REQUIRE(fs::exists(lock_a));
  REQUIRE(store.erase("a"));
  REQUIRE_FALSE(fs::exists(lock_a));
  // Lock files of keys that never got a value: an erase of a missing key, a failed update, a
  // lost compare-and-put, an update_many that leaves a key out.
  REQUIRE_FALSE(store.erase("never"));
  REQUIRE_THROWS(store.update("thrown", [](json&) { throw std::runtime_error("no"); }));
  REQUIRE_FALSE(store.compare_and_put("cas", std::string("0000000000000000"), 1));
  store.update_many({"b", "left-out"}, [](std::map<std::string, json>& v) { v.erase("b"); });
  REQUIRE(key_lock_files(store).empty());
  // The same key again: a new lock file, and writes work.
  REQUIRE(store.increment("a") == 1);
  REQUIRE(fs::exists(lock_a));
  REQUIRE(key_lock_files(store) == lock_files_of_live_keys(store));

  // A lock file without its key (a crash between the erase and the removal) goes at repair; one
  // holding a SoftFileLock marker is in use and stays.
  const fs::path orphan = store.file_path("orphan").string() + ".lock";
  const fs::path marked = store.file_path("marked").string() + ".lock";
  fs::create_directories(orphan.parent_path());
  fs::create_directories(marked.parent_path());
  lockdb::test::write_text(orphan, "");
  lockdb::test::write_text(marked, "{\"pid\": 1}");
  REQUIRE(store.verify().empty());  // not a finding: it costs an inode, nothing else
  store.repair();
  REQUIRE_FALSE(fs::exists(orphan));
  REQUIRE(fs::exists(marked));
  REQUIRE(store.get("a") == 1);
}

TEST_CASE("a format-1 store made by lockdb 1 is read and written as it is", "[store]") {
  TempDir tmp;
  auto untar =
      lockdb::test::run({"tar", "-xzf", std::string(LOCKDB_TEST_FIXTURES) + "/format1-store.tar.gz",
                         "-C", tmp.path().string()});
  INFO(untar.err);
  REQUIRE(untar.code == 0);
  const fs::path dir = tmp / "store";
  Store store(dir);
  const std::string long_key = "long-" + std::string(300, 'x');
  const std::vector<std::string> want_keys = {
      "Config", "config", "counter", "job/7", "k0", "k1", "k2",     "k3",
      "k4",     "k5",     "k6",      "k7",    "k8", "k9", long_key, "user:\xc3\xbc"};
  REQUIRE(store.keys() == want_keys);
  REQUIRE(store.get("config") == json{{"name", "lockdb"}, {"workers", 5}, {"tags", {"a", "b"}}});
  REQUIRE(store.get("counter") == 3);
  REQUIRE(store.get("Config") == "upper");
  REQUIRE(store.get("job/7") == json{{"state", "done"}});
  REQUIRE(store.get(long_key) == json{1, 2, 3});
  REQUIRE(store.get("user:\xc3\xbc") == "unicode");
  REQUIRE_FALSE(store.contains("gone"));
  REQUIRE(records_of(store, "config").size() == 2);
  REQUIRE(store.verify().empty());

  // Format 1 stays: plain FNV-1a shards (k0..k9 share one), no final newline, lock files kept
  // (older lockdb versions may write it too, and they never check for a removed lock file).
  namespace format = lockdb::detail::store_format;
  REQUIRE(store.increment("counter") == 4);
  store.put("k10", 10);
  REQUIRE(store.file_path("k9").parent_path() == store.file_path("k0").parent_path());
  REQUIRE(store.file_path("k10").parent_path().filename() == format::shard_of("k10", 1));
  REQUIRE(lockdb::test::read_text(store.file_path("counter")) == "4");
  REQUIRE(store.erase("k0"));
  REQUIRE(fs::exists(store.file_path("k0").string() + ".lock"));
  REQUIRE(json::parse(lockdb::test::read_text(dir / "lockdb-store.json"))["version"] == 1);
  REQUIRE(records_of(store, "counter").size() == 4);
  REQUIRE(store.verify().empty());

  // rebuild_store makes a format-2 store of it.
  lockdb::rebuild_store(dir, tmp / "new");
  Store rebuilt(tmp / "new");
  REQUIRE(json::parse(lockdb::test::read_text(tmp / "new" / "lockdb-store.json"))["version"] == 2);
  REQUIRE(rebuilt.get("counter") == 4);
  REQUIRE(rebuilt.get(long_key) == json{1, 2, 3});
  REQUIRE(rebuilt.file_path("k10").parent_path().filename() == format::shard_of("k10"));
}
