// Descriptors and waits: the files.hpp and guards.hpp calls hold no descriptor once they return
// (so a filesystem they wrote can be unmounted at once), and a store write honours its timeout
// while another process holds the log lock (the Timeout names that lock and its holder, and the
// key is not left locked).
#include <lockdb/file_lock.hpp>
#include <lockdb/files.hpp>
#include <lockdb/guards.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <dirent.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include "support.hpp"

namespace fs = std::filesystem;
using lockdb::test::Child;
using lockdb::test::TempDir;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// The descriptors this process has open: number -> what it names (/proc/self/fd).
std::map<int, std::string> open_fds() {
  std::map<int, std::string> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  REQUIRE(dir != nullptr);
  const int own = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == own) continue;
    char target[4096];
    const auto n = ::readlinkat(own, e->d_name, target, sizeof target - 1);
    fds[fd] = n < 0 ? std::string("?") : std::string(target, static_cast<std::size_t>(n));
  }
  ::closedir(dir);
  return fds;
}

// One use of a public function of files.hpp or guards.hpp, on files in `dir`. Objects
// (SingletonGuard, KeyedLockRegistry) live only inside the call.
struct Use {
  const char* name;
  std::function<void(const fs::path& dir)> run;
};

std::vector<Use> uses() {
  return {
      {"locked_write truncate", [](const fs::path& d) { lockdb::locked_write(d / "a", "x"); }},
      {"locked_write append",
       [](const fs::path& d) { lockdb::locked_write(d / "a", "y", lockdb::WriteMode::append); }},
      {"locked_write durability full",
       [](const fs::path& d) {
         lockdb::locked_write(d / "a", "z", lockdb::WriteMode::truncate,
                              {.lock_timeout = 5s, .durability = lockdb::Durability::full});
       }},
      {"locked_read", [](const fs::path& d) { (void)lockdb::locked_read(d / "a"); }},
      {"try_locked_write",
       [](const fs::path& d) { REQUIRE(lockdb::try_locked_write(d / "a", "w")); }},
      {"try_locked_write append",
       [](const fs::path& d) {
         REQUIRE(lockdb::try_locked_write(d / "a", "v", lockdb::WriteMode::append));
       }},
      {"atomic_write", [](const fs::path& d) { lockdb::atomic_write(d / "b", "1"); }},
      {"atomic_write durability none",
       [](const fs::path& d) {
         lockdb::atomic_write(d / "b", "2", {.durability = lockdb::Durability::none});
       }},
      {"atomic_write durability full",
       [](const fs::path& d) {
         lockdb::atomic_write(d / "b", "3", {.durability = lockdb::Durability::full});
       }},
      {"atomic_write without the lock",
       [](const fs::path& d) { lockdb::atomic_write(d / "b", "4", {.take_lock = false}); }},
      {"atomic_write into a new directory",
       [](const fs::path& d) { lockdb::atomic_write(d / "new" / "c", "5"); }},
      {"atomic_json_update",
       [](const fs::path& d) {
         lockdb::atomic_json_update(d / "c.json", [](json& doc) { doc["n"] = 1; });
       }},
      {"atomic_json_update nested locked_read",
       [](const fs::path& d) {
         lockdb::atomic_json_update(
             d / "c.json", [&](json& doc) { doc["text"] = lockdb::locked_read(d / "c.json"); });
       }},
      {"atomic_json_update whose fn throws",
       [](const fs::path& d) {
         REQUIRE_THROWS_AS(lockdb::atomic_json_update(
                               d / "c.json", [](json&) { throw std::runtime_error("no"); }),
                           std::runtime_error);
       }},
      {"atomic_json_update of a corrupt file",
       [](const fs::path& d) {
         lockdb::atomic_write(d / "bad.json", "{", {.take_lock = false});
         REQUIRE_THROWS_AS(lockdb::atomic_json_update(d / "bad.json", [](json&) {}), lockdb::Error);
       }},
      {"locked_append", [](const fs::path& d) { lockdb::locked_append(d / "log", "line"); }},
      {"locked_append_json",
       [](const fs::path& d) {
         lockdb::locked_append_json(d / "log", json{{"k", 1}});
       }},
      {"nfs_safe_write", [](const fs::path& d) { lockdb::nfs_safe_write(d / "n", "x"); }},
      {"SingletonGuard acquire, holder, release",
       [](const fs::path& d) {
         lockdb::SingletonGuard guard("job", d);
         REQUIRE(guard.acquire());
         REQUIRE(guard.holder());
         guard.release();
       }},
      {"SingletonGuard::hold",
       [](const fs::path& d) {
         auto guard = lockdb::SingletonGuard::hold("job", d);
         REQUIRE(guard.is_locked());
       }},
      {"KeyedLockRegistry lock and lock_many",
       [](const fs::path& d) {
         lockdb::KeyedLockRegistry registry(d / "keyed");
         { auto held = registry.lock("a"); }
         auto all = registry.lock_many({"a", "b", "c"});
         REQUIRE(all.size() == 3);
       }},
      {"KeyedLockRegistry with stripes",
       [](const fs::path& d) {
         lockdb::KeyedLockRegistry registry(d / "striped", 5s, 4);
         auto all = registry.lock_many({"a", "b", "c", "d", "e"});
         REQUIRE(all.is_locked());
       }},
  };
}

// A locked call that times out (another process holds the lock) holds nothing afterwards either.
std::vector<Use> timing_out_uses() {
  return {
      {"locked_write",
       [](const fs::path& d) {
         REQUIRE_THROWS_AS(lockdb::locked_write(d / "held", "x", lockdb::WriteMode::truncate,
                                                {.lock_timeout = 20ms}),
                           lockdb::Timeout);
       }},
      {"try_locked_write",
       [](const fs::path& d) { REQUIRE_FALSE(lockdb::try_locked_write(d / "held", "x")); }},
      {"atomic_write",
       [](const fs::path& d) {
         REQUIRE_THROWS_AS(lockdb::atomic_write(d / "held", "x", {.lock_timeout = 20ms}),
                           lockdb::Timeout);
       }},
      {"atomic_json_update",
       [](const fs::path& d) {
         REQUIRE_THROWS_AS(
             lockdb::atomic_json_update(d / "held", [](json&) {}, {.lock_timeout = 20ms}),
             lockdb::Timeout);
       }},
      {"locked_append",
       [](const fs::path& d) {
         REQUIRE_THROWS_AS(lockdb::locked_append(d / "held", "x", {.lock_timeout = 20ms}),
                           lockdb::Timeout);
       }},
      {"locked_read",
       [](const fs::path& d) {
         REQUIRE_THROWS_AS(lockdb::locked_read(d / "held", 20ms), lockdb::Timeout);
       }},
  };
}

// Why a tmpfs of our own cannot be mounted here (empty when it can): this process moves into a
// mount namespace of its own once, so that its mounts are invisible elsewhere and vanish with it.
std::string tmpfs_unavailable() {
  static const std::string why = []() -> std::string {
    if (::geteuid() != 0) return "not root: cannot mount a tmpfs";
    if (::unshare(CLONE_NEWNS) != 0) {
      return std::string("cannot make a mount namespace (unshare: ") + std::strerror(errno) + ")";
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      return std::string("cannot make the mounts private: ") + std::strerror(errno);
    }
    TempDir probe;
    if (::mount("tmpfs", probe.path().c_str(), "tmpfs", 0, "size=1m") != 0) {
      return std::string("mount(2) of a tmpfs failed: ") + std::strerror(errno);
    }
    ::umount(probe.path().c_str());
    return {};
  }();
  return why;
}

}  // namespace

TEST_CASE("every files.hpp and guards.hpp call leaves the open descriptors as they were",
          "[descriptors]") {
  TempDir dir;
  for (const Use& use : uses()) {
    INFO(use.name);
    // Twice: a first call creates the lock file, a second finds it.
    for (int round = 0; round < 2; ++round) {
      const auto before = open_fds();
      use.run(dir.path());
      REQUIRE(open_fds() == before);
    }
  }
}

TEST_CASE("a call that times out on a lock held by another process holds no descriptor after",
          "[descriptors]") {
  TempDir dir;
  lockdb::test::write_text(dir / "held", "{}");
  Child holder({lockdb::test::helper_path(), "hold", "hard", (dir / "held.lock").string()});
  REQUIRE(holder.expect_line("LOCKED"));
  for (const Use& use : timing_out_uses()) {
    INFO(use.name);
    const auto before = open_fds();
    use.run(dir.path());
    REQUIRE(open_fds() == before);
  }
  holder.write_line("go");
  REQUIRE(holder.expect_line("RELEASED"));
}

TEST_CASE("a tmpfs written with any files.hpp or guards.hpp call can be unmounted at once",
          "[descriptors][tmpfs]") {
  if (const std::string why = tmpfs_unavailable(); !why.empty()) {
    const std::string reason = "skipped: " + why;
    std::printf("%s\n", reason.c_str());
    WARN(reason);
    return;
  }
  TempDir dir;
  const fs::path mnt = dir / "mnt";
  fs::create_directory(mnt);
  for (const Use& use : uses()) {
    INFO(use.name);
    REQUIRE(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=4m") == 0);
    bool mounted = true;
    try {
      lockdb::test::write_text(mnt / "a", "x");        // for locked_read
      lockdb::test::write_text(mnt / "c.json", "{}");  // for the nested locked_read
      use.run(mnt);
      use.run(mnt);
      const int rc = ::umount(mnt.c_str());
      const int err = errno;
      INFO("umount: " << (rc == 0 ? "ok" : std::strerror(err)));
      mounted = rc != 0;
      REQUIRE(rc == 0);
    } catch (...) {
      if (mounted) ::umount2(mnt.c_str(), MNT_DETACH);
      throw;
    }
  }
}

TEST_CASE("a store write waits for the log lock no longer than lock_timeout", "[descriptors]") {
  TempDir dir;
  lockdb::StoreOptions options;
  options.lock_timeout = 300ms;
  lockdb::Store store(dir / "store", options);
  store.put("k", 1);
  store.put("j", 10);
  const fs::path log_lock = dir / "store" / "log" / "log.lock";
  REQUIRE(fs::exists(log_lock));
  const fs::path key_lock = store.file_path("k").string() + ".lock";

  Child holder({lockdb::test::helper_path(), "hold", "hard", log_lock.string()});
  REQUIRE(holder.expect_line("LOCKED"));

  auto expect_log_timeout = [&](const std::function<void()>& write) {
    const auto start = std::chrono::steady_clock::now();
    auto done = std::async(std::launch::async, write);
    if (done.wait_for(10s) != std::future_status::ready) {
      // Let the stuck write go on, so that the test ends in this failure instead of a hang.
      holder.write_line("go");
      done.wait();
      FAIL("the write still waited for the log lock 10 s after it began (lock_timeout 300 ms)");
    }
    try {
      done.get();
      FAIL("the write succeeded while another process held the log lock");
    } catch (const lockdb::Timeout& e) {
      const auto took = std::chrono::steady_clock::now() - start;
      INFO(e.what());
      REQUIRE(e.code() == lockdb::Errc::timeout);
      REQUIRE(e.path() == log_lock);
      REQUIRE(e.holder().has_value());
      REQUIRE(e.holder()->pid == holder.pid());
      REQUIRE_THAT(std::string(e.what()), Catch::Contains("log.lock") &&
                                              Catch::Contains("taken back") &&
                                              Catch::Contains("300 ms"));
      REQUIRE(took >= 300ms);
      REQUIRE(took < 3s);  // generous: a loaded machine; the bug waited for the holder (forever)
    }
  };

  SECTION("put") {
    expect_log_timeout([&] { store.put("k", 2); });
    REQUIRE(store.get("k") == json(1));  // taken back
  }
  SECTION("a new key") {
    expect_log_timeout([&] { store.put("fresh", 2); });
    REQUIRE_FALSE(store.contains("fresh"));
  }
  SECTION("erase") {
    expect_log_timeout([&] { store.erase("k"); });
    REQUIRE(store.get("k") == json(1));
  }
  SECTION("update_many") {
    expect_log_timeout([&] {
      store.update_many({"j", "k"}, [](std::map<std::string, json>& values) {
        values["j"] = 11;
        values["k"] = 12;
      });
    });
    REQUIRE(store.get("j") == json(10));
    REQUIRE(store.get("k") == json(1));
  }
  // The key is not left locked: another lock on its lock file is had at once.
  lockdb::FileLock key(key_lock);
  REQUIRE(key.try_lock());
  key.unlock();

  holder.write_line("go");
  REQUIRE(holder.expect_line("RELEASED"));
  store.put("k", 3);
  REQUIRE(store.get("k") == json(3));
  // Nothing of the failed writes is in the log.
  REQUIRE(lockdb::History(dir / "store").records().size() == 3);
}
