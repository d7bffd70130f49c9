// update_many is all-or-nothing across crashes: processes transferring amounts between keys are
// SIGKILLed at random points of their updates, and the store stays balanced, with every
// transfer in the log whole and once.
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "os.hpp"
#include "support.hpp"

using namespace lockdb;
using lockdb::test::Child;
using lockdb::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int kKeys = 8;
constexpr std::int64_t kStart = 1000;

std::unique_ptr<Child> start_transferrer(const TempDir& dir, unsigned seed) {
  auto child = std::make_unique<Child>(
      std::vector<std::string>{lockdb::test::helper_path(), "transfer", dir.path().string(),
                               std::to_string(kKeys), std::to_string(seed)});
  REQUIRE(child->expect_line("READY"));
  return child;
}

}  // namespace

TEST_CASE(
    "4 processes transferring with update_many under a SIGKILL storm keep the sum and log "
    "every transfer whole and once",
    "[crash_many][stress]") {
  TempDir dir;
  {
    Store store(dir.path());
    for (int i = 0; i < kKeys; ++i) {
      store.put("k" + std::to_string(i), json{{"balance", kStart}, {"last", "start"}});
    }
  }
  const int kills = 240 / LOCKDB_STRESS_DIVISOR;
  std::mt19937 rng(12345);
  unsigned seed = 1;
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < 4; ++i) kids.push_back(start_transferrer(dir, seed++));
  std::set<std::string> acknowledged;
  for (int k = 0; k < kills; ++k) {
    auto& kid = kids[rng() % kids.size()];
    // Let it finish a few transfers (hand-shake: its acknowledgements), then kill it wherever
    // it is in its next one.
    const int wait_for = 1 + static_cast<int>(rng() % 4);
    for (int t = 0; t < wait_for; ++t) {
      auto line = kid->read_line();
      REQUIRE(line);
      INFO("child said: " << *line);
      REQUIRE(line->starts_with("T "));
      acknowledged.insert(line->substr(2));
    }
    kid->kill(SIGKILL);
    REQUIRE(kid->wait() == 128 + SIGKILL);
    kid = start_transferrer(dir, seed++);
  }
  for (auto& kid : kids) {
    kid->kill(SIGKILL);
    REQUIRE(kid->wait() == 128 + SIGKILL);
  }

  Store store(dir.path());  // recovers what the last kills left unfinished
  std::int64_t sum = 0;
  std::map<std::string, json> now;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "k" + std::to_string(i);
    auto v = store.get(key);
    REQUIRE(v);
    sum += v->at("balance").get<std::int64_t>();
    now[key] = *v;
  }
  CHECK(sum == kKeys * kStart);

  // In the log: each transfer has exactly two records (both keys) or none; every acknowledged
  // one has two; each key's last record holds its value.
  History history(dir.path());
  std::map<std::string, int> records_of;
  std::map<std::string, json> last;
  const std::size_t torn = history.for_each({}, [&](const Record& r) {
    if (r.op == "update_many") records_of[r.value->at("last").get<std::string>()]++;
    last[r.key] = r.value ? *r.value : json();
    return true;
  });
  for (const auto& [id, n] : records_of) {
    INFO("transfer " << id);
    CHECK(n == 2);
  }
  for (const auto& id : acknowledged) {
    INFO("acknowledged transfer " << id);
    CHECK(records_of.count(id) == 1);
  }
  CHECK(last == now);
  CHECK(torn == 0);
  for (const auto& f : store.verify()) {
    INFO(finding_kind_name(f.kind) << " " << f.key << ": " << f.detail);
    CHECK((f.kind == Finding::Kind::orphan_temp));  // temp files of killed writers only
  }
  // A write after all that needs no repair.
  store.update_many({"k0", "k1"}, [](std::map<std::string, json>& v) {
    v["k0"]["balance"] = v["k0"]["balance"].get<std::int64_t>() - 1;
    v["k1"]["balance"] = v["k1"]["balance"].get<std::int64_t>() + 1;
  });
  INFO("kills: " << kills << ", acknowledged transfers: " << acknowledged.size());
  CHECK(acknowledged.size() >= static_cast<std::size_t>(kills));
}

TEST_CASE(
    "an update_many that fails after it is decided is completed by the next write, logged once",
    "[crash_many]") {
  TempDir dir;
  Store store(dir.path());
  store.put("a", 1);
  store.put("b", 1);
  // Renames: the intent's directory, then key a, then key b (which fails).
  lockdb::os::fail_nth(lockdb::os::Op::rename, 3, EIO);
  std::string what;
  try {
    store.update_many({"a", "b"}, [](std::map<std::string, json>& m) {
      m["a"] = 2;
      m["b"] = 2;
    });
  } catch (const lockdb::Error& e) {
    what = e.what();
  }
  lockdb::os::clear_faults();
  INFO(what);
  REQUIRE_THAT(what, Catch::Contains("1 of 2") && Catch::Contains("completes it"));
  REQUIRE(store.get("a") == 2);
  REQUIRE(store.get("b") == 1);  // half applied until the next write
  store.put("c", 1);             // recovers first
  CHECK(store.get("b") == 2);
  std::map<std::string, int> records;
  History(dir.path()).for_each({.op = "update_many"}, [&](const Record& r) {
    records[r.key]++;
    return true;
  });
  CHECK(records == std::map<std::string, int>{{"a", 1}, {"b", 1}});
  CHECK(store.verify().empty());
  CHECK(fs::is_empty(dir.path() / "txn"));
}
