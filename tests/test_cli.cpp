// The `lockdb` command, tested as a program: run it, check its output and exit code, against
// stores filled by real writer processes (the helper's cli-write command).
#include <lockdb/file_lock.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.hpp"

using lockdb::test::Child;
using lockdb::test::RunResult;
using lockdb::test::TempDir;
using nlohmann::json;
using ordered_json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

RunResult cli(std::vector<std::string> args, const std::string& stdin_text = {}) {
  args.insert(args.begin(), LOCKDB_CLI);
  return lockdb::test::run(args, stdin_text);
}

// Runs the helper writer (cli-write) to completion and returns its pid.
long write_store(const fs::path& store, std::vector<std::string> steps,
                 std::uint64_t segment_bytes = 0) {
  std::vector<std::string> argv{lockdb::test::helper_path(), "cli-write", store.string(),
                                std::to_string(segment_bytes)};
  argv.insert(argv.end(), steps.begin(), steps.end());
  Child writer(argv);
  REQUIRE(writer.expect_line("DONE"));
  REQUIRE(writer.wait() == 0);
  return writer.pid();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  for (const auto& line : lines(text)) out.push_back(json::parse(line));
  return out;
}

std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

// The one stderr line the CLI prints for a library error: "lockdb: " + what().
std::string error_line(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const lockdb::Error& e) {
    return std::string("lockdb: ") + e.what() + "\n";
  }
  FAIL("expected a lockdb::Error");
  return {};
}

fs::path key_file(const fs::path& store, const std::string& key) {
  lockdb::StoreOptions options;
  options.create = false;
  return lockdb::Store(store, options).file_path(key);
}

void require_failure(const RunResult& r, int code, const std::string& err) {
  INFO("stdout: " << r.out);
  CHECK(r.err == err);
  CHECK(r.code == code);
  CHECK(r.out.empty());
}

// Runs argv on a pseudo-terminal (stdout and stderr both on it), with `env` set and NO_COLOR
// unset unless given. Returns the exit code and everything the terminal received.
RunResult run_on_terminal(const std::vector<std::string>& argv,
                          const std::vector<std::pair<std::string, std::string>>& env) {
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::unsetenv("NO_COLOR");
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  RunResult r;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n > 0) {
      r.out.append(buf, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // EIO: the terminal's last writer closed it
    }
  }
  ::close(master);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::size_t segment_files(const fs::path& store) {
  std::size_t n = 0;
  for (const auto& entry : fs::directory_iterator(store / "log")) {
    if (entry.path().extension() == ".jsonl") ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("version flag, help with examples, and a missing command", "[cli]") {
  auto version = cli({"--version"});
  CHECK(version.out == std::string("lockdb ") + LOCKDB_VERSION + "\n");
  CHECK(version.code == 0);

  auto help = cli({"--help"});
  CHECK(help.code == 0);
  CHECK(help.err.empty());
  for (const char* text : {"Examples:", "Exit codes:", "lockdb log ./state --follow", "get", "put",
                           "incr", "del", "keys", "path", "log", "history", "locks", "verify",
                           "repair", "stats", "compact", "rebuild", "10m, 2h, 3d"}) {
    INFO(text);
    CHECK(help.out.find(text) != std::string::npos);
  }
  auto log_help = cli({"log", "--help"});
  CHECK(log_help.code == 0);
  CHECK(log_help.out.find("lockdb log ./state --follow --since now") != std::string::npos);
  CHECK(log_help.out.find("--json") != std::string::npos);

  auto none = cli({});
  CHECK(none.code == 2);
  CHECK(lines(none.err).size() == 1);
  CHECK(none.err.rfind("lockdb: ", 0) == 0);
}

TEST_CASE("put, get, incr, del, keys and path, in human and --json form", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";

  auto put = cli({"put", "--create", store.string(), "config", R"({"workers": 4, "name": "a"})"});
  REQUIRE(put.code == 0);
  const std::string version = lockdb::Store(store).entry("config")->version;
  CHECK(put.out == "config: version " + version + "\n");
  CHECK(put.err.empty());

  auto get = cli({"get", store.string(), "config"});
  CHECK(get.out == "{\n  \"name\": \"a\",\n  \"workers\": 4\n}\n");
  CHECK(get.code == 0);
  auto get_json = cli({"get", store.string(), "config", "--json"});
  CHECK(get_json.out ==
        R"({"key":"config","value":{"name":"a","workers":4},"version":")" + version + "\"}\n");

  auto put_stdin = cli({"put", store.string(), "greeting", "-", "--json"}, "\"hello\"\n");
  REQUIRE(put_stdin.code == 0);
  CHECK(put_stdin.out == R"({"key":"greeting","version":")" +
                             lockdb::Store(store).entry("greeting")->version + "\"}\n");
  CHECK(cli({"get", store.string(), "greeting"}).out == "\"hello\"\n");

  CHECK(cli({"incr", store.string(), "jobs"}).out == "1\n");
  CHECK(cli({"incr", store.string(), "jobs", "10"}).out == "11\n");
  CHECK(cli({"incr", store.string(), "jobs", "-4"}).out == "7\n");
  CHECK(cli({"incr", store.string(), "jobs", "--json"}).out == "{\"key\":\"jobs\",\"value\":8}\n");

  CHECK(cli({"keys", store.string()}).out == "config\ngreeting\njobs\n");
  CHECK(cli({"keys", store.string(), "--prefix", "g"}).out == "greeting\n");
  CHECK(cli({"keys", store.string(), "--json"}).out ==
        "{\"key\":\"config\"}\n{\"key\":\"greeting\"}\n{\"key\":\"jobs\"}\n");

  const fs::path config_file = key_file(store, "config");
  CHECK(cli({"path", store.string(), "config"}).out == config_file.string() + "\n");
  CHECK(cli({"path", store.string(), "config", "--json"}).out ==
        R"({"key":"config","path":)" + json(config_file.string()).dump() + ",\"exists\":true}\n");
  CHECK(cli({"path", store.string(), "nope", "--json"}).out ==
        R"({"key":"nope","path":)" + json(key_file(store, "nope").string()).dump() +
            ",\"exists\":false}\n");

  auto del = cli({"del", store.string(), "greeting"});
  CHECK(del.out == "deleted greeting\n");
  CHECK(del.code == 0);
  CHECK(cli({"del", store.string(), "jobs", "--json"}).out ==
        "{\"key\":\"jobs\",\"deleted\":true}\n");
  CHECK(cli({"keys", store.string()}).out == "config\n");
}

TEST_CASE("bad input gives one stderr line naming the cause, and its exit code", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "config", R"({"a": 1})", "put", "text", "\"x\""});
  lockdb::StoreOptions no_create;
  no_create.create = false;

  SECTION("a missing store: 1") {
    const fs::path missing = dir / "missing";
    const std::string err = error_line([&] { lockdb::Store s(missing, no_create); });
    require_failure(cli({"get", missing.string(), "config"}), 1, err);
    require_failure(cli({"keys", missing.string()}), 1, err);
    require_failure(cli({"put", missing.string(), "k", "1"}), 1, err);
    CHECK_FALSE(fs::exists(missing));
    require_failure(cli({"log", missing.string()}), 1,
                    error_line([&] { lockdb::History h(missing); }));
  }
  SECTION("a directory that is not a store: 1") {
    const fs::path other = dir / "other";
    fs::create_directories(other);
    lockdb::test::write_text(other / "notes.txt", "hello");
    require_failure(cli({"keys", other.string()}), 1,
                    error_line([&] { lockdb::Store s(other, no_create); }));
  }
  SECTION("an unknown key: 1") {
    require_failure(
        cli({"get", store.string(), "nope"}), 1,
        "lockdb: get \"nope\": " + key_file(store, "nope").string() + ": no such key\n");
    require_failure(
        cli({"del", store.string(), "nope"}), 1,
        "lockdb: del \"nope\": " + key_file(store, "nope").string() + ": no such key\n");
    require_failure(
        cli({"history", store.string(), "nope"}), 1,
        "lockdb: history \"nope\": " + (store / "log").string() + ": no record of this key\n");
  }
  SECTION("an invalid key: 2") {
    require_failure(cli({"get", store.string(), ""}), 2,
                    error_line([&] { lockdb::Store(store, no_create).get(""); }));
  }
  SECTION("a corrupt key file: 6, and the file is left as it was") {
    const fs::path file = key_file(store, "config");
    lockdb::test::write_text(file, "{\"a\": ");
    const std::string err = error_line([&] { lockdb::Store(store, no_create).get("config"); });
    CHECK(err.find(file.string()) != std::string::npos);
    require_failure(cli({"get", store.string(), "config"}), 6, err);
    require_failure(cli({"put", store.string(), "config", "2"}), 6,
                    error_line([&] { lockdb::Store(store, no_create).put("config", 2); }));
    CHECK(lockdb::test::read_text(file) == "{\"a\": ");
  }
  SECTION("a bad JSON argument: 2, and the value stays") {
    std::string cause;
    try {
      const json never = json::parse("{a: 1}");
      FAIL("parsed " << never.dump());
    } catch (const json::parse_error& e) {
      cause = std::string(e.what()).substr(std::string(e.what()).find("] ") + 2);
    }
    require_failure(cli({"put", store.string(), "config", "{a: 1}"}), 2,
                    "lockdb: put \"config\": bad JSON argument: " + cause + "\n");
    require_failure(cli({"put", store.string(), "config", "-"}, "{a: 1}"), 2,
                    "lockdb: put \"config\": <stdin>: bad JSON: " + cause + "\n");
    CHECK(cli({"get", store.string(), "config", "--json"}).out.find(R"("value":{"a":1})") !=
          std::string::npos);
  }
  SECTION("a bad time: 2") {
    require_failure(cli({"log", store.string(), "--since", "yesterday"}), 2,
                    "lockdb: --since: not a time: \"yesterday\" (use RFC 3339 like "
                    "2026-11-30T18:00:00Z, or 10m, 2h, 3d ago, or now) (see 'lockdb log "
                    "--help')\n");
    require_failure(cli({"get", store.string(), "config", "--at", "2026-13-01T00:00:00Z"}), 2,
                    "lockdb: --at: not a time: \"2026-13-01T00:00:00Z\" (use RFC 3339 like "
                    "2026-11-30T18:00:00Z, or 10m, 2h, 3d ago, or now) (see 'lockdb get "
                    "--help')\n");
    require_failure(cli({"compact", store.string(), "--before", "10 minutes"}), 2,
                    "lockdb: --before: not a time: \"10 minutes\" (use RFC 3339 like "
                    "2026-11-30T18:00:00Z, or 10m, 2h, 3d ago, or now) (see 'lockdb compact "
                    "--help')\n");
  }
  SECTION("usage errors: 2") {
    require_failure(cli({"frobnicate", store.string()}), 2,
                    "lockdb: unknown command \"frobnicate\" (commands: get, put, incr, del, keys, "
                    "path, log, history, locks, verify, repair, stats, compact, rebuild; see "
                    "'lockdb --help')\n");
    require_failure(cli({"get", store.string()}), 2,
                    "lockdb: KEY is required (see 'lockdb get --help')\n");
    require_failure(cli({"incr", store.string(), "jobs", "many"}), 2,
                    "lockdb: Could not convert: N = many (see 'lockdb incr --help')\n");
    require_failure(cli({"log", store.string(), "--op", "smash"}), 2,
                    "lockdb: --op: smash not in {put,update,increment,erase,cas,update_many,"
                    "repair} (see 'lockdb log --help')\n");
    require_failure(cli({"compact", store.string()}), 2,
                    "lockdb: compact: give --keep-last N or --before TIME\n");
    require_failure(cli({"compact", store.string(), "--keep-last", "1", "--before", "1h"}), 2,
                    "lockdb: --keep-last excludes --before (see 'lockdb compact --help')\n");
    require_failure(cli({"put", store.string(), "k", "1", "--timeout", "soon"}), 2,
                    "lockdb: --timeout: not a duration: \"soon\" (use 500ms, 10s, 2m, or seconds "
                    "like 0.5) (see 'lockdb put --help')\n");
  }
  SECTION("a key lock held by another process: 4, naming the key, the lock and its holder") {
    fs::path lock = key_file(store, "config");
    lock += ".lock";
    Child holder({lockdb::test::helper_path(), "hold", "hard", lock.string()});
    REQUIRE(holder.expect_line("LOCKED"));
    auto r = cli({"put", store.string(), "config", "2", "--timeout", "100ms"});
    CHECK(r.code == 4);
    CHECK(r.out.empty());
    CHECK(lines(r.err).size() == 1);
    CHECK(r.err.rfind("lockdb: key \"config\": lock not acquired within 100 ms: " + lock.string() +
                          ": held by pid " + std::to_string(holder.pid()),
                      0) == 0);
    holder.write_line("go");
    REQUIRE(holder.expect_line("RELEASED"));
    CHECK(cli({"get", store.string(), "config"}).out == "{\n  \"a\": 1\n}\n");
  }
  SECTION("a value that is not an integer for incr: 2") {
    require_failure(cli({"incr", store.string(), "text"}), 2,
                    error_line([&] { lockdb::Store(store, no_create).increment("text"); }));
  }
}

TEST_CASE("log prints records in order, filters them, and --json keeps the log's fields", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  const long first =
      write_store(store, {"put", "a", R"({"n": 1})", "incr", "count", "2", "put", "b", "true"});
  const long second = write_store(store, {"put", "a", R"({"n": 2})", "del", "b"});
  const std::string host = hostname();

  auto all = cli({"log", store.string(), "--json"});
  REQUIRE(all.code == 0);
  REQUIRE(all.err.empty());
  const auto recs = json_lines(all.out);
  REQUIRE(recs.size() == 5);
  // The field names and their order are the CLI's contract (the log's own record fields).
  for (const auto& line : lines(all.out)) {
    const auto rec = ordered_json::parse(line);
    std::vector<std::string> names;
    for (const auto& item : rec.items()) names.push_back(item.key());
    if (rec["op"] == "erase") {
      CHECK(names ==
            std::vector<std::string>{"time", "key", "op", "prev", "version", "pid", "host"});
    } else {
      CHECK(names == std::vector<std::string>{"time", "key", "op", "value", "prev", "version",
                                              "pid", "host"});
    }
  }
  const std::vector<std::tuple<std::string, std::string, json, long>> want = {
      {"a", "put", json{{"n", 1}}, first},
      {"count", "increment", 2, first},
      {"b", "put", true, first},
      {"a", "put", json{{"n", 2}}, second},
      {"b", "erase", nullptr, second}};
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto& [key, op, value, pid] = want[i];
    INFO("record " << i);
    CHECK(recs[i]["key"] == key);
    CHECK(recs[i]["op"] == op);
    if (op != "erase") CHECK(recs[i]["value"] == value);
    CHECK(recs[i]["pid"] == pid);
    CHECK(recs[i]["host"] == host);
  }
  CHECK(recs[0]["prev"] == nullptr);
  CHECK(recs[3]["prev"] == recs[0]["version"]);
  CHECK(recs[4]["version"] == nullptr);
  for (std::size_t i = 1; i < recs.size(); ++i) {
    CHECK(recs[i - 1]["time"].get<std::string>() <= recs[i]["time"].get<std::string>());
  }

  // Human form: time, op, pid@host, key, value.
  const std::string t0 = recs[0]["time"], t4 = recs[4]["time"];
  auto human = cli({"log", store.string(), "--key", "a", "--limit", "1"});
  CHECK(human.out ==
        t0 + "  put          " + std::to_string(first) + "@" + host + "  a  {\"n\":1}\n");
  CHECK(cli({"log", store.string(), "--op", "erase"}).out ==
        t4 + "  erase        " + std::to_string(second) + "@" + host + "  b  -\n");

  auto keys_of = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"log", store.string(), "--json"});
    auto r = cli(args);
    REQUIRE(r.code == 0);
    std::vector<std::string> keys;
    for (const auto& rec : json_lines(r.out)) keys.push_back(rec["key"]);
    return keys;
  };
  using keys = std::vector<std::string>;
  CHECK(keys_of({"--key", "a"}) == keys{"a", "a"});
  CHECK(keys_of({"--key", "zzz"}) == keys{});
  CHECK(keys_of({"--prefix", "c"}) == keys{"count"});
  CHECK(keys_of({"--op", "put"}) == keys{"a", "b", "a"});
  CHECK(keys_of({"--limit", "2"}) == keys{"a", "count"});
  CHECK(keys_of({"--limit", "0"}) == keys{});

  // Times: RFC 3339 in its forms (Z, offsets, a date alone), now, and relative forms.
  const std::string t2 = recs[2]["time"];
  std::string t2_offset = t2;
  t2_offset.replace(t2_offset.size() - 1, 1, "+00:00");
  std::string t2_lower = t2;
  t2_lower[10] = 't';
  CHECK(keys_of({"--since", t2}) == keys{"b", "a", "b"});
  CHECK(keys_of({"--until", t2}) == keys{"a", "count"});
  CHECK(keys_of({"--since", t2_offset}) == keys{"b", "a", "b"});
  CHECK(keys_of({"--since", t2_lower, "--until", recs[4]["time"]}) == keys{"b", "a"});
  CHECK(keys_of({"--since", "2000-01-01", "--until", "2200-12-31"}).size() == 5);
  CHECK(keys_of({"--until", "2000-01-01T01:00:00+01:00"}) == keys{});
  CHECK(keys_of({"--since", "1h"}).size() == 5);
  CHECK(keys_of({"--since", "3d", "--until", "1h"}) == keys{});
  CHECK(keys_of({"--since", "1w", "--until", "now"}).size() == 5);
  CHECK(keys_of({"--since", "30s"}).size() == 5);
  CHECK(keys_of({"--since", "10m", "--until", "0s"}).size() == 5);
}

TEST_CASE("history gives one line per change with who and a short diff", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  const long pid = write_store(
      store, {"put", "cfg", R"({"a": 1, "b": 2})", "put", "cfg", R"({"a": 1, "b": 3, "d": [1]})",
              "put", "cfg", R"({"a": 1, "b": 3, "d": [1]})", "put", "cfg", "7", "del", "cfg", "put",
              "other", "1"});
  auto js = cli({"history", store.string(), "cfg", "--json"});
  REQUIRE(js.code == 0);
  const auto recs = json_lines(js.out);
  REQUIRE(recs.size() == 5);
  const std::string who = "  " + std::to_string(pid) + "@" + hostname() + "  ";
  auto time = [&](std::size_t i) { return recs[i]["time"].get<std::string>(); };
  auto human = cli({"history", store.string(), "cfg"});
  CHECK(human.code == 0);
  CHECK(human.out == time(0) + "  put        " + who + "{\"a\":1,\"b\":2}\n" +      //
                         time(1) + "  put        " + who + "b: 2 -> 3, +d=[1]\n" +  //
                         time(2) + "  put        " + who + "(unchanged)\n" +        //
                         time(3) + "  put        " + who + "7\n" +                  //
                         time(4) + "  erase      " + who + "(erased)\n");
}

TEST_CASE("get --at gives the value a key had at a past time, from the log", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "k", "1", "put", "k", "2", "del", "k"});
  const auto recs = json_lines(cli({"log", store.string(), "--json"}).out);
  REQUIRE(recs.size() == 3);
  const std::string t0 = recs[0]["time"], t1 = recs[1]["time"], t2 = recs[2]["time"];
  CHECK(cli({"get", store.string(), "k", "--at", t0}).out == "1\n");
  CHECK(cli({"get", store.string(), "k", "--at", t1}).out == "2\n");
  CHECK(cli({"get", store.string(), "k", "--at", t1, "--json"}).out ==
        R"({"key":"k","value":2,"at":")" + t1 + "\"}\n");
  require_failure(cli({"get", store.string(), "k", "--at", t2}), 1,
                  "lockdb: get \"k\" --at " + t2 + ": " + (store / "log").string() +
                      ": no value at that time\n");
  require_failure(cli({"get", store.string(), "k", "--at", "2000-01-01T00:00:00Z"}), 1,
                  "lockdb: get \"k\" --at 2000-01-01T00:00:00.000000Z: " +
                      (store / "log").string() + ": no value at that time\n");
  CHECK(cli({"get", store.string(), "k"}).code == 1);  // erased now
}

TEST_CASE("log --follow prints appends made after it started, across segment rotation", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "a", "1", "put", "b", "2"});
  Child follow({LOCKDB_CLI, "log", store.string(), "--follow", "--json"});
  // The records already there come first: once they are read, the command is following.
  auto line = follow.read_line();
  REQUIRE(line);
  CHECK(json::parse(*line)["key"] == "a");
  line = follow.read_line();
  REQUIRE(line);
  CHECK(json::parse(*line)["key"] == "b");

  // A writer with 1 KiB segments: its 60 records rotate the log through several segments.
  const std::size_t segments_before = segment_files(store);
  const long writer = write_store(store, {"put-range", "c", "1", "60"}, 1024);
  CHECK(segment_files(store) >= segments_before + 3);
  for (int n = 1; n <= 60; ++n) {
    line = follow.read_line();
    REQUIRE(line);
    const auto rec = json::parse(*line);
    INFO(*line);
    CHECK(rec["key"] == "c");
    CHECK(rec["value"] == json{{"n", n}});
    CHECK(rec["pid"] == writer);
  }
  // And later appends still arrive.
  write_store(store, {"del", "a"}, 1024);
  line = follow.read_line();
  REQUIRE(line);
  CHECK(json::parse(*line)["op"] == "erase");
  follow.kill(SIGTERM);
  CHECK(follow.wait() == 128 + SIGTERM);
}

TEST_CASE("log --follow --limit stops once it has printed N records", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "a", "1"});
  Child follow({LOCKDB_CLI, "log", store.string(), "--follow", "--key", "c", "--limit", "3"});
  Child writer(
      {lockdb::test::helper_path(), "cli-write", store.string(), "0", "put-range", "c", "1", "5"});
  REQUIRE(writer.expect_line("DONE"));
  REQUIRE(writer.wait() == 0);
  std::vector<std::string> got;
  while (auto line = follow.read_line()) got.push_back(*line);
  CHECK(follow.wait() == 0);
  REQUIRE(got.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(got[static_cast<std::size_t>(i)].find("  c  {\"n\":" + std::to_string(i + 1) + "}") !=
          std::string::npos);
  }
}

TEST_CASE("locks names a live holder's pid and flags a stale soft marker", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "k", "1", "put", "other", "2"});
  fs::path lock = key_file(store, "k");
  lock += ".lock";
  const std::string lock_name = lock.lexically_relative(store).string();

  auto find = [&](const std::string& out, const std::string& name) {
    for (const auto& rec : json_lines(out)) {
      if (rec["lock"] == name) return rec;
    }
    FAIL("no lock " << name << " in " << out);
    return json();
  };

  auto free = cli({"locks", store.string(), "--json"});
  REQUIRE(free.code == 0);
  CHECK(json_lines(free.out).size() == 3);  // k, other, the log's lock
  CHECK(find(free.out, lock_name) == json{{"lock", lock_name},
                                          {"path", lock.string()},
                                          {"key", "k"},
                                          {"kind", "hard"},
                                          {"state", "free"},
                                          {"holder", nullptr}});

  Child holder({lockdb::test::helper_path(), "hold", "hard", lock.string()});
  REQUIRE(holder.expect_line("LOCKED"));
  auto held = cli({"locks", store.string(), "--json"});
  REQUIRE(held.code == 0);
  const auto rec = find(held.out, lock_name);
  CHECK(rec["state"] == "held");
  CHECK(rec["kind"] == "hard");
  CHECK(rec["holder"]["pid"] == holder.pid());
  const auto known = lockdb::FileLock(lock).holder();
  REQUIRE(known);
  auto human = cli({"locks", store.string()});
  CHECK(human.code == 0);
  bool seen = false;
  for (const auto& line : lines(human.out)) {
    if (line.rfind(lock_name + " ", 0) == 0) {
      seen = true;
      CHECK(line.ends_with("  hard  held   " + known->describe()));
    }
  }
  CHECK(seen);
  CHECK(lines(human.out)[0].rfind("LOCK", 0) == 0);
  holder.write_line("go");
  REQUIRE(holder.expect_line("RELEASED"));
  CHECK(find(cli({"locks", store.string(), "--json"}).out, lock_name)["state"] == "free");

  // A soft marker whose holder died: flagged stale, naming the dead pid.
  fs::path marker = key_file(store, "m");
  marker += ".lock";
  const std::string marker_name = marker.lexically_relative(store).string();
  Child soft({lockdb::test::helper_path(), "hold", "soft", marker.string()});
  REQUIRE(soft.expect_line("LOCKED"));
  auto live = find(cli({"locks", store.string(), "--json"}).out, marker_name);
  CHECK(live["kind"] == "soft");
  CHECK(live["state"] == "held");
  CHECK(live["key"] == nullptr);
  CHECK(live["holder"]["pid"] == soft.pid());
  soft.kill(SIGKILL);
  CHECK(soft.wait() == 128 + SIGKILL);
  auto stale = find(cli({"locks", store.string(), "--json"}).out, marker_name);
  CHECK(stale["kind"] == "soft");
  CHECK(stale["state"] == "stale");
  CHECK(stale["holder"]["pid"] == soft.pid());

  // verify fails on the stale marker; repair empties it in place; verify then passes.
  auto bad = cli({"verify", store.string(), "--json"});
  CHECK(bad.code == 6);
  const auto findings = json_lines(bad.out);
  REQUIRE(findings.size() == 1);
  CHECK(findings[0]["kind"] == "stale_marker");
  CHECK(findings[0]["key"] == "m");
  CHECK(findings[0]["path"] == marker.string());
  auto repair = cli({"repair", store.string()});
  CHECK(repair.code == 0);
  CHECK_THAT(repair.out, Catch::Contains("stale_marker  m  " + marker_name + "  "));
  CHECK_THAT(repair.out, Catch::Contains("emptied in place"));
  CHECK(fs::file_size(marker) == 0);
  CHECK(cli({"verify", store.string()}).code == 0);
  CHECK(find(cli({"locks", store.string(), "--json"}).out, marker_name)["state"] == "free");
}

TEST_CASE("verify fails on a corrupted key file, repair fixes it, verify then passes", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "a", R"({"x": 1})", "put", "b", "2"});
  CHECK(cli({"verify", store.string()}).out == "clean: " + store.string() + "\n");
  CHECK(cli({"verify", store.string()}).code == 0);
  CHECK(cli({"verify", store.string(), "--json"}).out.empty());

  const fs::path file = key_file(store, "a");
  lockdb::test::write_text(file, "{\"x\": ");
  const std::string rel = file.lexically_relative(store).string();

  auto bad = cli({"verify", store.string(), "--json"});
  CHECK(bad.code == 6);
  CHECK(bad.err ==
        "lockdb: verify: " + store.string() + ": 1 finding (run 'lockdb repair' to fix)\n");
  const auto findings = json_lines(bad.out);
  REQUIRE(findings.size() == 1);
  CHECK(findings[0]["kind"] == "corrupt_key_file");
  CHECK(findings[0]["key"] == "a");
  CHECK(findings[0]["path"] == file.string());
  const std::string detail = findings[0]["detail"];

  auto human = cli({"verify", store.string()});
  CHECK(human.code == 6);
  CHECK(human.out == "corrupt_key_file  a  " + rel + "  " + detail + "\n");

  auto repair = cli({"repair", store.string(), "--json"});
  CHECK(repair.code == 0);
  CHECK(repair.err.empty());
  const auto actions = json_lines(repair.out);
  REQUIRE(actions.size() == 1);
  CHECK(actions[0]["kind"] == "corrupt_key_file");
  CHECK(actions[0]["key"] == "a");

  auto again = cli({"verify", store.string()});
  CHECK(again.out == "clean: " + store.string() + "\n");
  CHECK(again.code == 0);
  CHECK(cli({"repair", store.string()}).out == "nothing to repair: " + store.string() + "\n");
  CHECK(cli({"get", store.string(), "b"}).out == "2\n");
  CHECK(cli({"get", store.string(), "a"}).code == 1);  // moved aside, its absence logged
}

TEST_CASE("stats counts keys, log records, ops and the busiest keys of several writers", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "seed", "0"});
  std::vector<std::unique_ptr<Child>> writers;
  for (int i = 0; i < 3; ++i) {
    writers.push_back(std::make_unique<Child>(std::vector<std::string>{
        lockdb::test::helper_path(), "cli-write", store.string(), "0", "incr-times", "shared", "20",
        "put-range", "own" + std::to_string(i), "1", std::to_string(i + 1)}));
  }
  for (auto& w : writers) {
    REQUIRE(w->expect_line("DONE"));
    REQUIRE(w->wait() == 0);
  }
  std::uint64_t key_bytes = 0;
  for (const char* key : {"seed", "shared", "own0", "own1", "own2"}) {
    key_bytes += fs::file_size(key_file(store, key));
  }
  std::uint64_t log_bytes = 0;
  const auto segments = lockdb::History(store).segments();
  for (const auto& s : segments) log_bytes += fs::file_size(s);

  auto js = cli({"stats", store.string(), "--json", "--top", "3"});
  REQUIRE(js.code == 0);
  const json want = {
      {"store", store.string()},
      {"keys", 5},
      {"key_bytes", key_bytes},
      {"log",
       {{"bytes", log_bytes}, {"segments", segments.size()}, {"records", 67}, {"torn_lines", 0}}},
      {"ops", {{"increment", 60}, {"put", 7}}},
      {"busiest",
       {{{"key", "shared"}, {"changes", 60}},
        {{"key", "own2"}, {"changes", 3}},
        {{"key", "own1"}, {"changes", 2}}}}};
  CHECK(json::parse(js.out) == want);

  auto human = cli({"stats", store.string(), "--top", "2"});
  CHECK(human.code == 0);
  const auto got = lines(human.out);
  REQUIRE(got.size() == 7);
  CHECK(got[0] == "store     " + store.string());
  CHECK(got[1].rfind("keys      5 (", 0) == 0);
  CHECK(got[2].rfind("log       67 records in 1 segment, ", 0) == 0);
  CHECK(got[3] == "changes   increment 60, put 7");
  CHECK(got[4] == "busiest");
  CHECK(got[5] == "  60  shared");
  CHECK(got[6] == "   3  own2");
}

TEST_CASE("compact bounds the log and keeps every current value", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put-range", "k", "1", "10", "put-range", "j", "1", "3"});
  auto r = cli({"compact", store.string(), "--keep-last", "2", "--json"});
  REQUIRE(r.code == 0);
  const auto result = ordered_json::parse(r.out);
  std::vector<std::string> names;
  for (const auto& item : result.items()) names.push_back(item.key());
  CHECK(names == std::vector<std::string>{"dropped", "log_bytes_before", "log_bytes_after"});
  CHECK(result["dropped"] == 9);
  CHECK(result["log_bytes_after"] < result["log_bytes_before"]);
  auto left = json_lines(cli({"log", store.string(), "--json"}).out);
  REQUIRE(left.size() == 4);
  CHECK(left[0]["value"] == json{{"n", 9}});
  CHECK(left[1]["value"] == json{{"n", 10}});
  CHECK(cli({"get", store.string(), "k"}).out == "{\n  \"n\": 10\n}\n");

  auto before = cli({"compact", store.string(), "--before", "now"});
  CHECK(before.code == 0);
  CHECK(before.out.rfind("dropped 2 records; log ", 0) == 0);
  CHECK(json_lines(cli({"log", store.string(), "--json"}).out).size() == 2);
  CHECK(cli({"get", store.string(), "j"}).out == "{\n  \"n\": 3\n}\n");
}

TEST_CASE("rebuild makes a new store from the log alone", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store", target = dir / "rebuilt";
  write_store(
      store, {"put", "a", R"({"x": [1, 2]})", "incr", "n", "5", "put", "gone", "1", "del", "gone"});
  auto r = cli({"rebuild", store.string(), target.string()});
  CHECK(r.out ==
        "rebuilt " + target.string() + " from the log of " + store.string() + ": 2 keys\n");
  CHECK(r.code == 0);
  CHECK(cli({"keys", target.string()}).out == "a\nn\n");
  CHECK(cli({"get", target.string(), "a", "--json"}).out.find(R"("value":{"x":[1,2]})") !=
        std::string::npos);
  CHECK(cli({"get", target.string(), "n"}).out == "5\n");
  const fs::path second = dir / "second";
  CHECK(cli({"rebuild", store.string(), second.string(), "--json"}).out ==
        R"({"store":)" + json(second.string()).dump() + R"(,"from":)" +
            json(store.string()).dump() + ",\"keys\":2}\n");
  require_failure(cli({"rebuild", store.string(), target.string()}), 2,
                  error_line([&] { lockdb::History(store).rebuild(target); }));
}

TEST_CASE("progress shows on a terminal only, colours follow --color and NO_COLOR", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put-range", "k", "1", "50"});

  // Progress: LOCKDB_PROGRESS_DELAY_MS=0 shows it from the start of the scan.
  auto term = run_on_terminal({LOCKDB_CLI, "stats", store.string()},
                              {{"LOCKDB_PROGRESS_DELAY_MS", "0"}, {"NO_COLOR", "1"}});
  CHECK(term.code == 0);
  CHECK(term.out.find("\rlockdb: reading log ") != std::string::npos);
  CHECK(term.out.find("\r\033[K") != std::string::npos);  // and cleared at the end
  auto piped = lockdb::test::run(
      {"/usr/bin/env", "LOCKDB_PROGRESS_DELAY_MS=0", LOCKDB_CLI, "stats", store.string()});
  CHECK(piped.code == 0);
  CHECK(piped.err.empty());

  // Colours: on a terminal by default, never with NO_COLOR, never in a pipe unless asked.
  auto coloured = run_on_terminal({LOCKDB_CLI, "log", store.string(), "--limit", "1"}, {});
  CHECK(coloured.out.find("\033[32mput") != std::string::npos);
  auto no_color =
      run_on_terminal({LOCKDB_CLI, "log", store.string(), "--limit", "1"}, {{"NO_COLOR", "1"}});
  CHECK(no_color.code == 0);
  CHECK(no_color.out.find('\033') == std::string::npos);
  CHECK(cli({"log", store.string(), "--limit", "1"}).out.find('\033') == std::string::npos);
  CHECK(cli({"log", store.string(), "--limit", "1", "--color", "always"}).out.find("\033[32mput") !=
        std::string::npos);
  auto never =
      run_on_terminal({LOCKDB_CLI, "log", store.string(), "--limit", "1", "--color", "never"}, {});
  CHECK(never.out.find('\033') == std::string::npos);
  auto json_out = run_on_terminal({LOCKDB_CLI, "log", store.string(), "--json"}, {});
  CHECK(json_out.out.find('\033') == std::string::npos);
}
