// The lockdb command on hostile input, run as a program: a value nested deeper than 512 levels
// is refused from every way in (argument, stdin, import) with exit 2 and nothing written; a log
// line too deep or not UTF-8 is skipped by every command that reads the log, never a crash; links
// planted in a store make the command fail naming them, and nothing outside the store changes.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support.hpp"

namespace fs = std::filesystem;
using lockdb::test::read_text;
using lockdb::test::RunResult;
using lockdb::test::TempDir;

namespace {

RunResult cli(std::vector<std::string> args, const std::string& stdin_text = {}) {
  args.insert(args.begin(), LOCKDB_CLI);
  return lockdb::test::run(args, stdin_text);
}

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// The store `dir` made by the command, holding "k" = 1: its key file's path.
fs::path make_store(const fs::path& dir) {
  REQUIRE(cli({"put", dir.string(), "k", "1", "--create"}).code == 0);
  const RunResult path = cli({"path", dir.string(), "k"});
  REQUIRE(path.code == 0);
  return fs::path(path.out.substr(0, path.out.size() - 1));
}

// A record line as the store writes it, with `value` as the value's text.
std::string record_line(const std::string& value) {
  return R"({"time":"2026-12-01T00:00:00.000000Z","key":"k","op":"put","prev":null,)"
         R"("version":null,"pid":1,"host":"h","value":)" +
         value + "}\n";
}

}  // namespace

TEST_CASE("lockdb refuses a value nested deeper than 512 levels from any input, writing nothing",
          "[cli]") {
  TempDir dir;
  const fs::path store = dir / "db";
  const fs::path key_file = make_store(store);
  const fs::path segment = store / "log" / "000001.jsonl";
  const std::string log_before = read_text(segment);
  const std::string deep = nested(100000);
  const std::string s = store.string();
  struct Case {
    std::vector<std::string> args;
    std::string in;
  };
  const std::vector<Case> cases = {
      {{"put", s, "k", nested(513)}, ""},
      {{"put", s, "k", "-"}, deep},
      {{"put", s, "new", "-"}, deep + "\n"},
      {{"import", s, "--overwrite"}, R"({"key":"k","value":)" + deep + "}\n"},
      {{"import", s}, R"({"key":"new","value":)" + nested(513) + "}\n"},
  };
  for (const auto& c : cases) {
    INFO(c.args[0] << " " << c.args.back() << ", " << c.in.size() << " bytes on stdin");
    const RunResult r = cli(c.args, c.in);
    INFO(r.err);
    REQUIRE(r.code == 2);
    REQUIRE_THAT(r.err, Catch::Contains("the value nests deeper than 512 levels"));
    REQUIRE(read_text(key_file) == "1\n");
    REQUIRE(read_text(segment) == log_before);
    REQUIRE(cli({"keys", s}).out == "k\n");
  }
  // 512 levels are a value like any other.
  REQUIRE(cli({"put", s, "k", "-"}, nested(512)).code == 0);
  REQUIRE(nlohmann::json::parse(cli({"get", s, "k"}).out) == nlohmann::json::parse(nested(512)));
  REQUIRE(cli({"verify", s}).code == 0);
}

TEST_CASE("lockdb commands that read the log skip a line too deep or not UTF-8, never crash",
          "[cli]") {
  TempDir dir;
  const fs::path store = dir / "db";
  (void)make_store(store);
  const std::string s = store.string();
  {
    // A 60,000-level array (120 KB: once accepted by put, then every reader crashed), and a
    // string holding a byte 0xff.
    std::ofstream out(store / "log" / "000001.jsonl", std::ios::binary | std::ios::app);
    out << record_line(nested(60000)) << record_line("\"a\xff\"");
  }
  REQUIRE(cli({"put", s, "k", "2"}).code == 0);
  const auto lines = [](const std::string& text) {
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
  };
  const RunResult log = cli({"log", s});
  INFO(log.err);
  REQUIRE(log.code == 0);
  REQUIRE(lines(log.out) == 2);
  const RunResult history = cli({"history", s, "k"});
  REQUIRE(history.code == 0);
  REQUIRE(lines(history.out) == 2);
  const RunResult verify = cli({"verify", s});
  REQUIRE(verify.code == 6);
  REQUIRE_THAT(verify.out, Catch::StartsWith("torn_log_line") &&
                               Catch::Contains("2 torn or unreadable line(s) in the log"));
  REQUIRE(verify.err == "lockdb: verify: " + s + ": 1 finding (run 'lockdb repair' to fix)\n");
  const RunResult stats = cli({"stats", s});
  REQUIRE(stats.code == 0);
  REQUIRE_THAT(stats.out,
               Catch::Contains("2 records in 1 segment") && Catch::Contains("2 torn lines"));
  REQUIRE(cli({"repair", s}).code == 0);
  REQUIRE(cli({"verify", s}).code == 0);  // acknowledged, still skipped
  REQUIRE(cli({"get", s, "k", "--at", "now"}).out == "2\n");
  REQUIRE(cli({"rebuild", s, (dir / "rebuilt").string()}).code == 0);
  REQUIRE(cli({"get", (dir / "rebuilt").string(), "k"}).out == "2\n");
  REQUIRE(cli({"compact", s, "--keep-last", "1"}).code == 0);
  REQUIRE(cli({"verify", s}).code == 0);
  REQUIRE(lines(cli({"log", s}).out) == 1);
}

TEST_CASE("lockdb fails naming a link planted in a store, nothing outside changes", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "db";
  (void)make_store(store);
  const std::string s = store.string();
  const fs::path outside = dir / "outside";
  fs::create_directories(outside);
  const fs::path victim = outside / "victim";
  lockdb::test::write_text(victim, "precious");
  const auto victim_intact = [&] {
    REQUIRE(read_text(victim) == "precious");
    std::size_t entries = 0;
    for (const auto& e : fs::directory_iterator(outside)) {
      (void)e;
      ++entries;
    }
    REQUIRE(entries == 1);
  };

  SECTION("log/log.lock") {
    const fs::path at = store / "log" / "log.lock";
    fs::remove(at);
    fs::create_symlink(victim, at);
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"put", s, "k", "2"}, {"incr", s, "n"}, {"del", s, "k"}}) {
      const RunResult r = cli(args);
      INFO(args[0] << ": " << r.err);
      REQUIRE(r.code == 2);
      REQUIRE_THAT(r.err, Catch::Contains(at.string() + ": it is a symbolic link"));
    }
    const RunResult verify = cli({"verify", s});
    REQUIRE(verify.code == 6);
    REQUIRE_THAT(verify.out, Catch::Contains("planted_file"));
    victim_intact();
  }
  SECTION("keys/") {
    fs::rename(store / "keys", outside / "keys");
    fs::create_symlink(outside / "keys", store / "keys");
    const RunResult r = cli({"put", s, "k", "2"});
    INFO(r.err);
    REQUIRE(r.code == 2);
    REQUIRE_THAT(r.err, Catch::Contains((store / "keys").string() + ": it is a symbolic link"));
    fs::remove(store / "keys");
    fs::rename(outside / "keys", store / "keys");
    victim_intact();
    REQUIRE(cli({"get", s, "k"}).out == "1\n");
  }
  SECTION("log/, compact") {
    fs::rename(store / "log", outside / "log");
    fs::create_symlink(outside / "log", store / "log");
    const std::string log_before = read_text(outside / "log" / "000001.jsonl");
    const RunResult r = cli({"compact", s, "--keep-last", "1"});
    INFO(r.err);
    REQUIRE(r.code == 2);
    REQUIRE_THAT(r.err, Catch::Contains((store / "log").string() + ": it is a symbolic link"));
    REQUIRE(read_text(outside / "log" / "000001.jsonl") == log_before);
    std::size_t entries = 0;
    for (const auto& e : fs::directory_iterator(outside / "log")) {
      (void)e;
      ++entries;
    }
    REQUIRE(entries == 2);  // the segment and log.lock, nothing added
  }
}
