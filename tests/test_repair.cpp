// repair settles what verify finds: one table of every way the other tests damage a store (files
// changed around it, crashed writers' leftovers, bytes written into the log, stale soft locks,
// files planted in it), each made in a fresh store; then repair, then verify. Through the API
// (verify() is then empty) and through the lockdb command (verify then exits 0). The only
// findings repair leaves are those it must not touch, because they may be someone's: a link or
// special file planted where the store keeps its own (planted_file) and a file whose name is no
// key's (bad_file_name). For those the command's hint does not say to run repair.
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "os.hpp"
#include "replace.hpp"
#include "support.hpp"

using lockdb::Store;
using lockdb::test::Child;
using lockdb::test::describe;
using lockdb::test::RunResult;
using lockdb::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;
using Kinds = std::multiset<std::string>;

namespace {

RunResult cli(std::vector<std::string> args) {
  args.insert(args.begin(), LOCKDB_CLI);
  return lockdb::test::run(args);
}

Kinds kinds(const std::vector<lockdb::Finding>& findings) {
  Kinds out;
  for (const auto& f : findings) out.insert(lockdb::finding_kind_name(f.kind));
  return out;
}

fs::path segment_of(const Store& store) { return store.dir() / "log" / "000001.jsonl"; }

void append_to_log(const Store& store, const std::string& bytes) {
  std::ofstream(segment_of(store), std::ios::binary | std::ios::app) << bytes;
}

// A record line as the store writes it, for key "k", with `value` as the value's text.
std::string record_line(const std::string& value, const std::string& key = "k") {
  return R"({"time":"2026-12-01T00:00:00.000000Z","key":")" + key +
         R"(","op":"put","prev":null,"version":null,"pid":1,"host":"h","value":)" + value + "}";
}

// The marker of a SoftFileLock whose holder died, written into `lock` (a lock file the store
// made, as nfs_safe_write or Python's SoftFileLock would have left it).
void leave_dead_soft_marker(const fs::path& lock) {
  const fs::path scratch = lock.parent_path() / "scratch.lock";
  Child soft({lockdb::test::helper_path(), "hold", "soft", scratch.string()});
  REQUIRE(soft.expect_line("LOCKED"));
  soft.kill(SIGKILL);
  REQUIRE(soft.wait() == 128 + SIGKILL);
  lockdb::test::write_text(lock, lockdb::test::read_text(scratch));
  fs::remove(scratch);
}

fs::path lock_of(const Store& store, const std::string& key) {
  fs::path lock = store.file_path(key);
  lock += ".lock";
  return lock;
}

struct Case {
  const char* name;
  // Damages the store, which holds "k" = 1 and "other" = 1.
  std::function<void(Store&)> damage;
  Kinds found;    // what verify() reports then
  Kinds remains;  // what it still reports after repair(): only what repair must leave alone
  lockdb::StoreOptions options{};
  // An update_many a crash left unfinished is completed before anything else, by repair() (which
  // then reports nothing of it) and by opening a Store: the command, which opens the store anew,
  // finds nothing.
  bool unfinished_update = false;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // ---- key files changed around the store (test_store, test_cli) ----
      {"a key file rewritten around the store",
       [](Store& s) { lockdb::test::write_text(s.file_path("k"), "2"); },
       {"unlogged_change"},
       {}},
      {"a key file removed around the store",
       [](Store& s) { fs::remove(s.file_path("k")); },
       {"missing_file"},
       {}},
      {"a key file created around the store, never logged",
       [](Store& s) {
         const fs::path file = s.file_path("created");
         fs::create_directories(file.parent_path());
         lockdb::test::write_text(file, "\"hello\"");
       },
       {"missing_file"},
       {}},
      {"a change around the store, then a logged write (a gap in the chain)",
       [](Store& s) {
         lockdb::test::write_text(s.file_path("k"), "5");
         s.increment("k");
       },
       {"unlogged_change"},
       {}},
      {"a gap in the records a compaction kept",
       [](Store& s) {
         for (int i = 0; i < 5; ++i) s.put("k", i);
         lockdb::test::write_text(s.file_path("k"), "40");
         s.increment("k");
         REQUIRE(lockdb::compact_history_keep_last(s.dir(), 3) > 0);
       },
       {"unlogged_change"},
       {}},
      {"a key file that does not parse",
       [](Store& s) { lockdb::test::write_text(s.file_path("k"), "{oops"); },
       {"corrupt_key_file"},
       {}},
      {"a key file left empty (power_loss_unsafe and a power cut)",
       [](Store& s) { lockdb::test::write_text(s.file_path("k"), ""); },
       {"corrupt_key_file"},
       {}},
      {"a key file nested deeper than 512 levels",
       [](Store& s) {
         lockdb::test::write_text(s.file_path("k"), std::string(513, '[') + std::string(513, ']'));
       },
       {"corrupt_key_file"},
       {}},
      {"a corrupt key file the log never had",
       [](Store& s) {
         const fs::path file = s.file_path("created");
         fs::create_directories(file.parent_path());
         lockdb::test::write_text(file, "{\"half\": ");
       },
       {"corrupt_key_file"},
       {}},
      // ---- crashed writers' leftovers (test_store, test_writers) ----
      {"an orphaned temp file of a store writer",
       [](Store& s) {
         const fs::path file = s.file_path("k");
         lockdb::test::write_text(file.parent_path() / ".k.json.0123456789ab.tmp", "\"half");
       },
       {"orphan_temp"},
       {}},
      {"an orphaned temp file of the seed's Python helper",
       [](Store& s) {
         lockdb::test::write_text(s.file_path("k").parent_path() / "k.tmp4242", "\"hal");
       },
       {"orphan_temp"},
       {}},
      {"the old key file left under a temp name (the unlink after a swap failed)",
       [](Store& s) {
         if (!lockdb::detail::swap_in_pays(lockdb::os::fs_magic(s.dir()))) {
           // No swap on this filesystem: the same leftover, made by hand.
           lockdb::test::write_text(s.file_path("k").parent_path() / ".k.json.00000000abcd.tmp",
                                    "1");
           return;
         }
         lockdb::os::fail_nth(lockdb::os::Op::unlink, 1, EIO);
         s.put("k", 2);
         lockdb::os::clear_faults();
       },
       {"orphan_temp"},
       {}},
      {"an update_many cut short after its intent (a failed rename)",
       [](Store& s) {
         lockdb::os::fail_nth(lockdb::os::Op::rename, 3, EIO);
         try {
           s.update_many({"k", "other"}, [](std::map<std::string, json>& m) {
             m["k"] = 2;
             m["other"] = 2;
           });
         } catch (const lockdb::Error&) {
         }
         lockdb::os::clear_faults();
       },
       {"unlogged_change"},
       {},
       {},
       /*unfinished_update=*/true},
      {"a writer killed in the middle of its log append (a torn line, its key ahead)",
       [](Store& s) {
         lockdb::test::write_text(s.file_path("k"), "2");
         append_to_log(s, R"({"time":"2026-12-01T00:00:00.000000Z","key":"k","op":"put","val)");
         s.put("other", 2);
       },
       {"torn_log_line", "unlogged_change"},
       {}},
      // ---- bytes written into the log by another program (test_store, test_history,
      // test_json_io, test_hostile_cli) ----
      {"a line of garbage in the log",
       [](Store& s) { append_to_log(s, "not a record\n"); },
       {"torn_log_line"},
       {}},
      {"a line of garbage in the log, then logged writes",
       [](Store& s) {
         append_to_log(s, "not a record\n");
         s.put("k", 2);
       },
       {"torn_log_line"},
       {}},
      {"a truncated record at the end of the log (no newline)",
       [](Store& s) { append_to_log(s, record_line("2").substr(0, 60)); },
       {"torn_log_line"},
       {}},
      {"a truncated record, then another program's whole record glued onto it",
       [](Store& s) {
         const std::string line = record_line("{\"time\":\"2026\"}");
         append_to_log(s, line.substr(0, line.size() - 10));
         s.put("other", 2);
       },
       {"torn_log_line"},
       {}},
      {"a record nested deeper than 512 levels",
       [](Store& s) {
         append_to_log(s, record_line(std::string(513, '[') + std::string(513, ']')) + "\n");
       },
       {"torn_log_line"},
       {}},
      {"records holding strings that are not UTF-8",
       [](Store& s) {
         append_to_log(s, record_line("\"a\xff\"") + "\n" + record_line("{\"\xcf\xff\":1}") + "\n");
       },
       {"torn_log_line"},
       {}},
      {"a line with a NUL byte after a whole record",
       [](Store& s) { append_to_log(s, record_line("2") + std::string(1, '\0') + "}\n"); },
       {"torn_log_line"},
       {}},
      {"a whole record of another program naming a key longer than 1024 bytes",
       [](Store& s) { append_to_log(s, record_line("7", std::string(1100, 'a')) + "\n"); },
       {"torn_log_line"},
       {}},
      {"a whole record of another program, outside the key's chain",
       [](Store& s) { append_to_log(s, record_line("7") + "\n"); },
       {"unlogged_change", "missing_file"},
       {}},
      // ---- stale soft locks (test_store, test_cli) ----
      {"a stale SoftFileLock marker in a key's lock file",
       [](Store& s) { leave_dead_soft_marker(lock_of(s, "k")); },
       {"stale_marker"},
       {}},
      {"a dead lock breaker's tombstone and moved-aside marker",
       [](Store& s) {
         const fs::path lock = lock_of(s, "k");
         leave_dead_soft_marker(lock);
         const std::string marker = lockdb::test::read_text(lock);
         lockdb::test::write_text(lock.string() + ".break-0123abcd", marker);
         lockdb::test::write_text(lock.string() + ".stale-89abcdef", marker);
       },
       {"stale_marker", "stale_marker", "stale_marker"},
       {}},
      {"a stale SoftFileLock marker in a stripe lock file",
       [](Store& s) { leave_dead_soft_marker(s.dir() / "keys" / "stripe-0.lock"); },
       {"stale_marker"},
       {},
       lockdb::StoreOptions{.lock_stripes = 1}},
      // ---- files planted in the store (test_store, test_hostile_paths, test_hostile_cli):
      // repair leaves them, they may be someone's ----
      {"a symbolic link planted at a key file",
       [](Store& s) {
         const fs::path file = s.file_path("k");
         fs::remove(file);
         fs::create_symlink(s.dir().parent_path() / "outside.json", file);
       },
       {"planted_file", "missing_file"},
       {"planted_file"}},
      {"a hard link planted at a key file",
       [](Store& s) { fs::create_hard_link(s.file_path("k"), s.dir().parent_path() / "link"); },
       {"planted_file"},
       {"planted_file"}},
      {"a FIFO planted at a key file",
       [](Store& s) {
         const fs::path file = s.file_path("k");
         fs::remove(file);
         REQUIRE(::mkfifo(file.c_str(), 0600) == 0);
       },
       {"planted_file", "missing_file"},
       {"planted_file"}},
      {"a symbolic link planted at log/log.lock",
       [](Store& s) {
         const fs::path lock = s.dir() / "log" / "log.lock";
         fs::remove(lock);
         fs::create_symlink(s.dir().parent_path() / "victim", lock);
       },
       {"planted_file"},
       {"planted_file"}},
      {"files under keys/ whose names are no key's, beside a key changed around the store",
       [](Store& s) {
         const fs::path shard = s.dir() / "keys" / "00";
         fs::create_directories(shard);
         lockdb::test::write_text(shard / "Config.json", "1");
         lockdb::test::write_text(shard / "..%2f..%2fx.json", "1");
         lockdb::test::write_text(s.file_path("k"), "2");
       },
       {"bad_file_name", "bad_file_name", "unlogged_change"},
       {"bad_file_name", "bad_file_name"}},
  };
  return all;
}

// A fresh store in `tmp` holding "k" = 1 and "other" = 1, damaged as `c` says.
Store damaged_store(const TempDir& tmp, const Case& c) {
  Store store(tmp / "db", c.options);
  store.put("k", 1);
  store.put("other", 1);
  c.damage(store);
  return store;
}

}  // namespace

TEST_CASE("repair settles every finding but planted files and foreign names", "[repair]") {
  for (const Case& c : cases()) {
    INFO("case: " << c.name);
    TempDir tmp;
    Store store = damaged_store(tmp, c);
    const auto found = store.verify();
    INFO("verify: " << describe(found));
    REQUIRE(kinds(found) == c.found);

    const auto done = store.repair();
    INFO("repair: " << describe(done));
    // One action (or one finding left) per finding.
    REQUIRE(kinds(done) == (c.unfinished_update ? Kinds{} : c.found));
    const auto after = store.verify();
    INFO("verify after repair: " << describe(after));
    REQUIRE(kinds(after) == c.remains);
    // Nothing more to do: a second repair only reports what it leaves alone, and logs nothing.
    const auto log_size = fs::file_size(segment_of(store));
    REQUIRE(kinds(store.repair()) == c.remains);
    REQUIRE(fs::file_size(segment_of(store)) == log_size);
    // Every key still readable through the store takes a write, and the store stays clean.
    if (c.remains.empty()) {
      for (const auto& key : store.keys()) REQUIRE_NOTHROW(store.put(key, 42));
      REQUIRE(store.verify().empty());
    }
  }
}

TEST_CASE("lockdb verify exits 0 after lockdb repair, and names repair only for what it fixes",
          "[repair]") {
  for (const Case& c : cases()) {
    INFO("case: " << c.name);
    TempDir tmp;
    damaged_store(tmp, c);  // closed again: the command opens the store itself
    const std::string s = (tmp / "db").string();
    const Kinds found = c.unfinished_update ? Kinds{} : c.found;
    const std::size_t by_hand = c.remains.size();

    const RunResult before = cli({"verify", s});
    INFO("verify: " << before.out << before.err);
    if (found.empty()) {
      REQUIRE(before.code == 0);
    } else {
      REQUIRE(before.code == 6);
      const std::string n = std::to_string(found.size());
      const std::string hint =
          by_hand == 0 ? "run 'lockdb repair' to fix"
          : by_hand == found.size()
              ? "remove the files that planted_file and bad_file_name findings name (repair "
                "leaves them in place: they may be someone's)"
              : "remove the files that planted_file and bad_file_name findings name (repair "
                "leaves them in place: they may be someone's), then run 'lockdb repair' to fix "
                "the rest";
      REQUIRE(before.err == "lockdb: verify: " + s + ": " + n +
                                (found.size() == 1 ? " finding (" : " findings (") + hint + ")\n");
    }

    const RunResult repair = cli({"repair", s});
    INFO("repair: " << repair.out << repair.err);
    REQUIRE(repair.code == 0);

    const RunResult after = cli({"verify", s});
    INFO("verify after repair: " << after.out << after.err);
    if (c.remains.empty()) {
      REQUIRE(after.code == 0);
      REQUIRE(after.out == "clean: " + s + "\n");
    } else {
      REQUIRE(after.code == 6);
      REQUIRE_THAT(after.err, !Catch::Contains("run 'lockdb repair'"));
    }
  }
}
