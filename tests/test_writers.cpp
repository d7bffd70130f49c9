// Crashed writers and what they leave, verify while writers run, and errors that keep their
// cause: temp files of killed writers, findings that hold still and say what to do, errno kept
// through wrapping, a failed close().
#include <lockdb/files.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <csignal>

#include <sys/wait.h>

#include "os.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using lockdb::Store;
using lockdb::test::Child;
using lockdb::test::describe;
using lockdb::test::TempDir;
using nlohmann::json;

namespace {

// The names in `dir` that start with `prefix` and end in ".tmp".
std::set<std::string> temps_of(const fs::path& dir, const std::string& prefix) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(prefix) && name.ends_with(".tmp")) out.insert(name);
  }
  return out;
}

std::vector<lockdb::Record> records_of(const Store& store, const std::string& key) {
  lockdb::Query q;
  q.key = key;
  return lockdb::History(store.dir()).records(q);
}

}  // namespace

TEST_CASE("the next write of a file removes the temp files of killed writers, never a live one's",
          "[files]") {
  TempDir dir;
  const fs::path path = dir / "state.json";
  lockdb::test::write_text(path, "{\"n\": 0}");  // no lock file yet: nfs_safe_write's is soft
  const std::string prefix = ".state.json.";

  // Writers killed between writing their temp file and renaming it: two reaped, one a zombie.
  std::vector<std::unique_ptr<Child>> killed;
  for (int i = 0; i < 3; ++i) {
    killed.push_back(std::make_unique<Child>(std::vector<std::string>{
        lockdb::test::helper_path(), "stage-temp", path.string(), "{\"n\": \"dead\"}"}));
    REQUIRE(killed.back()->expect_line("STAGED"));
  }
  const auto dead_temps = temps_of(dir.path(), prefix);
  REQUIRE(dead_temps.size() == 3);
  Child live({lockdb::test::helper_path(), "stage-temp", path.string(), "{\"n\": \"live\"}"});
  REQUIRE(live.expect_line("STAGED"));
  std::set<std::string> live_temp;
  for (const auto& name : temps_of(dir.path(), prefix)) {
    if (!dead_temps.count(name)) live_temp.insert(name);
  }
  REQUIRE(live_temp.size() == 1);
  for (auto& child : killed) child->kill(SIGKILL);
  REQUIRE(killed[0]->wait() == 128 + SIGKILL);
  REQUIRE(killed[1]->wait() == 128 + SIGKILL);
  siginfo_t info{};  // the third stays unreaped: a zombie holds nothing either
  REQUIRE(waitid(P_PID, static_cast<id_t>(killed[2]->pid()), &info, WEXITED | WNOWAIT) == 0);
  // A temp file whose writer cannot be told (an older name, or someone else's) is left alone.
  const std::string unknown = prefix + "0123456789ab.tmp";
  lockdb::test::write_text(dir / unknown, "someone's");

  SECTION("atomic_write") { lockdb::atomic_write(path, "{\"n\": 1}"); }
  SECTION("atomic_json_update") {
    lockdb::atomic_json_update(path, [](json& d) { d["n"] = 1; });
  }
  SECTION("nfs_safe_write") { lockdb::nfs_safe_write(path, "{\"n\": 1}"); }
  REQUIRE(json::parse(lockdb::test::read_text(path)) == json{{"n", 1}});
  std::set<std::string> left = live_temp;
  left.insert(unknown);
  REQUIRE(temps_of(dir.path(), prefix) == left);

  // The live writer finishes its write undisturbed.
  live.write_line("commit");
  REQUIRE(live.expect_line("COMMITTED"));
  REQUIRE(json::parse(lockdb::test::read_text(path)) == json{{"n", "live"}});
  REQUIRE(temps_of(dir.path(), prefix) == std::set<std::string>{unknown});
}

TEST_CASE("verify while writer processes run reports nothing", "[store]") {
  TempDir tmp;
  const fs::path db = tmp / "db";
  { Store create(db); }
  std::vector<std::unique_ptr<Child>> writers;
  for (const char* prefix : {"a", "b", "c"}) {
    writers.push_back(std::make_unique<Child>(std::vector<std::string>{
        lockdb::test::helper_path(), "store-churn", db.string(), prefix, "4"}));
    REQUIRE(writers.back()->expect_line("READY"));
  }
  Store store(db);
  for (int round = 0; round < 25; ++round) {
    INFO("round " << round);
    auto findings = store.verify();
    INFO(describe(findings));
    REQUIRE(findings.empty());
  }
  for (auto& w : writers) w->write_line("stop");
  for (auto& w : writers) {
    auto done = w->read_line();
    REQUIRE(done.has_value());
    REQUIRE(done->starts_with("DONE "));
    REQUIRE(std::stol(done->substr(5)) > 0);
    REQUIRE(w->wait() == 0);
  }
  auto findings = store.verify();
  INFO(describe(findings));
  REQUIRE(findings.empty());
}

TEST_CASE("a garbage log line: repair acknowledges it, compact clears it", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  {
    std::ofstream log(store.dir() / "log" / "000001.jsonl", std::ios::binary | std::ios::app);
    log << "not a record\n";
  }
  store.put("k", 2);
  auto findings = store.verify();
  INFO(describe(findings));
  REQUIRE(findings.size() == 1);
  REQUIRE(findings[0].kind == lockdb::Finding::Kind::torn_log_line);
  REQUIRE_THAT(findings[0].detail, Catch::Contains("'lockdb repair' acknowledges") &&
                                       Catch::Contains("lockdb compact"));
  // repair logs nothing here (no key disagrees): its seen marker acknowledges the line.
  REQUIRE(store.repair().size() == 1);
  REQUIRE(store.verify().empty());
  // compact rewrites the log without it (and without the marker).
  lockdb::compact_history_keep_last(store.dir(), 1000);
  REQUIRE(store.verify().empty());
  REQUIRE(records_of(store, "k").size() == 2);
  for (const auto& path : lockdb::History(store.dir()).segments()) {
    const std::string text = lockdb::test::read_text(path);
    REQUIRE(text.find("not a record") == std::string::npos);
    REQUIRE(text.find("\"seen\"") == std::string::npos);
  }
}

TEST_CASE("a gap left by a crashed writer is not blamed on a write around the store", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  // A writer that crashed after its rename, before its record: the file is one change ahead.
  lockdb::test::write_text(store.file_path("k"), "2");
  store.put("k", 3);  // its record starts from the unlogged version: a gap
  auto findings = store.verify();
  INFO(describe(findings));
  REQUIRE(findings.size() == 1);
  REQUIRE(findings[0].kind == lockdb::Finding::Kind::unlogged_change);
  REQUIRE_THAT(findings[0].detail, Catch::Contains("a writer that crashed"));
  REQUIRE_THAT(findings[0].detail, !Catch::Contains("the file was changed around the store"));
}

TEST_CASE("an error that wraps another keeps its errno", "[store]") {
  TempDir tmp;
  Store store(tmp / "db");
  store.put("k", 1);
  store.put("a", 1);
  store.put("b", 1);
  // The key file is written, its log record's append fails: taken back, errno kept.
  lockdb::os::fail_nth(lockdb::os::Op::write, 2, ENOSPC);
  try {
    store.put("k", 2);
    FAIL("the put succeeded");
  } catch (const lockdb::Error& e) {
    REQUIRE_THAT(std::string(e.what()), Catch::Contains("taken back"));
    REQUIRE(e.sys_errno() == ENOSPC);
  }
  lockdb::os::clear_faults();
  // update_many: the append of its records fails (writes: temp a, temp b, intent, records).
  lockdb::os::fail_nth(lockdb::os::Op::write, 4, ENOSPC);
  try {
    store.update_many({"a", "b"}, [](std::map<std::string, json>& m) {
      m["a"] = 2;
      m["b"] = 2;
    });
    FAIL("update_many succeeded");
  } catch (const lockdb::Error& e) {
    REQUIRE_THAT(std::string(e.what()), Catch::Contains("taken back"));
    REQUIRE(e.sys_errno() == ENOSPC);
  }
  lockdb::os::clear_faults();
  REQUIRE(store.get("k") == 1);
  REQUIRE(store.get("a") == 1);
  REQUIRE(store.get("b") == 1);
  REQUIRE(store.verify().empty());
}

TEST_CASE("a failed close of a written temp file fails the write", "[files]") {
  TempDir tmp;
  SECTION("atomic_write") {
    const fs::path path = tmp / "v.txt";
    lockdb::atomic_write(path, "old");
    lockdb::os::fail_nth(lockdb::os::Op::close, 1, EIO);
    try {
      lockdb::atomic_write(path, "new");
      FAIL("the write succeeded");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.sys_errno() == EIO);
      REQUIRE_THAT(std::string(e.what()),
                   Catch::Contains("cannot close") && Catch::Contains(path.string()));
    }
    lockdb::os::clear_faults();
    REQUIRE(lockdb::test::read_text(path) == "old");
    REQUIRE(temps_of(tmp.path(), ".v.txt.").empty());
  }
  SECTION("a store write") {
    Store store(tmp / "db");
    store.put("k", 1);
    lockdb::os::fail_nth(lockdb::os::Op::close, 1, EIO);
    try {
      store.put("k", 2);
      FAIL("the put succeeded");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.sys_errno() == EIO);
      REQUIRE_THAT(std::string(e.what()),
                   Catch::Contains("cannot close") && Catch::Contains("nothing was written"));
    }
    lockdb::os::clear_faults();
    REQUIRE(store.get("k") == 1);
    REQUIRE(records_of(store, "k").size() == 1);
    REQUIRE(store.verify().empty());
  }
}
