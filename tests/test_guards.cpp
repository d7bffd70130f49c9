#include <lockdb/guards.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <memory>
#include <set>
#include <thread>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.hpp"

using namespace std::chrono_literals;
using lockdb::KeyedLockRegistry;
using lockdb::SingletonGuard;
using lockdb::test::Child;
using lockdb::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string helper() { return lockdb::test::helper_path(); }

Child singleton_holder(const std::string& name, const fs::path& dir) {
  return Child({helper(), "singleton-hold", name, dir.string()});
}

std::string singleton_try(const std::string& name, const fs::path& dir,
                          const std::string& uid = "") {
  std::vector<std::string> argv{helper(), "singleton-try", name, dir.string()};
  if (!uid.empty()) argv.push_back(uid);
  return lockdb::test::run(argv).out;
}

Child keyed_holder(const fs::path& dir, int stripes, const std::vector<std::string>& keys) {
  std::vector<std::string> argv{helper(), "keyed-hold", dir.string(), std::to_string(stripes)};
  argv.insert(argv.end(), keys.begin(), keys.end());
  return Child(argv);
}

std::string keyed_try(const fs::path& dir, int stripes, const std::string& key) {
  return lockdb::test::run({helper(), "keyed-try", dir.string(), std::to_string(stripes), key}).out;
}

long counter_of(const fs::path& dir, const std::string& key) {
  std::ifstream in(dir / ("count-" + key));
  long v = 0;
  in >> v;
  return v;
}

// Runs the helper `keyed-incr` once per entry of `key_sets`, released together, M times each.
void keyed_increments(const fs::path& dir, int stripes, int m,
                      const std::vector<std::vector<std::string>>& key_sets) {
  std::vector<std::unique_ptr<Child>> kids;
  for (const auto& keys : key_sets) {
    std::vector<std::string> argv{helper(), "keyed-incr", dir.string(), std::to_string(stripes),
                                  std::to_string(m)};
    argv.insert(argv.end(), keys.begin(), keys.end());
    kids.push_back(std::make_unique<Child>(argv));
  }
  for (auto& k : kids) REQUIRE(k->expect_line("READY"));
  for (auto& k : kids) k->write_line("go");
  for (auto& k : kids) {
    REQUIRE(k->expect_line("DONE"));
    REQUIRE(k->wait() == 0);
  }
}

struct FileState {
  std::string content;
  unsigned mode = 0;
  uid_t uid = 0;
  long mtime_ns = 0;
  bool operator==(const FileState&) const = default;
};

FileState state_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return {lockdb::test::read_text(p), st.st_mode & 07777u, st.st_uid,
          st.st_mtim.tv_sec * 1000000000L + st.st_mtim.tv_nsec};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SingletonGuard

TEST_CASE("SingletonGuard across processes: one holder, AlreadyRunning names its pid", "[guards]") {
  TempDir dir;
  Child holder = singleton_holder("job", dir.path());
  REQUIRE(holder.expect_line("HELD"));

  SingletonGuard guard("job", dir.path());
  REQUIRE(guard.lock_path() == dir / "job.singleton.lock");
  REQUIRE_FALSE(guard.acquire());
  REQUIRE_FALSE(guard.is_locked());
  REQUIRE(singleton_try("job", dir.path()) == "0\n");
  REQUIRE(singleton_try("other-job", dir.path()) == "1\n");
  try {
    auto second = SingletonGuard::hold("job", dir.path());
    FAIL("two holders of one singleton");
  } catch (const lockdb::AlreadyRunning& e) {
    REQUIRE(e.code() == lockdb::Errc::already_running);
    REQUIRE(e.path() == dir / "job.singleton.lock");
    REQUIRE(e.holder().has_value());
    REQUIRE(e.holder()->pid == holder.pid());
    REQUIRE_THAT(std::string(e.what()), Catch::Contains("another instance of 'job' is running") &&
                                            Catch::Contains("pid " + std::to_string(holder.pid())));
  }

  holder.write_line("release");
  REQUIRE(holder.expect_line("RELEASED"));
  REQUIRE(holder.wait() == 0);
  REQUIRE(guard.acquire());
  REQUIRE(guard.is_locked());
  REQUIRE(singleton_try("job", dir.path()) == "0\n");
  guard.release();
  REQUIRE(singleton_try("job", dir.path()) == "1\n");

  SECTION("a holder killed with SIGKILL frees the name at once") {
    Child doomed = singleton_holder("job", dir.path());
    REQUIRE(doomed.expect_line("HELD"));
    REQUIRE_FALSE(guard.acquire());
    doomed.kill(SIGKILL);
    REQUIRE(doomed.wait() == 128 + SIGKILL);
    REQUIRE(guard.acquire());
  }
}

TEST_CASE("SingletonGuard in one process: other objects refused, threads and moves keep it",
          "[guards]") {
  TempDir dir;
  auto first = SingletonGuard::hold("demo", dir.path());
  REQUIRE(first.is_locked());
  REQUIRE_FALSE(SingletonGuard("demo", dir.path()).acquire());
  REQUIRE(first.acquire());  // already held through this object
  bool from_thread = false;
  std::thread([&] { from_thread = first.acquire(); }).join();
  REQUIRE(from_thread);  // held by the process, not by a thread

  SingletonGuard moved = std::move(first);
  REQUIRE(moved.is_locked());
  REQUIRE(singleton_try("demo", dir.path()) == "0\n");

  SECTION("a forked child neither holds nor releases it") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      char result = 'k';
      if (moved.is_locked()) result = 'H';
      moved.release();  // must not release the parent's hold
      if (moved.acquire()) result = 'A';
      (void)!::write(fds[1], &result, 1);
      ::_exit(0);
    }
    ::close(fds[1]);
    char result = 0;
    REQUIRE(::read(fds[0], &result, 1) == 1);
    ::close(fds[0]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    REQUIRE(result == 'k');
    REQUIRE(moved.is_locked());
    REQUIRE(singleton_try("demo", dir.path()) == "0\n");
  }
  moved.release();
  REQUIRE_FALSE(moved.is_locked());
  REQUIRE(SingletonGuard("demo", dir.path()).acquire());
}

TEST_CASE("SingletonGuard never follows a planted symlink", "[guards]") {
  TempDir dir;
  const auto lock = dir / "svc.singleton.lock";

  SECTION("to an existing file: refused, the target unchanged") {
    lockdb::test::write_text(dir / "precious", "do not touch");
    ::chmod((dir / "precious").c_str(), 0600);
    const FileState before = state_of(dir / "precious");
    fs::create_symlink(dir / "precious", lock);
    SingletonGuard guard("svc", dir.path());
    try {
      (void)guard.acquire();
      FAIL("followed a symlink");
    } catch (const lockdb::AlreadyRunning&) {
      FAIL("a symlink reported as another instance");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::invalid_argument);
      REQUIRE_THAT(std::string(e.what()),
                   Catch::Contains(lock.string()) && Catch::Contains("symbolic link"));
    }
    REQUIRE_THROWS_AS(SingletonGuard::hold("svc", dir.path()), lockdb::Error);
    REQUIRE(state_of(dir / "precious") == before);
    REQUIRE(fs::is_symlink(lock));
  }
  SECTION("dangling: the target is not created") {
    fs::create_symlink(dir / "created-by-attack", lock);
    REQUIRE_THROWS_AS(SingletonGuard("svc", dir.path()).acquire(), lockdb::Error);
    REQUIRE_FALSE(fs::exists(dir / "created-by-attack"));
  }
}

TEST_CASE("SingletonGuard uses a lock file owned by someone else without changing it", "[guards]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root to create files of another user");
    return;
  }
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  const auto lock = dir / "svc.singleton.lock";

  SECTION("owned by another user, with content") {
    lockdb::test::write_text(lock, "someone else's data\n");
    REQUIRE(::chown(lock.c_str(), 65534, 65534) == 0);
    ::chmod(lock.c_str(), 0644);
    const FileState before = state_of(lock);
    {
      SingletonGuard guard("svc", dir.path());
      REQUIRE(guard.acquire());
      REQUIRE(singleton_try("svc", dir.path()) == "0\n");
    }
    REQUIRE(state_of(lock) == before);
  }
  SECTION("an unprivileged user locks a file it may only read") {
    lockdb::test::write_text(lock, "");
    ::chmod(lock.c_str(), 0644);  // owned by root
    REQUIRE(singleton_try("svc", dir.path(), "65534") == "1\n");
    SingletonGuard guard("svc", dir.path());
    REQUIRE(guard.acquire());
    REQUIRE(singleton_try("svc", dir.path(), "65534") == "0\n");
  }
}

TEST_CASE("SingletonGuard names: invalid ones are refused, the default directory", "[guards]") {
  for (const char* bad : {"", ".", "..", "a/b", "../escape"}) {
    CAPTURE(bad);
    try {
      SingletonGuard guard(bad, "/tmp");
      FAIL("accepted a bad name");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::invalid_argument);
    }
  }
  REQUIRE_THROWS_AS(SingletonGuard(std::string("a\0b", 3)), lockdb::Error);
  REQUIRE(SingletonGuard("x").lock_path() == fs::temp_directory_path() / "x.singleton.lock");
}

// ---------------------------------------------------------------------------------------------
// KeyedLockRegistry

TEST_CASE("KeyedLockRegistry: a/b, a_b, a b, A_B get different lock files", "[guards]") {
  TempDir dir;
  KeyedLockRegistry registry(dir.path());
  // The store's key file names plus ".lock", in the key's shard directory.
  const std::vector<std::pair<std::string, std::string>> want = {
      {"a/b", "a%2fb.json.lock"},           {"a_b", "a_b.json.lock"},
      {"a b", "a%20b.json.lock"},           {"A_B", "^A_^B.json.lock"},
      {"user-42.x", "user-42.x.json.lock"}, {"..", "%2e..json.lock"},
      {"%^~", "%25%5e%7e.json.lock"}};
  REQUIRE(registry.lock_path("a/b") == dir / "f2" / "a%2fb.json.lock");  // the store's shard
  std::set<std::string> lower_names;
  for (const auto& [key, name] : want) {
    CAPTURE(key);
    const fs::path path = registry.lock_path(key);
    REQUIRE(path.filename() == name);
    REQUIRE(path.parent_path().parent_path() == dir.path());
    REQUIRE(path.parent_path().filename().string().size() == 2);
    auto guard = registry.lock(key);
    REQUIRE(fs::is_regular_file(path));
    std::string lower = path.lexically_relative(dir.path()).string();
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lower_names.insert(lower);
  }
  REQUIRE(lower_names.size() == want.size());  // distinct on case-insensitive filesystems too
  std::size_t on_disk = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
    if (e.is_regular_file()) ++on_disk;
  }
  REQUIRE(on_disk == want.size());

  // Long keys become directory levels; every name stays short.
  const std::string long_a(300, 'K');
  std::string long_b = long_a;
  long_b.back() = 'L';
  REQUIRE(registry.lock_path(long_a) != registry.lock_path(long_b));
  for (const auto& part : registry.lock_path(long_a).lexically_relative(dir.path())) {
    REQUIRE(part.string().size() < 255);
  }
  auto ga = registry.lock(long_a);
  auto gb = registry.lock(long_b);
}

TEST_CASE("KeyedLockRegistry refuses what is not a store key", "[guards]") {
  TempDir dir;
  KeyedLockRegistry registry(dir.path());
  for (const std::string& key : {std::string(), std::string(1025, 'k'), std::string("\xff")}) {
    CAPTURE(key.size());
    try {
      (void)registry.lock_path(key);
      FAIL("accepted");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::invalid_argument);
    }
    REQUIRE_THROWS_AS(registry.lock(key), lockdb::Error);
  }
  REQUIRE(fs::is_empty(dir.path()));
}

TEST_CASE("KeyedLockRegistry on a store's keys directory excludes that store's writers",
          "[guards]") {
  TempDir dir;
  for (std::size_t stripes : {std::size_t{0}, std::size_t{4}}) {
    CAPTURE(stripes);
    const fs::path store_dir = dir / ("s" + std::to_string(stripes));
    lockdb::StoreOptions options;
    options.lock_timeout = 0s;
    options.lock_stripes = stripes;
    lockdb::Store store(store_dir, options);
    KeyedLockRegistry registry(store_dir / "keys", 0s, stripes);
    {
      auto guard = registry.lock("user/1");
      REQUIRE_THROWS_AS(store.put("user/1", 1), lockdb::Timeout);
    }
    store.put("user/1", 2);
    REQUIRE(store.get("user/1") == 2);
    REQUIRE(store.verify().empty());
  }
}

TEST_CASE("KeyedLockRegistry across processes: different keys overlap, the same key waits",
          "[guards]") {
  TempDir dir;
  Child a = keyed_holder(dir.path(), 0, {"alpha"});
  REQUIRE(a.expect_line("LOCKED"));
  Child b = keyed_holder(dir.path(), 0, {"beta"});
  REQUIRE(b.expect_line("LOCKED"));  // while `a` still holds alpha: they overlap
  REQUIRE(keyed_try(dir.path(), 0, "alpha") == "0\n");
  REQUIRE(keyed_try(dir.path(), 0, "beta") == "0\n");
  REQUIRE(keyed_try(dir.path(), 0, "gamma") == "1\n");
  KeyedLockRegistry registry(dir.path(), 0s);
  REQUIRE_THROWS_AS(registry.lock("alpha"), lockdb::Timeout);
  a.write_line("release");
  REQUIRE(a.expect_line("RELEASED"));
  auto guard = registry.lock("alpha");
  REQUIRE(keyed_try(dir.path(), 0, "alpha") == "0\n");
  b.write_line("release");
  REQUIRE(b.wait() == 0);
  REQUIRE(a.wait() == 0);

  SECTION("the same key serialises: 4 processes x 300 increments of one key") {
    guard.release();
    keyed_increments(dir.path(), 0, 300, {{"k"}, {"k"}, {"k"}, {"k"}});
    REQUIRE(counter_of(dir.path(), "k") == 1200);
  }
}

TEST_CASE("lock_many: opposite orders from many processes never deadlock, counts exact",
          "[guards]") {
  TempDir dir;
  SECTION("one lock file per key") {
    keyed_increments(dir.path(), 0, 200,
                     {{"x", "y", "z"}, {"z", "y", "x"}, {"y", "x", "z"}, {"z", "x"}});
    REQUIRE(counter_of(dir.path(), "x") == 800);
    REQUIRE(counter_of(dir.path(), "y") == 600);
    REQUIRE(counter_of(dir.path(), "z") == 800);
  }
  SECTION("striped: keys sharing a stripe are taken once") {
    keyed_increments(dir.path(), 4, 200, {{"a", "b", "y"}, {"y", "b", "a"}, {"b", "a", "a"}});
    REQUIRE(counter_of(dir.path(), "a") == 600);
    REQUIRE(counter_of(dir.path(), "b") == 600);
    REQUIRE(counter_of(dir.path(), "y") == 400);
  }
}

TEST_CASE("lock_many: on a timeout the locks already taken are released", "[guards]") {
  TempDir dir;
  Child holder = keyed_holder(dir.path(), 0, {"y"});
  REQUIRE(holder.expect_line("LOCKED"));
  KeyedLockRegistry registry(dir.path(), 100ms);
  try {
    auto guard = registry.lock_many({"x", "y", "z"});
    FAIL("took a held key");
  } catch (const lockdb::Timeout& e) {
    REQUIRE(e.path() == registry.lock_path("y"));
    REQUIRE(e.holder().has_value());
    REQUIRE(e.holder()->pid == holder.pid());
  }
  REQUIRE(keyed_try(dir.path(), 0, "x") == "1\n");  // x was taken first, then released
  REQUIRE(keyed_try(dir.path(), 0, "z") == "1\n");
  REQUIRE_FALSE(registry.get_lock("x").is_locked());
  holder.write_line("release");
  REQUIRE(holder.wait() == 0);
  auto guard = registry.lock_many({"x", "y", "z", "x"});
  REQUIRE(guard.size() == 3);
  REQUIRE(keyed_try(dir.path(), 0, "y") == "0\n");
  guard.release();
  REQUIRE(keyed_try(dir.path(), 0, "y") == "1\n");
}

TEST_CASE("KeyedLockRegistry stripes: a stable hash, shared stripes nest", "[guards]") {
  TempDir dir;
  KeyedLockRegistry registry(dir.path(), 1s, 8);
  REQUIRE(registry.stripes() == 8);
  // FNV-1a 64 mod 8: the same in every process, build and platform.
  REQUIRE(registry.lock_path("a") == dir / "stripe-4.lock");
  REQUIRE(registry.lock_path("y") == dir / "stripe-4.lock");
  REQUIRE(registry.lock_path("b") == dir / "stripe-5.lock");
  REQUIRE(registry.lock_path("user42") == dir / "stripe-0.lock");
  REQUIRE(&registry.get_lock("a") == &registry.get_lock("y"));

  auto ga = registry.lock("a");
  auto gy = registry.lock("y");  // same stripe, same thread: nests instead of waiting for itself
  REQUIRE(registry.get_lock("a").lock_counter() == 2);
  REQUIRE(keyed_try(dir.path(), 8, "y") == "0\n");
  REQUIRE(keyed_try(dir.path(), 8, "b") == "1\n");  // another stripe proceeds
  auto many = registry.lock_many({"a", "y", "b"});
  REQUIRE(many.size() == 2);
}

TEST_CASE("KeyedLockRegistry is thread-safe: one lock per key, the same key serialises",
          "[guards]") {
  TempDir dir;
  KeyedLockRegistry registry(dir.path());
  const int threads = 6, m = 300;
  long counter = 0;  // guarded by the key "shared" (through the registry, not a mutex)
  std::vector<lockdb::FileLock*> seen(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      seen[static_cast<std::size_t>(t)] = &registry.get_lock("shared");
      for (int i = 0; i < m; ++i) {
        auto guard = registry.lock("shared");
        const long v = counter;
        std::this_thread::yield();
        counter = v + 1;
        auto own = registry.lock("own-" + std::to_string(t));  // distinct keys never wait
      }
    });
  }
  for (auto& t : pool) t.join();
  REQUIRE(counter == threads * m);
  for (auto* p : seen) REQUIRE(p == seen[0]);

  // Another thread of this process waits for a held key like another process does.
  auto guard = registry.lock("held");
  bool other_got = true;
  std::thread([&] { other_got = registry.get_lock("held").try_lock(); }).join();
  REQUIRE_FALSE(other_got);
  bool other_key = false;
  std::thread([&] {
    auto g = registry.lock("free");
    other_key = g.is_locked();
  }).join();
  REQUIRE(other_key);
}

TEST_CASE("KeyedLockRegistry errors name the path and are never timeouts", "[guards]") {
  TempDir dir;
  lockdb::test::write_text(dir / "file", "x");
  KeyedLockRegistry registry(dir / "file", 5s);
  try {
    auto guard = registry.lock("k");
    FAIL("locked below a file");
  } catch (const lockdb::Timeout&) {
    FAIL("reported as a timeout");
  } catch (const lockdb::Error& e) {
    REQUIRE(e.code() == lockdb::Errc::invalid_argument);
    REQUIRE_THAT(std::string(e.what()), Catch::Contains((dir / "file").string()));
  }
  REQUIRE_THROWS_AS(KeyedLockRegistry(""), lockdb::Error);
}
