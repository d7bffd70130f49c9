#include <lockdb/file_lock.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <sstream>

#include <csignal>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using lockdb::test::Child;
using lockdb::test::TempDir;

namespace {

// A marker as another holder would have written it.
void plant_marker(const std::filesystem::path& path, long pid, const std::string& host,
                  const std::string& start, const std::string& nonce) {
  nlohmann::json j = {{"pid", pid},     {"host", host},
                      {"start", start}, {"time", "2026-01-01T00:00:00.000000Z"},
                      {"nonce", nonce}, {"program", "planted"}};
  lockdb::test::write_text(path, j.dump() + "\n");
}

void age_file(const std::filesystem::path& path, std::chrono::seconds age) {
  timespec times[2];
  clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= age.count();
  times[1] = times[0];
  REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

long dead_pid() {
  auto r = lockdb::test::run({lockdb::test::helper_path(), "pid"});
  return std::stol(r.out);  // reaped by run(): this pid no longer exists
}

std::string nonce_of(const std::filesystem::path& path) {
  return nlohmann::json::parse(lockdb::test::read_text(path)).at("nonce");
}

// Checks that LOG holds only "enter P" immediately followed by "exit P" pairs; returns pairs.
std::size_t check_no_overlap(const std::filesystem::path& log) {
  std::istringstream in(lockdb::test::read_text(log));
  std::string a, b;
  std::size_t pairs = 0;
  while (std::getline(in, a)) {
    REQUIRE(a.rfind("enter ", 0) == 0);
    REQUIRE(std::getline(in, b));
    REQUIRE(b == "exit " + a.substr(6));
    ++pairs;
  }
  return pairs;
}

}  // namespace

TEST_CASE("N processes x M increments under SoftFileLock give exactly N*M", "[soft_lock][stress]") {
  TempDir dir;
  lockdb::test::write_text(dir / "counter", "0");
  const int n = 4, m = 100 / LOCKDB_STRESS_DIVISOR;
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < n; ++i) {
    kids.push_back(std::make_unique<Child>(std::vector<std::string>{
        lockdb::test::helper_path(), "lock-increment", "soft", (dir / "counter.lock").string(),
        (dir / "counter").string(), std::to_string(m), "2"}));
  }
  for (auto& k : kids) REQUIRE(k->wait() == 0);
  REQUIRE(std::stol(lockdb::test::read_text(dir / "counter")) == n * m * 2);
  REQUIRE_FALSE(std::filesystem::exists(dir / "counter.lock"));  // released = marker removed
}

TEST_CASE("a live holder's marker is respected and named in the timeout", "[soft_lock]") {
  TempDir dir;
  auto path = dir / "live.lock";
  Child holder({lockdb::test::helper_path(), "hold", "soft", path.string()});
  REQUIRE(holder.expect_line("LOCKED"));
  lockdb::SoftFileLock lock(path);
  REQUIRE_FALSE(lock.try_lock());
  try {
    auto g = lock.acquire(100ms);
    FAIL("acquired a soft lock held by a live process");
  } catch (const lockdb::Timeout& e) {
    REQUIRE(e.holder().has_value());
    REQUIRE(e.holder()->pid == holder.pid());
    REQUIRE(e.holder()->host == lockdb::os::hostname());
    REQUIRE(e.holder()->since.has_value());
    REQUIRE_THAT(std::string(e.what()),
                 Catch::Contains(path.string()) && Catch::Contains(std::to_string(holder.pid())));
  }
  REQUIRE(lock.holder()->pid == holder.pid());
  REQUIRE_FALSE(lockdb::SoftFileLock::is_stale(path, 300s));
  holder.write_line("release");
  REQUIRE(holder.expect_line("RELEASED"));
  REQUIRE(lock.try_lock());
  lock.unlock();
  REQUIRE(holder.wait() == 0);
}

TEST_CASE("a dead holder's marker on this host is broken at once", "[soft_lock]") {
  TempDir dir;
  auto path = dir / "dead.lock";
  SECTION("the pid is gone") {
    plant_marker(path, dead_pid(), lockdb::os::hostname(), "", "deadbeef");
  }
  SECTION("the pid was reused: its start token differs") {
    plant_marker(path, lockdb::os::pid(), lockdb::os::hostname(), "not-this-boot:1", "reused");
  }
  SECTION("the holder was SIGKILLed while holding") {
    Child holder({lockdb::test::helper_path(), "hold", "soft", path.string()});
    REQUIRE(holder.expect_line("LOCKED"));
    holder.kill(SIGKILL);
    holder.wait();
    REQUIRE(std::filesystem::exists(path));
  }
  REQUIRE(lockdb::SoftFileLock::is_stale(path, 300s));
  lockdb::SoftFileLock lock(path);
  REQUIRE(lock.try_lock());  // a zero timeout still breaks a provably dead holder's marker
  REQUIRE(lock.holder()->pid == lockdb::os::pid());
  lock.unlock();
  REQUIRE_FALSE(std::filesystem::exists(path));
  for (auto& e : std::filesystem::directory_iterator(dir.path())) {
    FAIL("left behind: " << e.path());  // no tombstone or moved marker remains
  }
}

TEST_CASE("a dead but unreaped holder (a zombie) holds nothing: its marker is broken at once",
          "[soft_lock]") {
  TempDir dir;
  auto path = dir / "zombie.lock";
  Child holder({lockdb::test::helper_path(), "hold", "soft", path.string()});
  REQUIRE(holder.expect_line("LOCKED"));
  holder.kill(SIGKILL);
  // Wait until it has exited, but leave it unreaped: a zombie that still has its pid.
  siginfo_t info{};
  REQUIRE(waitid(P_PID, static_cast<id_t>(holder.pid()), &info, WEXITED | WNOWAIT) == 0);
  REQUIRE(::kill(holder.pid(), 0) == 0);  // the pid still exists
  REQUIRE(std::filesystem::exists(path));

  REQUIRE(lockdb::SoftFileLock::is_stale(path, 300s));
  lockdb::SoftFileLock lock(path);
  REQUIRE(lock.try_lock());  // no timeout needed: a zombie is provably not holding it
  REQUIRE(lock.holder()->pid == lockdb::os::pid());
  lock.unlock();
  REQUIRE(holder.wait() == 128 + SIGKILL);
}

TEST_CASE("another host's marker is broken only after stale_after", "[soft_lock]") {
  TempDir dir;
  auto path = dir / "remote.lock";
  plant_marker(path, 4242, "some-other-host", "x:1", "remote1");
  lockdb::SoftFileLock lock(path, lockdb::SoftLockOptions{.stale_after = 60s});
  age_file(path, 10s);  // a recent heartbeat: respected
  REQUIRE_FALSE(lockdb::SoftFileLock::is_stale(path, 60s));
  REQUIRE_FALSE(lock.try_lock());
  REQUIRE(nonce_of(path) == "remote1");
  age_file(path, 120s);  // no heartbeat for longer than stale_after: broken
  REQUIRE(lockdb::SoftFileLock::is_stale(path, 60s));
  REQUIRE(lock.try_lock());
  REQUIRE(nonce_of(path) != "remote1");
  lock.unlock();
}

TEST_CASE("an unparseable marker is respected until stale_after", "[soft_lock]") {
  TempDir dir;
  auto path = dir / "torn.lock";
  lockdb::test::write_text(path, "");  // its creator died between create and write
  lockdb::SoftFileLock lock(path, lockdb::SoftLockOptions{.stale_after = 60s});
  REQUIRE_FALSE(lock.try_lock());
  age_file(path, 61s);
  REQUIRE(lock.try_lock());
  lock.unlock();
}

TEST_CASE("8 processes racing to break one stale marker never overlap", "[soft_lock]") {
  TempDir dir;
  auto path = dir / "race.lock";
  auto log = dir / "log";
  const int racers = 8, per_racer = 10, rounds = 4;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<Child>> kids;
    for (int i = 0; i < racers; ++i) {
      kids.push_back(std::make_unique<Child>(
          std::vector<std::string>{lockdb::test::helper_path(), "soft-race", path.string(),
                                   log.string(), std::to_string(per_racer)}));
    }
    for (auto& k : kids) REQUIRE(k->expect_line("READY"));
    // All racers see the same stale marker of a dead holder, then start together.
    plant_marker(path, dead_pid(), lockdb::os::hostname(), "", "stale" + std::to_string(round));
    for (auto& k : kids) k->write_line("go");
    for (auto& k : kids) {
      REQUIRE(k->expect_line("DONE"));
      REQUIRE(k->wait() == 0);
    }
  }
  REQUIRE(check_no_overlap(log) == std::size_t(racers * per_racer * rounds));
  REQUIRE_FALSE(std::filesystem::exists(path));
}

TEST_CASE("release removes only our own marker, refresh notices a lost marker", "[soft_lock]") {
  TempDir dir;
  auto path = dir / "own.lock";
  lockdb::SoftFileLock lock(path);
  lock.lock();
  auto before = std::filesystem::last_write_time(path);
  age_file(path, 30s);
  lock.refresh();  // the heartbeat moves the mtime forward again
  REQUIRE(std::filesystem::last_write_time(path) >= before);
  // Someone judged our marker stale and replaced it with theirs.
  plant_marker(path, 4242, "some-other-host", "x:1", "theirs");
  try {
    lock.refresh();
    FAIL("refresh of a marker that is not ours succeeded");
  } catch (const lockdb::Error& e) {
    REQUIRE(e.code() == lockdb::Errc::not_owner);
    REQUIRE_THAT(std::string(e.what()), Catch::Contains(path.string()));
  }
  lock.unlock();  // must not remove their marker
  REQUIRE(nonce_of(path) == "theirs");
}

TEST_CASE("soft lock errors name the path and the cause", "[soft_lock]") {
  TempDir dir;
  std::filesystem::create_directory(dir / "d.lock");
  lockdb::SoftFileLock lock(dir / "d.lock");
  try {
    lock.lock();
    FAIL("soft-locked a directory");
  } catch (const lockdb::Timeout&) {
    FAIL("a directory reported as a timeout");
  } catch (const lockdb::Error& e) {
    REQUIRE(e.code() == lockdb::Errc::invalid_argument);
    REQUIRE_THAT(std::string(e.what()), Catch::Contains("d.lock") && Catch::Contains("directory"));
  }
  lockdb::SoftFileLock deep(dir / "x" / "y" / "z.lock");  // parents are created
  REQUIRE(deep.try_lock());
  deep.unlock();
}
