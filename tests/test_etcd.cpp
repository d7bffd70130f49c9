// The etcd backend against a real etcd member started by this program (one for all its tests),
// and the store's behavioural tests from real processes against both backends.
#include <lockdb/etcd.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etcd_cluster.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using lockdb::Store;
using lockdb::test::Child;
using lockdb::test::EtcdCluster;
using lockdb::test::TempDir;
using nlohmann::json;

namespace {

std::vector<std::string> helper(std::vector<std::string> args) {
  args.insert(args.begin(), lockdb::test::helper_path());
  return args;
}

// etcd is a required package; a machine without it runs no etcd test and says so.
#define REQUIRE_ETCD()                                                             \
  if (!EtcdCluster::available()) {                                                 \
    WARN("skipped: /usr/bin/etcd is not installed (apt-get install etcd-server)"); \
    return;                                                                        \
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

// A store location of each backend: a fresh directory, a fresh prefix on the shared member.
std::vector<std::pair<std::string, std::string>> both_backends(const TempDir& tmp) {
  return {{"directory", (tmp / "db").string()},
          {"etcd", lockdb::test::shared_etcd().fresh_location()}};
}

std::vector<lockdb::Record> records_of(const std::string& location, const std::string& key) {
  lockdb::Query q;
  q.key = key;
  return lockdb::History(location).records(q);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The API on one member

TEST_CASE("etcd: put, get, entry, contains, keys, erase, versions are mod_revisions", "[etcd]") {
  REQUIRE_ETCD();
  Store store(lockdb::test::shared_etcd().fresh_location());
  REQUIRE_FALSE(store.get("a"));
  REQUIRE_FALSE(store.contains("a"));
  const std::string v1 = store.put("a", json{{"x", 1}});
  REQUIRE(store.get("a") == json{{"x", 1}});
  REQUIRE(store.entry("a")->version == v1);
  REQUIRE(std::stoll(v1) > 0);
  const std::string v2 = store.put("a", json{{"x", 1}});  // same value, new revision
  REQUIRE(std::stoll(v2) > std::stoll(v1));
  store.put("b/c", "text");
  REQUIRE(store.contains("b/c"));
  REQUIRE(store.keys() == std::vector<std::string>{"a", "b/c"});
  REQUIRE(store.erase("a"));
  REQUIRE_FALSE(store.erase("a"));
  REQUIRE(store.keys() == std::vector<std::string>{"b/c"});
  REQUIRE(code_of([&] { store.put("", 1); }) == lockdb::Errc::invalid_argument);
  REQUIRE(store.dir().string().rfind("etcd://", 0) == 0);
}

TEST_CASE("etcd: update, increment and compare_and_put as on a directory", "[etcd]") {
  REQUIRE_ETCD();
  Store store(lockdb::test::shared_etcd().fresh_location());
  REQUIRE(store.update("doc", [](json& v) {
    REQUIRE(v.is_null());
    v["n"] = 1;
  }) == json{{"n", 1}});
  REQUIRE(store.update("doc", [](const json& v) {
    return json{{"n", v["n"].get<int>() + 1}};
  }) == json{{"n", 2}});
  REQUIRE(store.increment("c") == 1);
  REQUIRE(store.increment("c", 41) == 42);
  std::string what;
  REQUIRE(code_of([&] { store.increment("doc"); }, &what) == lockdb::Errc::invalid_argument);
  REQUIRE_THAT(what, Catch::Contains("key \"doc\""));
  store.put("max", INT64_MAX);
  REQUIRE(code_of([&] { store.increment("max"); }) == lockdb::Errc::invalid_argument);

  REQUIRE(store.compare_and_put("new", std::nullopt, 1));
  REQUIRE_FALSE(store.compare_and_put("new", std::nullopt, 2));
  const std::string version = store.entry("new")->version;
  REQUIRE_FALSE(store.compare_and_put("new", "1", 3));
  REQUIRE_FALSE(store.compare_and_put("new", "not a version", 3));
  REQUIRE(store.compare_and_put("new", version, 4));
  REQUIRE_FALSE(store.compare_and_put("new", version, 5));  // its version moved on
  REQUIRE(store.get("new") == 4);

  auto out = store.update_many({"x", "y"}, [](std::map<std::string, json>& v) {
    REQUIRE(v.empty());
    v["x"] = 1;
    v["y"] = 2;
  });
  REQUIRE(out.size() == 2);
  store.update_many({"x", "y"}, [](std::map<std::string, json>& v) { v.erase("x"); });
  REQUIRE_FALSE(store.contains("x"));
  REQUIRE(code_of([&] {
            store.update_many({"y"}, [](std::map<std::string, json>& v) { v["z"] = 1; });
          }) == lockdb::Errc::invalid_argument);
  REQUIRE_FALSE(store.contains("z"));
}

TEST_CASE("etcd: every change has its audit record: in order, chained, value_at, follow",
          "[etcd]") {
  REQUIRE_ETCD();
  const std::string location = lockdb::test::shared_etcd().fresh_location();
  Store store(location);
  lockdb::History history(location);
  const lockdb::LogPosition start = history.end();
  store.put("k", 1);
  const auto t1 = std::chrono::system_clock::now();
  store.increment("k");
  store.update("k", [](json& v) { v = v.get<int>() * 10; });
  store.compare_and_put("k", store.entry("k")->version, "cas");
  store.update_many({"k", "other"}, [](std::map<std::string, json>& v) {
    v["k"] = "many";
    v["other"] = true;
  });
  store.erase("k");
  auto records = records_of(location, "k");
  REQUIRE(records.size() == 6);
  const std::vector<std::string> ops = {"put", "increment",   "update",
                                        "cas", "update_many", "erase"};
  std::optional<std::string> last;
  for (std::size_t i = 0; i < records.size(); ++i) {
    INFO("record " << i);
    REQUIRE(records[i].op == ops[i]);
    REQUIRE(records[i].prev_version == last);
    REQUIRE(records[i].pid == static_cast<long>(::getpid()));
    REQUIRE_FALSE(records[i].host.empty());
    last = records[i].version;
  }
  REQUIRE(records[1].value == json(2));
  REQUIRE_FALSE(records[5].value);
  REQUIRE_FALSE(records[5].version);
  REQUIRE(history.value_at("k", t1) == json(1));
  REQUIRE_FALSE(history.value_at("k", std::chrono::system_clock::now()));
  REQUIRE(history.records().size() == 7);

  // Follow: read_from gives what came after a position, and waits on a watch for the next.
  std::vector<std::string> seen;
  auto pos = history.read_from(start, {}, [&](const lockdb::Record& r) { seen.push_back(r.op); });
  REQUIRE(seen.size() == 7);
  Child writer(helper({"store-increment", location, "late", "1"}));
  REQUIRE(writer.expect_line("READY"));
  writer.write_line("go");
  seen.clear();
  const auto before = std::chrono::steady_clock::now();
  while (seen.empty() && std::chrono::steady_clock::now() - before < 10s) {
    pos = history.read_from(pos, {}, [&](const lockdb::Record& r) { seen.push_back(r.key); });
  }
  REQUIRE(seen == std::vector<std::string>{"late"});
  REQUIRE(writer.wait() == 0);
}

TEST_CASE("etcd: compaction of the history keeps each key's last records", "[etcd]") {
  REQUIRE_ETCD();
  const std::string location = lockdb::test::shared_etcd().fresh_location();
  Store store(location);
  for (int i = 0; i < 5; ++i) store.increment("a");
  store.put("b", 1);
  REQUIRE(lockdb::compact_history_keep_last(location, 2) == 3);
  REQUIRE(records_of(location, "a").size() == 2);
  REQUIRE(records_of(location, "a").back().value == json(5));
  REQUIRE(records_of(location, "b").size() == 1);
}

TEST_CASE("etcd: opening: create=false needs a store, a bad location is invalid_argument",
          "[etcd]") {
  REQUIRE_ETCD();
  lockdb::StoreOptions o;
  o.create = false;
  const std::string location = lockdb::test::shared_etcd().fresh_location();
  REQUIRE(code_of([&] { Store s(location, o); }) == lockdb::Errc::not_found);
  REQUIRE(code_of([&] { lockdb::History h(location); }) == lockdb::Errc::not_found);
  { Store created(location); }
  Store again(location, o);
  REQUIRE(again.keys().empty());
  std::string what;
  REQUIRE(code_of([] { Store s("etcd://nohostport/x"); }, &what) == lockdb::Errc::invalid_argument);
  REQUIRE_THAT(what, Catch::Contains("etcd://nohostport/x"));
  REQUIRE(code_of([] { Store s("etcd:///x"); }) == lockdb::Errc::invalid_argument);
}

TEST_CASE("etcd: errors name the endpoint and cause, a dead endpoint is skipped", "[etcd]") {
  REQUIRE_ETCD();
  auto& etcd = lockdb::test::shared_etcd();
  // A port nobody listens on: a socket bound without listen().
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string dead = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  lockdb::StoreOptions o;
  o.request_timeout = 1s;
  std::string what;
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(code_of([&] { Store s("etcd://" + dead + "/x", o); }, &what) == lockdb::Errc::io);
  REQUIRE(std::chrono::steady_clock::now() - start < 3s);
  REQUIRE_THAT(what, Catch::Contains(dead) && Catch::Contains("unreachable"));

  // Failover: the dead endpoint first, the live one second.
  Store store("etcd://" + dead + "," + etcd.endpoint(0) + "/failover", o);
  store.put("k", 1);
  REQUIRE(store.increment("k") == 2);

  // Request too large: etcd's limit is 1.5 MiB; nothing is written.
  // (2 MiB take a while to send on a loaded machine: the default request timeout.)
  Store roomy("etcd://" + etcd.endpoint(0) + "/failover");
  const auto code = code_of([&] { roomy.put("big", std::string(2 << 20, 'x')); }, &what);
  INFO(what);
  REQUIRE(code == lockdb::Errc::invalid_argument);
  REQUIRE_THAT(what, Catch::Contains("request too large") && Catch::Contains(etcd.endpoint(0)));
  REQUIRE_FALSE(store.contains("big"));
  ::close(fd);
}

TEST_CASE("etcd: auth refused is Error{permission}", "[etcd]") {
  REQUIRE_ETCD();
  EtcdCluster own(1);  // auth changes the whole cluster: not the shared one
  const std::string ep = own.endpoint(0);
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/etcdctl", "--endpoints=" + ep});
    return lockdb::test::run(args);
  };
  REQUIRE(ctl({"user", "add", "root:pw"}).code == 0);
  REQUIRE(ctl({"auth", "enable"}).code == 0);
  std::string what;
  REQUIRE(code_of([&] { Store s(own.location("app")); }, &what) == lockdb::Errc::permission);
  REQUIRE_THAT(what, Catch::Contains("auth refused") && Catch::Contains(ep));
}

TEST_CASE("etcd: verify finds a value written around the store, repair logs it", "[etcd]") {
  REQUIRE_ETCD();
  auto& etcd = lockdb::test::shared_etcd();
  const std::string prefix = "around" + std::to_string(::getpid());
  Store store(etcd.location(prefix));
  store.put("k", 1);
  store.put("bad", 2);
  REQUIRE(store.verify().empty());
  auto put = [&](const std::string& key, const std::string& value) {
    return lockdb::test::run({"/usr/bin/etcdctl", "--endpoints=" + etcd.endpoint(0), "put",
                              "/" + prefix + "/k/" + key, value});
  };
  REQUIRE(put("k", "7").code == 0);
  REQUIRE(put("bad", "{not json").code == 0);
  auto findings = store.verify();
  REQUIRE(findings.size() == 2);
  REQUIRE(code_of([&] { store.get("bad"); }) == lockdb::Errc::corrupt);
  REQUIRE(code_of([&] { store.increment("bad"); }) == lockdb::Errc::corrupt);
  REQUIRE(store.repair().size() == 2);
  REQUIRE(store.verify().empty());
  REQUIRE(store.get("k") == 7);
  REQUIRE_FALSE(store.contains("bad"));
  REQUIRE(records_of(etcd.location(prefix), "k").back().op == "repair");
}

TEST_CASE("etcd: a forked child keeps using its parent's Store", "[etcd]") {
  REQUIRE_ETCD();
  Store store(lockdb::test::shared_etcd().fresh_location());
  store.put("n", 0);  // the parent's connection is open now
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    try {
      for (int i = 0; i < 50; ++i) store.increment("n");
    } catch (...) {
      code = 1;
    }
    ::_exit(code);
  }
  for (int i = 0; i < 50; ++i) store.increment("n");
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(store.get("n") == 100);
}

TEST_CASE("etcd test support: a test process killed leaves no etcd member behind", "[etcd]") {
  REQUIRE_ETCD();
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // a test program that dies without running any destructor
    ::close(fds[0]);
    try {
      EtcdCluster cluster(1);
      const pid_t member = cluster.pid(0);
      (void)!::write(fds[1], &member, sizeof member);
      const std::string dir = cluster.data_dir().string();
      (void)!::write(fds[1], dir.data(), dir.size());
      ::kill(::getpid(), SIGKILL);  // before the cluster's destructor could stop the member
    } catch (...) {
    }
    ::_exit(1);
  }
  ::close(fds[1]);
  pid_t member = -1;
  const auto got = ::read(fds[0], &member, sizeof member);
  char dir[4096];
  const auto dir_size = ::read(fds[0], dir, sizeof dir);
  ::close(fds[0]);
  REQUIRE(::waitpid(child, nullptr, 0) == child);
  REQUIRE(got == static_cast<ssize_t>(sizeof member));
  REQUIRE(dir_size > 0);
  // Its data directory stays (nothing ran to remove it): this test removes it.
  struct RemoveDir {
    std::filesystem::path path;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } remove_dir{std::string(dir, static_cast<std::size_t>(dir_size))};
  // The member is not our child: wait for its exit through a pidfd (readable once it is gone).
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, member, 0));
  if (pidfd < 0) {
    REQUIRE(errno == ESRCH);  // gone already
    return;
  }
  pollfd p{pidfd, POLLIN, 0};
  const int ready = ::poll(&p, 1, 10000);
  ::close(pidfd);
  if (ready != 1) ::kill(member, SIGKILL);  // this test leaves none behind either
  REQUIRE(ready == 1);
}

// ---------------------------------------------------------------------------------------------
// Locks

TEST_CASE("etcd lock: Timeout names the holder, release hands over, etcd_locks lists it",
          "[etcd]") {
  REQUIRE_ETCD();
  const std::string location = lockdb::test::shared_etcd().fresh_location();
  Child holder(helper({"etcd-lock-hold", location, "jobs", "5"}));
  REQUIRE(holder.expect_line("LOCKED"));

  lockdb::EtcdLock lock(location, "jobs");
  try {
    lock.acquire(200ms);
    FAIL("acquired a held lock");
  } catch (const lockdb::Timeout& e) {
    REQUIRE(e.holder());
    REQUIRE(e.holder()->pid == holder.pid());
    REQUIRE_THAT(std::string(e.what()),
                 Catch::Contains("jobs") && Catch::Contains(std::to_string(holder.pid())));
  }
  REQUIRE_FALSE(lock.try_acquire());
  auto locks = lockdb::etcd_locks(location);
  REQUIRE(locks.size() == 1);
  REQUIRE(locks[0].name == "jobs");
  REQUIRE(locks[0].holder.pid == holder.pid());
  REQUIRE(locks[0].holder.program.find("lockdb_test") != std::string::npos);

  // Released: a waiter gets it at once (woken by the watch, long before any TTL).
  std::thread release([&] { holder.write_line("go"); });
  const auto start = std::chrono::steady_clock::now();
  lock.acquire(10s);
  release.join();
  REQUIRE(std::chrono::steady_clock::now() - start < 3s);
  REQUIRE(holder.expect_line("RELEASED"));
  REQUIRE(lock.is_locked());
  REQUIRE(lockdb::etcd_locks(location).at(0).holder.pid == ::getpid());
  lock.release();
  REQUIRE(lockdb::etcd_locks(location).empty());
  REQUIRE(holder.wait() == 0);
}

TEST_CASE("etcd singleton: one instance per cluster", "[etcd]") {
  REQUIRE_ETCD();
  const std::string location = lockdb::test::shared_etcd().fresh_location();
  Child first(helper({"etcd-singleton", location, "daemon"}));
  REQUIRE(first.expect_line("HELD"));
  Child second(helper({"etcd-singleton", location, "daemon"}));
  auto line = second.read_line();
  REQUIRE(line);
  REQUIRE_THAT(*line, Catch::StartsWith("RUNNING") && Catch::Contains(std::to_string(first.pid())));
  REQUIRE(second.wait() == 0);
  first.write_line("go");
  REQUIRE(first.wait() == 0);
  auto guard = lockdb::EtcdLock::hold_singleton(location, "daemon");
  REQUIRE(guard.is_locked());
}

// ---------------------------------------------------------------------------------------------
// The same behaviour on both backends, from real processes

TEST_CASE("both backends: 4 processes x 150 increments of one key = 600, history chained",
          "[etcd][concurrency]") {
  REQUIRE_ETCD();
  TempDir tmp;
  for (const auto& [backend, location] : both_backends(tmp)) {
    INFO(backend);
    Store store(location);
    const int procs = 4, n = 150;
    std::vector<std::unique_ptr<Child>> kids;
    for (int i = 0; i < procs; ++i) {
      kids.push_back(std::make_unique<Child>(
          helper({"store-increment", location, "counter", std::to_string(n)})));
    }
    for (auto& k : kids) REQUIRE(k->expect_line("READY"));
    for (auto& k : kids) k->write_line("go");
    for (auto& k : kids) REQUIRE(k->wait() == 0);
    REQUIRE(store.get("counter") == procs * n);
    auto records = records_of(location, "counter");
    REQUIRE(records.size() == static_cast<std::size_t>(procs * n));
    std::optional<std::string> last;
    for (std::size_t i = 0; i < records.size(); ++i) {
      INFO("record " << i);
      REQUIRE(records[i].prev_version == last);
      REQUIRE(records[i].value == json(i + 1));  // commit order is log order
      last = records[i].version;
    }
    REQUIRE(store.entry("counter")->version == *last);
    REQUIRE(store.verify().empty());
  }
}

TEST_CASE("both backends: compare_and_put races: 4 processes x 40 wins = 160",
          "[etcd][concurrency]") {
  REQUIRE_ETCD();
  TempDir tmp;
  for (const auto& [backend, location] : both_backends(tmp)) {
    INFO(backend);
    Store store(location);
    std::vector<std::unique_ptr<Child>> kids;
    for (int i = 0; i < 4; ++i) {
      kids.push_back(std::make_unique<Child>(helper({"backend-cas", location, "n", "40"})));
    }
    for (auto& k : kids) REQUIRE(k->expect_line("READY"));
    for (auto& k : kids) k->write_line("go");
    for (auto& k : kids) {
      auto line = k->read_line();
      REQUIRE(line);
      REQUIRE_THAT(*line, Catch::StartsWith("DONE "));
      REQUIRE(k->wait() == 0);
    }
    REQUIRE(store.get("n") == 160);
    REQUIRE(records_of(location, "n").size() == 160);
  }
}

TEST_CASE("both backends: update_many transfers between keys keep the sum", "[etcd][concurrency]") {
  REQUIRE_ETCD();
  TempDir tmp;
  for (const auto& [backend, location] : both_backends(tmp)) {
    INFO(backend);
    Store store(location);
    const std::vector<std::string> keys = {"acct/a", "acct/b", "acct/c", "acct/d"};
    for (const auto& k : keys) store.put(k, 1000);
    std::vector<std::unique_ptr<Child>> kids;
    for (int i = 0; i < 4; ++i) {
      std::vector<std::string> args = {"backend-transfer", location, "40"};
      args.insert(args.end(), keys.begin(), keys.end());
      kids.push_back(std::make_unique<Child>(helper(args)));
    }
    for (auto& k : kids) REQUIRE(k->expect_line("READY"));
    for (auto& k : kids) k->write_line("go");
    // While they run, every consistent read of all keys sums to 4000.
    for (int round = 0; round < 20; ++round) {
      long sum = 0;
      store.update_many(keys, [&](std::map<std::string, json>& v) {
        sum = 0;
        for (const auto& [k, value] : v) sum += value.get<long>();
      });
      REQUIRE(sum == 4000);
    }
    for (auto& k : kids) REQUIRE(k->wait() == 0);
    long sum = 0;
    for (const auto& k : keys) sum += store.get(k)->get<long>();
    REQUIRE(sum == 4000);
    lockdb::Query q;
    q.op = "update_many";
    REQUIRE(lockdb::History(location).records(q).size() == 4 * 40 * 2);
  }
}

TEST_CASE("both backends: put and compare_and_put record the op they are given", "[etcd]") {
  REQUIRE_ETCD();
  TempDir tmp;
  for (const auto& [backend, location] : both_backends(tmp)) {
    INFO(backend);
    Store store(location);
    store.put("k", 1, "import");
    REQUIRE(store.compare_and_put("k", store.entry("k")->version, 2, "migrate"));
    store.put("k", 3);
    REQUIRE(store.compare_and_put("k", store.entry("k")->version, 4));
    std::vector<std::string> ops;
    for (const auto& r : records_of(location, "k")) ops.push_back(r.op);
    REQUIRE(ops == std::vector<std::string>{"import", "migrate", "put", "cas"});
    REQUIRE(code_of([&] { store.put("k", 5, "Bad-Op"); }) == lockdb::Errc::invalid_argument);
    REQUIRE(store.get("k") == 4);
  }
}

TEST_CASE("etcd: with_key_locked says an etcd store has no key files", "[etcd]") {
  REQUIRE_ETCD();
  Store store(lockdb::test::shared_etcd().fresh_location());
  bool ran = false;
  std::string what;
  REQUIRE(
      code_of([&] { store.with_key_locked("k", Store::LockMode::exclusive, [&] { ran = true; }); },
              &what) == lockdb::Errc::invalid_argument);
  REQUIRE_FALSE(ran);
  REQUIRE_THAT(what, Catch::Contains("etcd") && Catch::Contains("EtcdLock"));
}

TEST_CASE("both backends: keys with every character the directory store accepts", "[etcd]") {
  REQUIRE_ETCD();
  TempDir tmp;
  std::vector<std::string> keys;
  for (int c = 0; c < 128; ++c) keys.push_back("k" + std::string(1, static_cast<char>(c)) + "x");
  for (const char* k : {"/", "..", ".", "a/../b", "\xc3\xa9t\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac",
                        "\xf0\x9f\x99\x82", " lead", "trail "}) {
    keys.emplace_back(k);
  }
  keys.push_back(std::string(1024, 'z'));
  keys.push_back(std::string(1, '\0'));
  for (const auto& [backend, location] : both_backends(tmp)) {
    INFO(backend);
    Store store(location);
    for (std::size_t i = 0; i < keys.size(); ++i) store.put(keys[i], static_cast<int>(i));
    std::vector<std::string> sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    REQUIRE(store.keys() == sorted);
    for (std::size_t i = 0; i < keys.size(); ++i)
      REQUIRE(store.get(keys[i]) == static_cast<int>(i));
    REQUIRE(records_of(location, keys[5]).size() == 1);
    REQUIRE(code_of([&] { store.put(std::string(1025, 'z'), 1); }) ==
            lockdb::Errc::invalid_argument);
    REQUIRE(code_of([&] { store.put("\xff", 1); }) == lockdb::Errc::invalid_argument);
  }
}

#ifdef LOCKDB_CLI
TEST_CASE("etcd: the lockdb command works on an etcd location, locks lists lease holders",
          "[etcd][cli]") {
  REQUIRE_ETCD();
  const std::string location = lockdb::test::shared_etcd().fresh_location();
  auto cli = [](std::vector<std::string> args, const std::string& in = {}) {
    args.insert(args.begin(), LOCKDB_CLI);
    return lockdb::test::run(args, in);
  };
  REQUIRE(cli({"put", "--create", location, "a", "{\"x\":1}"}).code == 0);
  REQUIRE(cli({"incr", location, "c"}).out == "1\n");
  REQUIRE(cli({"incr", location, "c"}).out == "2\n");
  REQUIRE(cli({"keys", location}).out == "a\nc\n");
  auto log = cli({"log", location, "--json"});
  REQUIRE(log.code == 0);
  REQUIRE(std::count(log.out.begin(), log.out.end(), '\n') == 3);
  REQUIRE(cli({"verify", location}).code == 0);

  Child holder(helper({"etcd-lock-hold", location, "nightly", "5"}));
  REQUIRE(holder.expect_line("LOCKED"));
  auto locks = cli({"locks", location, "--json"});
  REQUIRE(locks.code == 0);
  auto line = json::parse(locks.out);
  REQUIRE(line["lock"] == "lock/nightly");
  REQUIRE(line["state"] == "held");
  REQUIRE(line["holder"]["pid"] == holder.pid());
  holder.write_line("go");
  REQUIRE(holder.wait() == 0);
  REQUIRE(cli({"locks", location, "--json"}).out.empty());

  // import records its own op, as on a directory; run has no key file to lock on etcd.
  REQUIRE(cli({"import", location}, "{\"key\":\"imported\",\"value\":[1,2]}\n").code == 0);
  auto imported = json::parse(cli({"log", location, "--key", "imported", "--json"}).out);
  REQUIRE(imported["op"] == "import");
  REQUIRE(imported["value"] == json::array({1, 2}));
  auto run = cli({"run", location, "k", "--", "true"});
  REQUIRE(run.code != 0);
  REQUIRE_THAT(run.err, Catch::Contains("etcd store has no key files"));
}

TEST_CASE("etcd: log --follow is woken by the etcd watch, not a polling interval", "[etcd][cli]") {
  REQUIRE_ETCD();
  const std::string location = lockdb::test::shared_etcd().fresh_location();
  Store store(location);
  store.put("k", 0);
  // --from-start: the record above comes first, so that line says the follower is in place.
  constexpr int kRounds = 40;
  Child follow({LOCKDB_CLI, "log", location, "--follow", "--from-start", "--quiet", "--json",
                "--limit", std::to_string(kRounds + 1)});
  auto line = follow.read_line();
  REQUIRE(line);
  REQUIRE(json::parse(*line)["value"] == 0);
  // Ping-pong: each write waits for the follower to print the one before. A follower that slept
  // 200 ms between reads (as the CLI did on etcd) would need at least 8 s for 40 rounds; one
  // woken by the watch takes a round trip or two per round.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1; i <= kRounds; ++i) {
    store.put("k", i);
    line = follow.read_line();
    REQUIRE(line);
    REQUIRE(json::parse(*line)["value"] == i);
  }
  const auto took = std::chrono::steady_clock::now() - start;
  INFO(std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  REQUIRE(took < 6s);
  REQUIRE(follow.wait() == 0);
}
#endif

#ifdef LOCKDB_EXAMPLE_ETCD_COUNTERS
TEST_CASE("example: etcd_counters on the three-member cluster it starts", "[etcd][examples]") {
  REQUIRE_ETCD();
  auto r = lockdb::test::run({LOCKDB_EXAMPLE_ETCD_COUNTERS, "", "3", "4"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("jobs_done = 12 (expected 12)") &&
                          Catch::Contains("12 records, 12 chained"));
  // Its members are gone with it: nothing answers on the endpoints it printed.
  const auto at = r.out.find("store: etcd://");
  REQUIRE(at != std::string::npos);
  const std::string started = r.out.substr(at + 7, r.out.find('\n', at) - at - 7);
  lockdb::StoreOptions quick;
  quick.request_timeout = 1s;
  REQUIRE(code_of([&] { Store gone(started, quick); }) == lockdb::Errc::io);

  // Given a location, it runs there and starts nothing.
  const std::string location = lockdb::test::shared_etcd().fresh_location();
  r = lockdb::test::run({LOCKDB_EXAMPLE_ETCD_COUNTERS, location, "2", "3"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, !Catch::Contains("starting") && Catch::Contains("jobs_done = 6"));
  REQUIRE(Store(location).get("jobs_done") == 6);
}
#endif
