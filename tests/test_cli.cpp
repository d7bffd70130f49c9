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
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etcd_cluster.hpp"
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
  // Never the library's internals: nlohmann's tags, C++ calls, option names.
  for (const char* internal : {"json.exception", "()", "create = false", "options", "lock_stripes"})
    CHECK(r.err.find(internal) == std::string::npos);
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
  // The forms of times and the exit-code table, with what produces 11.
  for (const char* text : {"1764525600", "'2026-11-30 19:00:00.5+01:00'", "3d ago",
                           "1 not found (not a store", "11 conflict (a lost"}) {
    INFO(text);
    CHECK(help.out.find(text) != std::string::npos);
  }
  // Each command's --help shows its forms, with examples.
  const std::vector<std::pair<std::string, std::vector<std::string>>> forms{
      {"get",
       {"lockdb get ./state greeting -r", "lockdb get ./state a b c", "--raw", "--version",
        "lockdb get ./state config --version", "--at '2026-11-30 18:00:00Z'"}},
      {"put", {"--string 'hello world'", "lockdb put ./state cfg -", "--string -"}},
      {"incr", {"lockdb incr ./state budget -5"}},
      {"keys", {"lockdb keys ./state --prefix job/", "lockdb keys ./state 'job/*.done'"}},
      {"cas", {"lockdb cas ./state config \"$v\"", "--absent", "exit 11"}},
      {"init", {"lockdb init ./state", "--stripes 64", "--shared-group"}},
      {"log",
       {"--last 20", "--reverse --limit 5", "lockdb log ./state --follow ", "--follow --from-start",
        "--follow --last 10", "--until 1764525600"}},
      {"history", {"--last 5", "--limit 3"}},
      {"watch",
       {"lockdb watch ./state config", "--prefix job/", "--count 1", "--since 1h",
        "NFS, SMB, 9p, Ceph, AFS, sshfs"}},
      {"export", {"lockdb export ./state > dump.jsonl", "--prefix job/"}},
      {"import", {"< dump.jsonl", "--overwrite", "--if-absent"}},
      {"run",
       {"LOCKDB_FILE", "--shared -- sh -c 'cat \"$LOCKDB_FILE\"'", "--timeout 0", "exit 4",
        "128 + N"}},
      {"compact", {"--keep-last 100", "--before 30d"}}};
  for (const auto& [command, texts] : forms) {
    auto command_help = cli({command, "--help"});
    CHECK(command_help.code == 0);
    CHECK(command_help.out.find("Examples:\n") != std::string::npos);
    CHECK(command_help.out.find("lockdb " + command + " ./state") != std::string::npos);
    CHECK(command_help.out.find("--json") != std::string::npos);
    for (const auto& text : texts) {
      INFO(command << ": " << text);
      CHECK(command_help.out.find(text) != std::string::npos);
    }
  }

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

  SECTION("not a store: exit 1 and one line of one shape, from every command") {
    // Every command that takes a store, with S for the store argument.
    const std::vector<std::vector<std::string>> commands{
        {"get", "S", "config"},
        {"get", "S", "config", "--at", "1h"},
        {"get", "S", "a", "b", "--raw"},
        {"put", "S", "k", "1"},
        {"incr", "S", "k"},
        {"del", "S", "k"},
        {"keys", "S"},
        {"path", "S", "k"},
        {"log", "S"},
        {"log", "S", "--follow"},
        {"history", "S", "k"},
        {"watch", "S", "k"},
        {"locks", "S"},
        {"verify", "S"},
        {"repair", "S"},
        {"stats", "S"},
        {"compact", "S", "--keep-last", "1"},
        {"rebuild", "S", (dir / "target").string()},
        {"cas", "S", "k", "--absent", "1"},
        {"export", "S"},
        {"import", "S"},
        {"run", "S", "k", "--", "touch", (dir / "ran").string()}};
    // The list covers every command there is (init makes stores: it is tested below).
    const auto unknown = cli({"frobnicate"});
    const std::string listed = unknown.err.substr(unknown.err.find("(commands: ") + 11);
    std::set<std::string> all;
    for (std::size_t at = 0; at < listed.size();) {
      const std::size_t end = listed.find_first_of(",;", at);
      all.insert(listed.substr(at, end - at));
      if (listed[end] == ';') break;
      at = end + 2;
    }
    std::set<std::string> covered{"init"};
    for (const auto& c : commands) covered.insert(c[0]);
    CHECK(covered == all);

    const fs::path file = dir / "file";
    lockdb::test::write_text(file, "hello");
    const fs::path other = dir / "other";
    fs::create_directories(other);
    lockdb::test::write_text(other / "notes.txt", "hello");
    const auto hint = [](const std::string& init) {
      return " ('lockdb init " + init + "' creates one in a new or empty directory)\n";
    };
    // {store argument, the line every command prints, whether put/incr --create say it too}
    const std::vector<std::tuple<std::string, std::string, bool>> cases{
        {(dir / "missing").string(),
         (dir / "missing").string() + ": not a lockdb store: there is no such directory" +
             hint((dir / "missing").string()),
         false},
        {other.string(),
         other.string() + ": not a lockdb store: the directory has no store marker" +
             hint(other.string()),
         true},
        {file.string(), file.string() + ": not a lockdb store: it is not a directory" + hint("DIR"),
         true},
        {(file / "sub").string(),
         (file / "sub").string() + ": not a lockdb store: " + file.string() +
             " is not a directory" + hint("DIR"),
         true}};
    for (const auto& [store_arg, line, with_create] : cases) {
      auto all_commands = commands;
      if (with_create) {
        all_commands.push_back({"put", "--create", "S", "k", "1"});
        all_commands.push_back({"incr", "--create", "S", "k"});
      }
      for (auto args : all_commands) {
        std::replace(args.begin(), args.end(), std::string("S"), store_arg);
        std::string shown;
        for (const auto& arg : args) shown += arg + " ";
        INFO(shown);
        require_failure(cli(args), 1, "lockdb: " + line);
      }
    }
    CHECK_FALSE(fs::exists(dir / "missing"));
    CHECK_FALSE(fs::exists(dir / "target"));
    CHECK_FALSE(fs::exists(dir / "ran"));
    CHECK(lockdb::test::read_text(file) == "hello");
    CHECK(std::distance(fs::directory_iterator(other), fs::directory_iterator()) == 1);

    // init makes stores: where it cannot, a usage error that says what to give instead.
    require_failure(cli({"init", other.string()}), 2,
                    "lockdb: init: " + other.string() +
                        ": the directory is not empty and holds no lockdb store; give a new or "
                        "empty directory\n");
    require_failure(cli({"init", file.string()}), 2,
                    "lockdb: init: " + file.string() +
                        ": it is not a directory; give a new or empty directory\n");
    require_failure(cli({"init", (file / "sub").string()}), 2,
                    "lockdb: init: " + (file / "sub").string() + ": " + file.string() +
                        " is not a directory; give a new or empty directory\n");
    CHECK(lockdb::test::read_text(other / "notes.txt") == "hello");
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
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"get", store.string(), "config"}, {"put", store.string(), "config", "2"}}) {
      const auto r = cli(args);
      CHECK(r.code == 6);
      CHECK(r.out.empty());
      CHECK(lines(r.err).size() == 1);
      CHECK(r.err.find(file.string() + ": parse error at line 1") != std::string::npos);
      // No library internals: what to run instead.
      CHECK(r.err.find("json.exception") == std::string::npos);
      CHECK(r.err.find("repair()") == std::string::npos);
      CHECK(r.err.find("'lockdb repair' moves it aside") != std::string::npos);
    }
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
                    "lockdb: put \"config\": bad JSON argument: " + cause +
                        " (for a plain string use --string)\n");
    require_failure(cli({"put", store.string(), "config", "-"}, "{a: 1}"), 2,
                    "lockdb: put \"config\": <stdin>: bad JSON: " + cause + "\n");
    CHECK(cli({"get", store.string(), "config", "--json"}).out.find(R"("value":{"a":1})") !=
          std::string::npos);
  }
  SECTION("a bad time: 2, showing the accepted forms") {
    const std::string forms =
        " (use RFC 3339 like 2026-11-30T18:00:00Z or '2026-11-30 18:00:00+01:00', a date like "
        "2026-11-30, epoch seconds like 1764525600, a time ago like 10m, 2h, 3d, or now)";
    for (const auto& [option, command, bad] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"--since", "log", "yesterday"},
             {"--until", "log", "2026-02-31"},
             {"--since", "log", "9999-12-31"},
             {"--since", "log", "2026-11-30T18:00: 0Z"},
             {"--since", "log", "-5m"},
             {"--since", "log", "99999999999999999999"},
             {"--at", "get", "2026-13-01T00:00:00Z"},
             {"--before", "compact", "10 minutes"}}) {
      INFO(bad);
      std::vector<std::string> args{command, store.string()};
      if (command == "get") args.push_back("config");
      args.push_back(option);
      args.push_back(bad);
      require_failure(cli(args), 2,
                      "lockdb: " + option + ": not a time: \"" + bad + "\"" + forms +
                          " (see 'lockdb " + command + " --help')\n");
    }
  }
  SECTION("usage errors: 2") {
    require_failure(cli({"frobnicate", store.string()}), 2,
                    "lockdb: unknown command \"frobnicate\" (commands: get, put, incr, del, keys, "
                    "path, log, history, watch, locks, verify, repair, stats, compact, rebuild, "
                    "init, cas, export, import, run; see 'lockdb --help')\n");
    require_failure(cli({"get", store.string()}), 2,
                    "lockdb: KEY is required (see 'lockdb get --help')\n");
    require_failure(cli({"incr", store.string(), "jobs", "many"}), 2,
                    "lockdb: incr \"jobs\": N is not a whole number from -9223372036854775808 to "
                    "9223372036854775807: \"many\"\n");
    require_failure(cli({"log", store.string(), "--op", "smash"}), 2,
                    "lockdb: --op: smash not in {put,update,increment,erase,cas,update_many,"
                    "repair,import,run} (see 'lockdb log --help')\n");
    require_failure(cli({"compact", store.string()}), 2,
                    "lockdb: compact: give --keep-last N or --before TIME\n");
    require_failure(cli({"compact", store.string(), "--keep-last", "1", "--before", "1h"}), 2,
                    "lockdb: --keep-last excludes --before (see 'lockdb compact --help')\n");
    require_failure(cli({"put", store.string(), "k", "1", "--timeout", "soon"}), 2,
                    "lockdb: --timeout: not a duration: \"soon\" (use 500ms, 10s, 2m, 1h, or "
                    "seconds like 0.5) (see 'lockdb put --help')\n");
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
  Child follow({LOCKDB_CLI, "log", store.string(), "--follow", "--from-start", "--json"});
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
  follow.kill(SIGTERM);  // ends it cleanly
  CHECK(follow.wait() == 0);
}

TEST_CASE("log --follow --limit stops once it has printed N records", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "a", "1"});
  Child follow({LOCKDB_CLI, "log", store.string(), "--follow", "--from-start", "--key", "c",
                "--limit", "3"});
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
  // Moved aside, and the key's last logged value put back (logged as op repair).
  auto restored = cli({"get", store.string(), "a"});
  CHECK(restored.code == 0);
  CHECK(nlohmann::json::parse(restored.out) == nlohmann::json{{"x", 1}});
  CHECK(actions[0]["detail"].get<std::string>().find("restored the key's last logged value") !=
        std::string::npos);
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
                  error_line([&] { lockdb::rebuild_store(store, target); }));
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

TEST_CASE("get -r, several keys, --version, put --string and stdin, keys glob and escaping",
          "[cli]") {
  TempDir dir;
  const std::string store = (dir / "store").string();
  REQUIRE(cli({"init", store}).code == 0);
  REQUIRE(cli({"put", store, "greeting", "--string", "hello world"}).code == 0);
  CHECK(cli({"get", store, "greeting"}).out == "\"hello world\"\n");
  CHECK(cli({"get", store, "greeting", "-r"}).out == "hello world\n");
  REQUIRE(cli({"put", store, "host", "--string", "-"}, "vm-1\n").code == 0);
  CHECK(cli({"get", store, "host", "--raw"}).out == "vm-1\n");
  REQUIRE(cli({"put", store, "cfg", "-"}, "{\"n\": 1}").code == 0);
  CHECK(cli({"get", store, "cfg", "greeting", "host"}).out ==
        "{\"n\":1}\n\"hello world\"\n\"vm-1\"\n");
  CHECK(cli({"get", store, "cfg", "greeting", "host", "-r"}).out ==
        "{\"n\":1}\nhello world\nvm-1\n");
  CHECK(cli({"get", store, "cfg", "greeting", "--json"}).out ==
        "{\"cfg\":{\"n\":1},\"greeting\":\"hello world\"}\n");
  // A missing key among several: nothing printed, exit 1.
  auto missing = cli({"get", store, "cfg", "nope"});
  CHECK(missing.code == 1);
  CHECK(missing.out.empty());
  const std::string version = json::parse(cli({"get", store, "cfg", "--json"}).out)["version"];
  CHECK(cli({"get", store, "cfg", "--version"}).out ==
        "{\n  \"n\": 1\n}\nversion " + version + "\n");
  // A bad JSON argument points at --string.
  require_failure(cli({"put", store, "x", "hello"}), 2,
                  "lockdb: put \"x\": bad JSON argument: parse error at line 1, column 1: syntax "
                  "error while parsing value - "
                  "invalid literal; last read: 'h' (for a plain string use --string)\n");

  REQUIRE(cli({"put", store, "job/1", "1"}).code == 0);
  REQUIRE(cli({"put", store, "job/2.done", "2"}).code == 0);
  REQUIRE(cli({"put", store, "jobs", "3"}).code == 0);
  REQUIRE(cli({"put", store, "job/odd\nname", "4"}).code == 0);
  CHECK(cli({"keys", store, "--prefix", "job/"}).out == "job/1\njob/2.done\n\"job/odd\\nname\"\n");
  CHECK(cli({"keys", store, "job/*.done"}).out == "job/2.done\n");
  CHECK(cli({"keys", store, "job?"}).out == "jobs\n");
  CHECK(cli({"keys", store, "--prefix", "job/", "--json"}).out ==
        "{\"key\":\"job/1\"}\n{\"key\":\"job/2.done\"}\n{\"key\":\"job/odd\\nname\"}\n");
  // One line per record in the log too.
  auto log = cli({"log", store, "--key", "job/odd\nname"});
  CHECK(lines(log.out).size() == 1);
  CHECK(log.out.find("\"job/odd\\nname\"  4") != std::string::npos);
  const std::string shown = "\"job/odd\\nname\"";  // the key as a JSON string literal
  CHECK(cli({"put", store, "job/odd\nname", "5"}).out.rfind(shown + ": version ", 0) == 0);
  // locks, verify, repair and stats: one line per lock, finding and key too.
  auto locks = cli({"locks", store});
  CHECK(locks.code == 0);
  CHECK(lines(locks.out).size() == 1 + json_lines(cli({"locks", store, "--json"}).out).size());
  CHECK(locks.out.find("  " + shown + "  hard  free ") != std::string::npos);
  lockdb::test::write_text(key_file(store, "job/odd\nname"), "{");
  auto verify = cli({"verify", store});
  CHECK(verify.code == 6);
  REQUIRE(lines(verify.out).size() == 1);
  CHECK(verify.out.rfind("corrupt_key_file  " + shown + "  ", 0) == 0);
  auto repair = cli({"repair", store});
  CHECK(repair.code == 0);
  REQUIRE(lines(repair.out).size() == 1);
  CHECK(repair.out.rfind("corrupt_key_file  " + shown + "  ", 0) == 0);
  auto stats = cli({"stats", store, "--top", "1"});
  CHECK(stats.code == 0);
  CHECK(lines(stats.out).back() == "  3  " + shown);
}

TEST_CASE("numbers: incr refuses what is not an int64, counts refuse negatives", "[cli]") {
  TempDir dir;
  const std::string store = (dir / "store").string();
  REQUIRE(cli({"init", store}).code == 0);
  REQUIRE(cli({"incr", store, "n", "5"}).out == "5\n");
  CHECK(cli({"incr", store, "n", "-7"}).out == "-2\n");
  for (const char* bad : {"99999999999999999999", "-9223372036854775809", "0x10", " 5", "5 ", "+5",
                          "1e3", "5.0", ""}) {
    INFO(bad);
    require_failure(cli({"incr", store, "n", bad}), 2,
                    std::string("lockdb: incr \"n\": N is not a whole number from "
                                "-9223372036854775808 to 9223372036854775807: \"") +
                        bad + "\"\n");
  }
  CHECK(cli({"get", store, "n"}).out == "-2\n");
  CHECK(json_lines(cli({"log", store, "--json"}).out).size() == 2);  // nothing else logged
  for (const auto& [command, option] :
       std::vector<std::pair<std::string, std::string>>{{"log", "--limit"},
                                                        {"log", "--last"},
                                                        {"history", "--limit"},
                                                        {"history", "--last"},
                                                        {"stats", "--top"},
                                                        {"compact", "--keep-last"},
                                                        {"watch", "--count"},
                                                        {"init", "--stripes"}}) {
    for (const char* bad : {"-1", "0x3", " 2", "18446744073709551616", "two"}) {
      INFO(command << " " << option << " " << bad);
      std::vector<std::string> args{command, store};
      if (command == "history" || command == "watch") args.push_back("n");
      args.push_back(option);
      args.push_back(bad);
      require_failure(cli(args), 2,
                      "lockdb: " + option + ": not a count: \"" + bad +
                          "\" (a whole number, 0 or more) (see 'lockdb " + command + " --help')\n");
    }
  }
}

TEST_CASE("init --shared-group makes the store's directory setgid and group-writable", "[cli]") {
  TempDir dir;
  const std::string store = (dir / "store").string();
  auto made = cli({"init", store, "--shared-group", "--json"});
  REQUIRE(made.code == 0);
  CHECK(json::parse(made.out)["shared_group"] == true);
  struct stat st {};
  REQUIRE(::stat(store.c_str(), &st) == 0);
  CHECK((st.st_mode & (S_ISGID | S_IRWXG)) == (S_ISGID | S_IRWXG));
  CHECK(cli({"init", store}).out == "a lockdb store is already in " + store + " (group-shared)\n");
  CHECK(json::parse(cli({"init", store, "--shared-group", "--json"}).out)["created"] == false);
  // An existing store is not changed: the flag says so instead of leaving it unshared silently.
  const std::string plain = (dir / "plain").string();
  REQUIRE(cli({"init", plain}).code == 0);
  CHECK(json::parse(cli({"init", plain, "--json"}).out)["shared_group"] == false);
  require_failure(cli({"init", plain, "--shared-group"}), 2,
                  "lockdb: init: " + plain +
                      ": a lockdb store is already there, not group-shared (--shared-group acts "
                      "at creation; docs/store.md says how to share an existing store)\n");
}

TEST_CASE("init makes a store once, cas writes only on the expected version, else exits 11",
          "[cli]") {
  TempDir dir;
  const std::string store = (dir / "store").string();
  auto made = cli({"init", store, "--stripes", "8", "--json"});
  CHECK(made.code == 0);
  CHECK(json::parse(made.out)["created"] == true);
  CHECK(json::parse(made.out)["lock_stripes"] == 8);
  auto again = cli({"init", store, "--json"});
  CHECK(again.code == 0);
  CHECK(json::parse(again.out)["created"] == false);
  CHECK(json::parse(again.out)["lock_stripes"] == 8);
  CHECK(cli({"init", store, "--stripes", "8"}).out ==
        "a lockdb store is already in " + store + " (8 lock stripes)\n");
  for (const char* other : {"4", "0"}) {
    require_failure(cli({"init", store, "--stripes", other}), 2,
                    "lockdb: init: " + store +
                        ": a lockdb store is already there, with 8 lock stripes (fixed at "
                        "creation; give --stripes 8 or leave it out)\n");
  }
  const std::string plain = (dir / "plain").string();
  CHECK(cli({"init", plain}).out == "created a lockdb store in " + plain + "\n");
  require_failure(cli({"init", plain, "--stripes", "2"}), 2,
                  "lockdb: init: " + plain +
                      ": a lockdb store is already there, with one lock file per key (fixed at "
                      "creation; give --stripes 0 or leave it out)\n");

  auto first = cli({"cas", store, "leader", "--absent", "--string", "host-a", "--json"});
  REQUIRE(first.code == 0);
  const std::string v1 = json::parse(first.out)["version"];
  require_failure(cli({"cas", store, "leader", "--absent", "--string", "host-b"}), 11,
                  "lockdb: cas \"leader\": " + key_file(store, "leader").string() +
                      ": not written: the key exists (version " + v1 + ")\n");
  auto second = cli({"cas", store, "leader", v1, "\"host-c\"", "--json"});
  REQUIRE(second.code == 0);
  const std::string v2 = json::parse(second.out)["version"];
  // The lost race: someone wrote since v1 was read.
  require_failure(cli({"cas", store, "leader", v1, "\"host-d\""}), 11,
                  "lockdb: cas \"leader\": " + key_file(store, "leader").string() +
                      ": not written: the key's version is " + v2 + ", not " + v1 + "\n");
  require_failure(cli({"cas", store, "other", v1, "1"}), 11,
                  "lockdb: cas \"other\": " + key_file(store, "other").string() +
                      ": not written: the key does not exist\n");
  CHECK(cli({"get", store, "leader", "-r"}).out == "host-c\n");
  const auto ops = json_lines(cli({"log", store, "--json"}).out);
  REQUIRE(ops.size() == 2);
  CHECK(ops[0]["op"] == "cas");
  CHECK(ops[1]["op"] == "cas");
  CHECK(cli({"verify", store}).code == 0);

  // A real race: eight processes cas from the same version, released together through their
  // stdin. Exactly one wins; the others exit 11, naming the winner's version.
  std::vector<std::unique_ptr<Child>> racers;
  for (int i = 0; i < 8; ++i) {
    racers.push_back(std::make_unique<Child>(std::vector<std::string>{
        "/bin/sh", "-c", "echo READY; read go; exec \"$0\" cas \"$1\" leader \"$2\" \"$3\" 2>&1",
        LOCKDB_CLI, store, v2, std::to_string(i)}));
  }
  for (auto& r : racers) REQUIRE(r->expect_line("READY"));
  for (auto& r : racers) r->write_line("go");
  int winners = 0;
  std::string winner_line;
  std::vector<std::string> loser_lines;
  for (auto& r : racers) {
    auto line = r->read_line();
    REQUIRE(line);
    const int code = r->wait();
    if (code == 0) {
      ++winners;
      winner_line = *line;
    } else {
      CHECK(code == 11);
      loser_lines.push_back(*line);
    }
  }
  REQUIRE(winners == 1);
  const auto now = json::parse(cli({"get", store, "leader", "--json"}).out);
  CHECK(winner_line == "leader: version " + now["version"].get<std::string>());
  for (const auto& line : loser_lines) {
    CHECK(line == "lockdb: cas \"leader\": " + key_file(store, "leader").string() +
                      ": not written: the key's version is " + now["version"].get<std::string>() +
                      ", not " + v2);
  }
  CHECK(json_lines(cli({"log", store, "--json"}).out).size() == 3);  // one more cas, the winner's
}

TEST_CASE("log --last, --reverse, --since forms, history --limit and --last", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put-range", "k", "1", "5"});
  auto values = [](const std::string& out) {
    std::vector<int> v;
    for (const auto& r : json_lines(out)) v.push_back(r["value"]["n"]);
    return v;
  };
  CHECK(values(cli({"log", store.string(), "--last", "2", "--json"}).out) ==
        std::vector<int>{4, 5});
  CHECK(values(cli({"log", store.string(), "--reverse", "--json"}).out) ==
        std::vector<int>{5, 4, 3, 2, 1});
  CHECK(values(cli({"log", store.string(), "--reverse", "--limit", "2", "--json"}).out) ==
        std::vector<int>{5, 4});
  CHECK(values(cli({"log", store.string(), "--limit", "2", "--json"}).out) ==
        std::vector<int>{1, 2});
  CHECK(values(cli({"history", store.string(), "k", "--limit", "2", "--json"}).out) ==
        std::vector<int>{1, 2});
  CHECK(values(cli({"history", store.string(), "k", "--last", "2", "--json"}).out) ==
        std::vector<int>{4, 5});
  // --since forms: RFC 3339 with T or a space, a date, epoch seconds, a time ago.
  const auto recs = json_lines(cli({"log", store.string(), "--json"}).out);
  std::string t3 = recs[2]["time"];
  CHECK(values(cli({"log", store.string(), "--since", t3, "--json"}).out) ==
        std::vector<int>{3, 4, 5});
  std::string spaced = t3;
  spaced[10] = ' ';
  CHECK(values(cli({"log", store.string(), "--since", spaced, "--json"}).out) ==
        std::vector<int>{3, 4, 5});
  CHECK(values(cli({"log", store.string(), "--until", t3, "--json"}).out) ==
        std::vector<int>{1, 2});
  CHECK(values(cli({"log", store.string(), "--since", "1h", "--json"}).out).size() == 5);
  CHECK(values(cli({"log", store.string(), "--since", "3d ago", "--json"}).out).size() == 5);
  CHECK(values(cli({"log", store.string(), "--since", "2000-01-01", "--json"}).out).size() == 5);
  CHECK(values(cli({"log", store.string(), "--since", "946684800", "--json"}).out).size() == 5);
  CHECK(cli({"log", store.string(), "--since", "4102444800"}).out.empty());  // 2100
  CHECK(cli({"log", store.string(), "--since", "2100-01-01"}).out.empty());
}

TEST_CASE("get --at before the compaction horizon names the earliest time it can answer for",
          "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put-range", "k", "1", "4"});
  const auto recs = json_lines(cli({"log", store.string(), "--json"}).out);
  REQUIRE(recs.size() == 4);
  const std::string t1 = recs[0]["time"], t3 = recs[2]["time"];
  CHECK(cli({"get", store.string(), "k", "--at", t1}).out == "{\n  \"n\": 1\n}\n");
  REQUIRE(cli({"compact", store.string(), "--keep-last", "2"}).code == 0);
  require_failure(cli({"get", store.string(), "k", "--at", t1}), 1,
                  "lockdb: get \"k\" --at " + t1 + ": " + (store / "log").string() +
                      ": the log was compacted and does not reach back that far; the earliest "
                      "time it can answer for this key is " +
                      t3 + "\n");
  CHECK(cli({"get", store.string(), "k", "--at", t3}).out == "{\n  \"n\": 3\n}\n");

  // A key erased and made again: compaction dropped its first life, whose first record had no
  // previous version either. Before the compaction that time had a value; after it, the log
  // says it was compacted rather than "no value".
  const fs::path again = dir / "again";
  write_store(again, {"put", "j", "1", "del", "j", "put", "j", "2", "put", "j", "3"});
  const auto jrecs = json_lines(cli({"log", again.string(), "--json"}).out);
  REQUIRE(jrecs.size() == 4);
  const std::string j1 = jrecs[0]["time"], j3 = jrecs[2]["time"];
  CHECK(cli({"get", again.string(), "j", "--at", j1}).out == "1\n");
  REQUIRE(cli({"compact", again.string(), "--keep-last", "2"}).code == 0);
  REQUIRE(json_lines(cli({"log", again.string(), "--json"}).out).front()["prev"] == nullptr);
  require_failure(cli({"get", again.string(), "j", "--at", j1}), 1,
                  "lockdb: get \"j\" --at " + j1 + ": " + (again / "log").string() +
                      ": the log was compacted and does not reach back that far; the earliest "
                      "time it can answer for this key is " +
                      j3 + "\n");
}

TEST_CASE("compact that would drop nothing leaves the log byte for byte", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  // Several segments (1 KiB each), none of whose records a compaction below may drop.
  write_store(store, {"put", "a", "1", "put", "b", "2", "put-range", "k", "1", "30"}, 1024);
  REQUIRE(segment_files(store) >= 3);
  // Each segment's bytes and inode (a rewrite with the same bytes is a new inode), and no
  // temp file left behind.
  auto snapshot = [&] {
    std::map<std::string, std::pair<std::string, ino_t>> files;
    for (const auto& e : fs::directory_iterator(store / "log")) {
      const std::string name = e.path().filename().string();
      CHECK(name.rfind(".", 0) != 0);
      struct stat st {};
      REQUIRE(::stat(e.path().c_str(), &st) == 0);
      if (e.path().extension() == ".jsonl")
        files[name] = {lockdb::test::read_text(e.path()), st.st_ino};
    }
    return files;
  };
  const auto before = snapshot();
  for (int i = 0; i < 3; ++i) {
    auto r = cli({"compact", store.string(), "--keep-last", "30"});
    CHECK(r.code == 0);
    CHECK(r.out.rfind("dropped 0 records", 0) == 0);
    CHECK(snapshot() == before);
  }
  CHECK(cli({"compact", store.string(), "--before", "2000-01-01"}).code == 0);
  CHECK(snapshot() == before);
  // A compacted log compacted again by the same rule: nothing more to drop, left as it is.
  auto dropping = cli({"compact", store.string(), "--keep-last", "2"});
  REQUIRE(dropping.code == 0);
  CHECK(dropping.out.rfind("dropped 28 records", 0) == 0);
  const auto compacted = snapshot();
  auto again = cli({"compact", store.string(), "--keep-last", "2"});
  CHECK(again.out.rfind("dropped 0 records", 0) == 0);
  CHECK(snapshot() == compacted);
}

TEST_CASE("export and import round-trip, a bad line stops the import with its number", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "a", "1", "put", "job/x", R"({"s":"t\nu"})", "put", "job/y", "null",
                      "put", "s", "\"str\""});
  auto dump = cli({"export", store.string()});
  REQUIRE(dump.code == 0);
  const auto rows = json_lines(dump.out);
  REQUIRE(rows.size() == 4);
  CHECK(rows[1]["key"] == "job/x");
  CHECK(rows[1]["value"] == json{{"s", "t\nu"}});
  CHECK(rows[1]["version"].is_string());
  CHECK(json_lines(cli({"export", store.string(), "--prefix", "job/"}).out).size() == 2);

  const std::string copy = (dir / "copy").string();
  REQUIRE(cli({"init", copy}).code == 0);
  auto imported = cli({"import", copy}, dump.out);
  CHECK(imported.code == 0);
  CHECK(imported.out == "imported 4 keys\n");
  CHECK(cli({"export", copy}).out == dump.out);
  for (const auto& r : json_lines(cli({"log", copy, "--json"}).out)) CHECK(r["op"] == "import");
  CHECK(cli({"verify", copy}).code == 0);

  // Existing keys: refused unless told what to do.
  auto again = cli({"import", copy}, dump.out);
  CHECK(again.code == 11);
  CHECK(again.err.find("line 1: key \"a\"") != std::string::npos);
  CHECK(cli({"import", copy, "--if-absent"}, dump.out).out ==
        "imported 0 keys, skipped 4 that existed\n");
  CHECK(cli({"import", copy, "--overwrite"}, "{\"key\":\"a\",\"value\":2}\n").code == 0);
  CHECK(cli({"get", copy, "a"}).out == "2\n");

  // A bad line: nothing of the input is written.
  const std::string fresh = (dir / "fresh").string();
  REQUIRE(cli({"init", fresh}).code == 0);
  require_failure(
      cli({"import", fresh}, "{\"key\":\"a\",\"value\":1}\n\n{\"key\":\"b\",\"value\"\n"), 2,
      "lockdb: import: <stdin> line 3: not a JSON line (nothing was imported)\n");
  require_failure(cli({"import", fresh}, "{\"key\":\"a\",\"value\":1}\n{\"value\":1}\n"), 2,
                  "lockdb: import: <stdin> line 2: no \"key\" string (nothing was imported)\n");
  require_failure(cli({"import", fresh}, "[1]\n"), 2,
                  "lockdb: import: <stdin> line 1: not a JSON object (nothing was imported)\n");
  // Lines the store would refuse stop the import before anything is written, in every mode.
  const std::string deep = std::string(513, '[') + std::string(513, ']');
  const std::string ok = std::string(512, '[') + std::string(512, ']');
  for (const std::string mode : {"", "--if-absent", "--overwrite"}) {
    INFO(mode);
    std::vector<std::string> args{"import", fresh};
    if (!mode.empty()) args.push_back(mode);
    require_failure(cli(args, "{\"key\":\"a\",\"value\":1}\n{\"key\":\"\",\"value\":2}\n"), 2,
                    "lockdb: import: <stdin> line 2: invalid key \"\": the key is empty (nothing "
                    "was imported)\n");
    require_failure(
        cli(args, "{\"key\":\"a\",\"value\":1}\n{\"key\":\"d\",\"value\":" + deep + "}\n"), 2,
        "lockdb: import: <stdin> line 2: key \"d\": the value nests deeper than 512 levels "
        "(nothing was imported)\n");
  }
  require_failure(
      cli({"import", fresh, "--if-absent", "--overwrite"}, "{\"key\":\"a\",\"value\":1}\n"), 2,
      "lockdb: import: give --if-absent or --overwrite, not both\n");
  CHECK(cli({"keys", fresh}).out.empty());
  CHECK(cli({"log", fresh}).out.empty());
  // The deepest value the store takes is imported.
  CHECK(cli({"import", fresh, "--json"}, "{\"key\":\"d\",\"value\":" + ok + "}\n").out ==
        "{\"written\":1,\"skipped\":0}\n");
}

TEST_CASE("run holds the key's lock for a command, logs its change, exits with its status",
          "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "n", "41"});
  const std::string file = key_file(store, "n").string();
  // A locked read-modify-write with shell tools.
  auto r = cli({"run", store.string(), "n", "--", "sh", "-c",
                "test \"$LOCKDB_FILE\" = '" + file +
                    "' && echo $(( $(cat \"$LOCKDB_FILE\") + 1 )) > \"$LOCKDB_FILE.new\" && "
                    "mv \"$LOCKDB_FILE.new\" \"$LOCKDB_FILE\" && echo done"});
  CHECK(r.code == 0);
  CHECK(r.out == "done\n");
  CHECK(cli({"get", store.string(), "n"}).out == "42\n");
  auto recs = json_lines(cli({"log", store.string(), "--json"}).out);
  REQUIRE(recs.size() == 2);
  CHECK(recs[1]["op"] == "run");
  CHECK(recs[1]["value"] == 42);
  CHECK(recs[1]["prev"] == recs[0]["version"]);
  CHECK(cli({"verify", store.string()}).code == 0);

  // A failing command: its status, and its change is still logged.
  CHECK(cli({"run", store.string(), "n", "--", "sh", "-c", "echo 7 > \"$LOCKDB_FILE\"; exit 3"})
            .code == 3);
  CHECK(json_lines(cli({"log", store.string(), "--json"}).out).back()["value"] == 7);
  CHECK(cli({"verify", store.string()}).code == 0);
  // No change: nothing logged. A command that does not exist: 127.
  CHECK(cli({"run", store.string(), "n", "--", "true"}).code == 0);
  CHECK(json_lines(cli({"log", store.string(), "--json"}).out).size() == 3);
  auto none = cli({"run", store.string(), "n", "--", "/nonexistent/cmd"});
  CHECK(none.code == 127);
  CHECK(none.err == "lockdb: run: /nonexistent/cmd: command not found\n");
  // A command that removes the file: an erase.
  CHECK(cli({"run", store.string(), "n", "--", "sh", "-c", "rm \"$LOCKDB_FILE\""}).code == 0);
  CHECK(cli({"get", store.string(), "n"}).code == 1);
  CHECK(json_lines(cli({"log", store.string(), "--json"}).out).back()["op"] == "run");
  CHECK(cli({"verify", store.string()}).code == 0);

  // Another process holds the key: exit 4 after the timeout, the command never ran.
  fs::path lock = key_file(store, "n");
  lock += ".lock";
  Child holder({lockdb::test::helper_path(), "hold", "hard", lock.string()});
  REQUIRE(holder.expect_line("LOCKED"));
  const fs::path marker = dir / "ran";
  auto timed_out =
      cli({"run", store.string(), "n", "--timeout", "100ms", "--", "touch", marker.string()});
  CHECK(timed_out.code == 4);
  CHECK(timed_out.out.empty());
  CHECK(timed_out.err.rfind("lockdb: key \"n\": lock not acquired within 100 ms: " + lock.string() +
                                ": held by pid " + std::to_string(holder.pid()),
                            0) == 0);
  CHECK_FALSE(fs::exists(marker));
  auto shared = cli({"run", store.string(), "n", "--shared", "--timeout", "0", "--", "true"});
  CHECK(shared.code == 4);
  holder.write_line("go");
  REQUIRE(holder.expect_line("RELEASED"));
  CHECK(cli({"run", store.string(), "n", "--shared", "--", "true"}).code == 0);

  // --shared: readers run together, a writer waits for them.
  REQUIRE(cli({"put", store.string(), "n", "7"}).code == 0);
  Child reader({lockdb::test::helper_path(), "hold", "hard", lock.string(), "shared"});
  REQUIRE(reader.expect_line("LOCKED"));
  auto together = cli({"run", store.string(), "n", "--shared", "--timeout", "0", "--json", "--",
                       "sh", "-c", "cat \"$LOCKDB_FILE\""});
  CHECK(together.code == 0);
  CHECK(together.out == "7\n");  // the key file, as it is
  CHECK(together.err == "{\"key\":\"n\",\"status\":0,\"changed\":false,\"logged\":false}\n");
  auto writer = cli({"run", store.string(), "n", "--timeout", "0", "--", "touch", marker.string()});
  CHECK(writer.code == 4);
  CHECK_FALSE(fs::exists(marker));
  reader.write_line("go");
  REQUIRE(reader.expect_line("RELEASED"));
  // A command killed by a signal: 128 + the signal, like a shell.
  CHECK(cli({"run", store.string(), "n", "--", "sh", "-c", "kill -TERM $$"}).code == 128 + SIGTERM);
}

TEST_CASE("watch prints each change of its keys once, in order, from when it started", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "a", "0", "put", "b", "0"});  // before the watch: not printed
  // stderr joins stdout so that the "watching" line is the hand-shake.
  Child watch({"/bin/sh", "-c", "exec \"$0\" watch \"$1\" a b --count 5 --json 2>&1", LOCKDB_CLI,
               store.string()});
  REQUIRE(watch.expect_line("lockdb: watching 2 keys in " + store.string() + " (Ctrl-C to stop)"));
  const long writer =
      write_store(store, {"put", "a", "1", "put", "other", "1", "incr", "b", "1", "put-range", "a",
                          "2", "3", "del", "b", "put", "a", "99"});
  std::vector<json> got;
  while (auto line = watch.read_line()) got.push_back(json::parse(*line));
  CHECK(watch.wait() == 0);
  REQUIRE(got.size() == 5);
  const std::vector<std::pair<std::string, json>> want{
      {"a", 1}, {"b", 1}, {"a", {{"n", 2}}}, {"a", {{"n", 3}}}, {"b", nullptr}};
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO(got[i].dump());
    CHECK(got[i]["key"] == want[i].first);
    CHECK(got[i].value("value", json()) == want[i].second);
    CHECK(got[i]["pid"] == writer);
  }

  // --prefix, and a signal ends it cleanly with what it printed flushed.
  Child by_prefix(
      {"/bin/sh", "-c", "exec \"$0\" watch \"$1\" --prefix job/ 2>&1", LOCKDB_CLI, store.string()});
  REQUIRE(by_prefix.expect_line("lockdb: watching keys starting with \"job/\" in " +
                                store.string() + " (Ctrl-C to stop)"));
  write_store(store, {"put", "jobx", "1", "put", "job/1", "7"});
  auto line = by_prefix.read_line();
  REQUIRE(line);
  CHECK(line->find("  put  ") != std::string::npos);
  CHECK(line->find("  job/1  7") != std::string::npos);
  by_prefix.kill(SIGTERM);
  CHECK(by_prefix.wait() == 0);
  CHECK_FALSE(by_prefix.read_line());

  // --since shows the past first; --count 0 returns at once.
  auto past = cli({"watch", store.string(), "a", "--since", "1h", "--count", "2", "-q", "--json"});
  CHECK(past.code == 0);
  CHECK(past.err.empty());
  const auto first = json_lines(past.out);
  REQUIRE(first.size() == 2);
  CHECK(first[0]["value"] == 0);
  CHECK(first[1]["value"] == 1);
  require_failure(cli({"watch", store.string()}), 2,
                  "lockdb: watch: give KEY... or --prefix PREFIX\n");
}

// Whether process `pid` has an inotify instance open.
bool has_inotify(long pid) {
  for (const auto& fd : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    if (fs::read_symlink(fd.path(), ec).string() == "anon_inode:inotify") return true;
  }
  return false;
}

TEST_CASE("watch and log --follow use inotify, and poll where asked, seeing every change",
          "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "a", "0"});
  for (const std::string poll : {"", "1"}) {
    INFO("LOCKDB_POLL=" << poll);
    Child watch({"/usr/bin/env", "LOCKDB_POLL=" + poll, "/bin/sh", "-c",
                 "exec \"$0\" watch \"$1\" a --count 3 --json 2>&1", LOCKDB_CLI, store.string()});
    REQUIRE(watch.expect_line("lockdb: watching \"a\" in " + store.string() + " (Ctrl-C to stop)"));
    Child follow({"/usr/bin/env", "LOCKDB_POLL=" + poll, "/bin/sh", "-c",
                  "exec \"$0\" log \"$1\" --follow --limit 3 --json 2>&1", LOCKDB_CLI,
                  store.string()});
    REQUIRE(
        follow.expect_line("lockdb: following the log of " + store.string() + " (Ctrl-C to stop)"));
    CHECK(has_inotify(watch.pid()) == poll.empty());
    CHECK(has_inotify(follow.pid()) == poll.empty());
    write_store(store, {"put-range", "a", "1", "3"});
    for (Child* c : {&watch, &follow}) {
      std::vector<int> got;
      while (auto line = c->read_line()) got.push_back(json::parse(*line)["value"]["n"]);
      CHECK(c->wait() == 0);
      CHECK(got == std::vector<int>{1, 2, 3});
    }
    // Ctrl-C ends a watch cleanly, in either mode: exit 0, what it printed flushed.
    Child interrupted({"/usr/bin/env", "LOCKDB_POLL=" + poll, "/bin/sh", "-c",
                       "exec \"$0\" watch \"$1\" a 2>&1", LOCKDB_CLI, store.string()});
    REQUIRE(interrupted.expect_line("lockdb: watching \"a\" in " + store.string() +
                                    " (Ctrl-C to stop)"));
    write_store(store, {"put", "a", "4"});
    auto line = interrupted.read_line();
    REQUIRE(line);
    CHECK(line->ends_with("  a  4"));
    interrupted.kill(SIGINT);
    CHECK(interrupted.wait() == 0);
    CHECK_FALSE(interrupted.read_line());
  }
}

TEST_CASE("log --follow starts at the end unless asked for the past", "[cli]") {
  TempDir dir;
  const fs::path store = dir / "store";
  write_store(store, {"put", "old", "1"});
  Child follow({"/bin/sh", "-c", "exec \"$0\" log \"$1\" --follow --limit 1 --json 2>&1",
                LOCKDB_CLI, store.string()});
  REQUIRE(
      follow.expect_line("lockdb: following the log of " + store.string() + " (Ctrl-C to stop)"));
  write_store(store, {"put", "new", "2"});
  auto line = follow.read_line();
  REQUIRE(line);
  CHECK(json::parse(*line)["key"] == "new");
  CHECK(follow.wait() == 0);
  CHECK(json_lines(
            cli({"log", store.string(), "--follow", "--last", "1", "--limit", "1", "--json"}).out)
            .size() == 1);
  // --since and --from-start print the past first (and --limit counts it).
  auto since = cli({"log", store.string(), "--follow", "--since", "1h", "--limit", "2", "--json"});
  CHECK(since.code == 0);
  const auto past = json_lines(since.out);
  REQUIRE(past.size() == 2);
  CHECK(past[0]["key"] == "old");
  CHECK(past[1]["key"] == "new");
  auto from_start =
      cli({"log", store.string(), "--follow", "--from-start", "--limit", "1", "--json", "-q"});
  CHECK(from_start.err.empty());
  CHECK(json_lines(from_start.out).at(0)["key"] == "old");
}

TEST_CASE("not a store on etcd: the same exit code and line shape as for a directory", "[cli]") {
  if (!lockdb::test::EtcdCluster::available()) {
    WARN("skipped: /usr/bin/etcd is not installed (apt-get install etcd-server)");
    return;
  }
  lockdb::test::EtcdCluster cluster;
  const std::string location = cluster.fresh_location();
  const std::string line = "lockdb: " + location +
                           ": not a lockdb store: the prefix has no store marker ('lockdb init " +
                           location + "' creates one)\n";
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"get", location, "k"},
                                             {"put", location, "k", "1"},
                                             {"keys", location},
                                             {"log", location},
                                             {"history", location, "k"},
                                             {"export", location},
                                             {"cas", location, "k", "--absent", "1"},
                                             {"run", location, "k", "--", "true"},
                                             {"stats", location},
                                             {"verify", location}}) {
    INFO(args[0]);
    require_failure(cli(args), 1, line);
  }
  REQUIRE(cli({"init", location}).code == 0);
  CHECK(cli({"put", location, "k", "1"}).code == 0);
  CHECK(cli({"get", location, "k"}).out == "1\n");
}

TEST_CASE("the README's CLI tour runs as written", "[cli]") {
  const std::string readme = lockdb::test::read_text(LOCKDB_README);
  const std::string start = "A tour:\n\n```sh\n";
  const auto begin = readme.find(start);
  REQUIRE(begin != std::string::npos);
  const auto end = readme.find("```\n", begin + start.size());
  REQUIRE(end != std::string::npos);
  // The lines that wait for changes (follow, watch) and the one that asks for a fixed past time
  // (--at) are left out: the rest runs in order.
  std::string script = "set -e\n", command;
  for (const auto& line : lines(readme.substr(begin + start.size(), end - begin - start.size()))) {
    command += line + "\n";
    if (line.ends_with("\\")) continue;
    if (command.find("--follow") == std::string::npos &&
        command.find("lockdb watch") == std::string::npos &&
        command.find("--at ") == std::string::npos)
      script += command;
    command.clear();
  }
  CHECK(script.find("lockdb run ./state config") != std::string::npos);
  TempDir dir;
  lockdb::test::write_text(dir / "tour.sh", script);
  const std::string bin = fs::path(LOCKDB_CLI).parent_path().string();
  auto r = lockdb::test::run({"/bin/sh", "-c", "cd \"$1\" && PATH=\"$2:$PATH\" sh tour.sh", "sh",
                              dir.path().string(), bin});
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(r.out.find("hello world\n") != std::string::npos);
  CHECK(cli({"get", (dir / "state").string(), "config", "--json"}).out.find(R"("workers":9)") !=
        std::string::npos);
  CHECK(cli({"export", (dir / "copy").string()}).code == 0);
  CHECK(cli({"verify", (dir / "state").string()}).code == 0);
}
