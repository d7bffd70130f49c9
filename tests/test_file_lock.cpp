#include <lockdb/file_lock.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using lockdb::test::Child;
using lockdb::test::TempDir;

namespace {

Child hold(const std::filesystem::path& lock, const std::string& kind = "hard",
           bool shared = false) {
  std::vector<std::string> argv{lockdb::test::helper_path(), "hold", kind, lock.string()};
  if (shared) argv.push_back("shared");
  return Child(argv);
}

std::string try_in_child(const std::filesystem::path& lock, bool shared = false) {
  std::vector<std::string> argv{lockdb::test::helper_path(), "try", "hard", lock.string()};
  if (shared) argv.push_back("shared");
  auto r = lockdb::test::run(argv);
  return r.out;
}

long read_long(const std::filesystem::path& p) { return std::stol(lockdb::test::read_text(p)); }

}  // namespace

TEST_CASE("N processes x M increments under FileLock give exactly N*M", "[file_lock][stress]") {
  TempDir dir;
  lockdb::test::write_text(dir / "counter", "0");
  const int n = 6, m = 300 / LOCKDB_STRESS_DIVISOR;
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < n; ++i) {
    kids.push_back(std::make_unique<Child>(std::vector<std::string>{
        lockdb::test::helper_path(), "lock-increment", "hard", (dir / "counter.lock").string(),
        (dir / "counter").string(), std::to_string(m)}));
  }
  for (auto& k : kids) REQUIRE(k->wait() == 0);
  REQUIRE(read_long(dir / "counter") == n * m);
}

TEST_CASE("threads and processes mixed under FileLock give the exact total",
          "[file_lock][stress]") {
  TempDir dir;
  lockdb::test::write_text(dir / "counter", "0");
  const int procs = 3, threads = 4, m = 150 / LOCKDB_STRESS_DIVISOR;
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < procs; ++i) {
    kids.push_back(std::make_unique<Child>(std::vector<std::string>{
        lockdb::test::helper_path(), "lock-increment", "hard", (dir / "counter.lock").string(),
        (dir / "counter").string(), std::to_string(m), std::to_string(threads)}));
  }
  // This process joins in with two threads on two separate FileLock objects.
  auto work = [&] {
    lockdb::FileLock lock(dir / "counter.lock");
    for (int i = 0; i < m; ++i) {
      std::scoped_lock guard(lock);
      long v = read_long(dir / "counter");
      lockdb::test::write_text(dir / "counter", std::to_string(v + 1));
    }
  };
  std::thread t1(work), t2(work);
  t1.join();
  t2.join();
  for (auto& k : kids) REQUIRE(k->wait() == 0);
  REQUIRE(read_long(dir / "counter") == procs * threads * m + 2 * m);
}

TEST_CASE("a lock held by another process: try_lock, zero and bounded timeouts", "[file_lock]") {
  TempDir dir;
  auto path = dir / "held.lock";
  Child holder = hold(path);
  REQUIRE(holder.expect_line("LOCKED"));
  lockdb::FileLock lock(path);

  REQUIRE_FALSE(lock.try_lock());
  REQUIRE_FALSE(lock.is_locked());

  auto t0 = std::chrono::steady_clock::now();
  try {
    auto g = lock.acquire(0s);
    FAIL("acquire(0s) returned while another process holds the lock");
  } catch (const lockdb::Timeout& e) {
    REQUIRE(std::chrono::steady_clock::now() - t0 < 100ms);
    REQUIRE(e.code() == lockdb::Errc::timeout);
    REQUIRE(e.path() == path);
    std::string what = e.what();
    REQUIRE_THAT(what, Catch::Contains(path.string()));
    REQUIRE(e.holder().has_value());
    REQUIRE(e.holder()->pid == holder.pid());
    REQUIRE_THAT(what, Catch::Contains("pid " + std::to_string(holder.pid())));
  }

  t0 = std::chrono::steady_clock::now();
  REQUIRE_THROWS_AS(lock.acquire(200ms), lockdb::Timeout);
  auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE(waited >= 200ms);
  REQUIRE(waited < 2s);

  REQUIRE_FALSE(lock.try_lock_for(50ms));
  REQUIRE_FALSE(lock.try_lock_until(std::chrono::steady_clock::now() + 20ms));

  holder.write_line("release");
  REQUIRE(holder.expect_line("RELEASED"));
  REQUIRE(lock.try_lock());
  lock.unlock();
  REQUIRE(holder.wait() == 0);
}

TEST_CASE("timed waits leave no signal behind at any signal mask of the caller", "[file_lock]") {
  TempDir dir;
  auto path = dir / "held.lock";
  Child holder = hold(path);
  REQUIRE(holder.expect_line("LOCKED"));
  lockdb::FileLock lock(path);
  const int wake = SIGRTMAX - 2;  // the signal timed waits use (os_posix.cpp)
  // After each wait the timer fired (at the deadline, then every millisecond), a sleep of the
  // caller's runs to its end: nothing interrupts it.
  auto sleep_uninterrupted = [] {
    const timespec pause{0, 100 * 1000 * 1000};
    timespec left{};
    return ::nanosleep(&pause, &left) == 0;
  };
  for (int i = 0; i < 3; ++i) {
    REQUIRE_FALSE(lock.try_lock_for(30ms));
    REQUIRE(sleep_uninterrupted());
  }
  // A caller with the signal blocked: the wait still ends at its deadline, the signal is blocked
  // again afterwards, and none is left pending.
  sigset_t wake_set, before, after, pending;
  sigemptyset(&wake_set);
  sigaddset(&wake_set, wake);
  REQUIRE(pthread_sigmask(SIG_BLOCK, &wake_set, &before) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE_FALSE(lock.try_lock_for(50ms));
  REQUIRE(std::chrono::steady_clock::now() - t0 < 2s);
  REQUIRE(pthread_sigmask(SIG_BLOCK, nullptr, &after) == 0);
  REQUIRE(sigismember(&after, wake) == 1);
  REQUIRE(sigpending(&pending) == 0);
  REQUIRE(sigismember(&pending, wake) == 0);
  REQUIRE(pthread_sigmask(SIG_SETMASK, &before, nullptr) == 0);
  REQUIRE(sleep_uninterrupted());
  holder.write_line("release");
  REQUIRE(holder.expect_line("RELEASED"));
  REQUIRE(holder.wait() == 0);
}

TEST_CASE("a forever wait returns once the holder releases", "[file_lock]") {
  TempDir dir;
  auto path = dir / "wait.lock";
  Child first = hold(path);
  REQUIRE(first.expect_line("LOCKED"));
  Child second = hold(path);  // blocks in the kernel until `first` releases
  first.write_line("release");
  REQUIRE(first.expect_line("RELEASED"));
  REQUIRE(second.expect_line("LOCKED"));
  REQUIRE(try_in_child(path) == "0\n");
  second.write_line("release");
  REQUIRE(second.expect_line("RELEASED"));
  REQUIRE(first.wait() == 0);
  REQUIRE(second.wait() == 0);

  // The same from a thread of this process, with lock() and the default (forever) timeout.
  Child third = hold(path);
  REQUIRE(third.expect_line("LOCKED"));
  lockdb::FileLock lock(path);
  std::thread waiter([&] {
    lock.lock();
    lock.unlock();
  });
  third.write_line("release");
  waiter.join();
  REQUIRE(third.wait() == 0);
}

TEST_CASE("reentrancy counts per thread and lock_counter reports it", "[file_lock]") {
  TempDir dir;
  lockdb::FileLock lock(dir / "r.lock");
  REQUIRE(lock.lock_counter() == 0);
  {
    auto g1 = lock.acquire();
    auto g2 = lock.acquire(0s);  // same thread: no wait even with a zero timeout
    REQUIRE(lock.lock_counter() == 2);
    REQUIRE(lock.is_locked());
    g2.release();
    REQUIRE(lock.lock_counter() == 1);
    REQUIRE(try_in_child(dir / "r.lock") == "0\n");
    // Another thread of this process is excluded.
    bool other_got = true;
    std::thread([&] { other_got = lock.try_lock(); }).join();
    REQUIRE_FALSE(other_got);
  }
  REQUIRE(lock.lock_counter() == 0);
  REQUIRE_FALSE(lock.is_locked());
  REQUIRE(try_in_child(dir / "r.lock") == "1\n");
  REQUIRE_THROWS_AS(lock.release(), lockdb::Error);
}

TEST_CASE("std::scoped_lock and std::unique_lock work with FileLock", "[file_lock]") {
  TempDir dir;
  lockdb::FileLock a(dir / "a.lock"), b(dir / "b.lock");
  {
    std::scoped_lock both(a, b);
    REQUIRE(a.is_locked());
    REQUIRE(b.is_locked());
    REQUIRE(try_in_child(dir / "a.lock") == "0\n");
    REQUIRE(try_in_child(dir / "b.lock") == "0\n");
  }
  REQUIRE_FALSE(a.is_locked());
  std::unique_lock ul(a, std::defer_lock);
  REQUIRE(ul.try_lock_for(100ms));
  REQUIRE(ul.owns_lock());
  ul.unlock();
  REQUIRE(try_in_child(dir / "a.lock") == "1\n");
}

TEST_CASE("std::shared_lock: two readers at once, a writer excluded", "[file_lock]") {
  TempDir dir;
  auto path = dir / "rw.lock";
  Child reader = hold(path, "hard", true);
  REQUIRE(reader.expect_line("LOCKED"));
  lockdb::FileLock lock(path);
  {
    std::shared_lock shared(lock);  // a second reader, while the first holds
    REQUIRE(shared.owns_lock());
    REQUIRE(try_in_child(path, true) == "1\n");     // a third reader too
    REQUIRE(try_in_child(path, false) == "0\n");    // but no writer
    std::shared_lock again(lock, std::defer_lock);  // another shared hold of the same object
    REQUIRE(again.try_lock_for(10ms));
    REQUIRE(lock.lock_counter() == 2);
  }
  REQUIRE_FALSE(lock.try_lock());  // the other reader still holds it
  reader.write_line("release");
  REQUIRE(reader.wait() == 0);
  REQUIRE(lock.try_lock());
  REQUIRE(lock.try_lock_shared());  // the exclusive owner's shared request nests
  REQUIRE(lock.lock_counter() == 2);
  lock.unlock_shared();
  lock.unlock();
  REQUIRE(try_in_child(path) == "1\n");
}

TEST_CASE("upgrading a shared hold to exclusive is refused, not deadlocked", "[file_lock]") {
  TempDir dir;
  lockdb::FileLock lock(dir / "up.lock");
  lock.lock_shared();
  try {
    lock.lock();
    FAIL("lock() while holding shared returned");
  } catch (const lockdb::Error& e) {
    REQUIRE(e.code() == lockdb::Errc::conflict);
    REQUIRE_THAT(std::string(e.what()), Catch::Contains("up.lock"));
  }
  lock.unlock_shared();
}

TEST_CASE("a holder killed with SIGKILL frees the lock at once", "[file_lock]") {
  TempDir dir;
  auto path = dir / "kill.lock";
  Child holder = hold(path);
  REQUIRE(holder.expect_line("LOCKED"));
  lockdb::FileLock lock(path);
  REQUIRE_FALSE(lock.try_lock());
  holder.kill(SIGKILL);
  REQUIRE(holder.wait() == 128 + SIGKILL);
  REQUIRE(lock.try_lock());
  lock.unlock();
}

TEST_CASE("fork: the child neither holds nor can release the parent's lock", "[file_lock]") {
  TempDir dir;
  auto path = dir / "fork.lock";
  lockdb::FileLock lock(path);
  auto guard = lock.acquire();
  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: report with single bytes; never run Catch2 assertions here.
    char result = 'k';
    if (lock.is_locked()) result = 'H';
    if (lock.lock_counter() != 0) result = 'C';
    try {
      lock.unlock();
      result = 'U';  // must not release the parent's lock
    } catch (const lockdb::Error& e) {
      if (e.code() != lockdb::Errc::not_owner) result = 'E';
    }
    if (lock.try_lock()) result = 'T';  // the parent still holds it
    (void)!write(pipefd[1], &result, 1);
    _exit(0);  // no destructors: but even with them (exit) the parent must keep its lock
  }
  close(pipefd[1]);
  char result = 0;
  REQUIRE(read(pipefd[0], &result, 1) == 1);
  close(pipefd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  REQUIRE(result == 'k');
  REQUIRE(lock.is_locked());
  REQUIRE(try_in_child(path) == "0\n");

  // A child that exits through exit() (running destructors) also leaves the parent's lock.
  pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    guard = lockdb::LockGuard();  // drops the child's copy of the guard: must not unlock
    std::exit(0);
  }
  waitpid(pid, &st, 0);
  REQUIRE(lock.is_locked());
  REQUIRE(try_in_child(path) == "0\n");
  guard.release();
  REQUIRE(try_in_child(path) == "1\n");
}

TEST_CASE("a lock file removed while waiting is detected and the lock retaken", "[file_lock]") {
  TempDir dir;
  auto path = dir / "gone.lock";
  Child holder = hold(path);
  REQUIRE(holder.expect_line("LOCKED"));
  lockdb::FileLock lock(path);
  REQUIRE_FALSE(lock.try_lock());  // opens the file: our descriptor names the old inode
  std::filesystem::remove(path);
  holder.write_line("release");
  REQUIRE(holder.wait() == 0);
  auto g = lock.acquire(5s);
  REQUIRE(std::filesystem::exists(path));
  REQUIRE(try_in_child(path) == "0\n");  // we hold the file that is at the path now
}

TEST_CASE("lock errors fail fast with the path and the cause", "[file_lock]") {
  TempDir dir;
  SECTION("the path is a directory") {
    std::filesystem::create_directory(dir / "d.lock");
    lockdb::FileLock lock(dir / "d.lock");
    try {
      lock.lock();
      FAIL("locked a directory");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::invalid_argument);
      REQUIRE_THAT(std::string(e.what()),
                   Catch::Contains((dir / "d.lock").string()) && Catch::Contains("directory"));
    }
  }
  SECTION("a parent component is a file") {
    lockdb::test::write_text(dir / "file", "x");
    lockdb::FileLock lock(dir / "file" / "x.lock");
    try {
      lock.lock();
      FAIL("locked below a file");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::invalid_argument);
      REQUIRE_THAT(std::string(e.what()), Catch::Contains("not a directory"));
      REQUIRE_THAT(std::string(e.what()), Catch::Contains((dir / "file").string()));
    }
  }
  SECTION("a symlink at the lock path is not followed") {
    lockdb::test::write_text(dir / "target", "keep");
    std::filesystem::create_symlink(dir / "target", dir / "s.lock");
    lockdb::FileLock lock(dir / "s.lock", lockdb::LockOptions{.mode = 0600u});
    try {
      lock.lock();
      FAIL("followed a symlink");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::invalid_argument);
      REQUIRE_THAT(std::string(e.what()), Catch::Contains("symbolic link"));
    }
    REQUIRE(lockdb::test::read_text(dir / "target") == "keep");
  }
  SECTION("ENOLCK from the filesystem is reported as unsupported, not a timeout") {
    lockdb::FileLock lock(dir / "nolck.lock");
    lockdb::os::fail_nth(lockdb::os::Op::flock, 1, ENOLCK);
    try {
      lock.lock();
      FAIL("locked despite ENOLCK");
    } catch (const lockdb::Timeout&) {
      FAIL("ENOLCK reported as a timeout");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::lock_unsupported);
      REQUIRE_THAT(std::string(e.what()),
                   Catch::Contains("nolck.lock") && Catch::Contains("SoftFileLock"));
    }
    lockdb::os::clear_faults();
    REQUIRE(lock.try_lock());
    lock.unlock();
  }
  SECTION("permission denied is an error naming the path, never a timeout") {
    // Root bypasses permission checks: the helper drops to an unprivileged uid first.
    std::filesystem::create_directory(dir / "private");
    chmod((dir / "private").c_str(), 0755);
    chmod(dir.path().c_str(), 0755);
    auto r = lockdb::test::run({lockdb::test::helper_path(), "lock-as", "65534", "hard",
                                (dir / "private" / "p.lock").string()});
    if (geteuid() != 0) {
      // Non-root: we cannot setuid; check our own permission error instead.
      chmod((dir / "private").c_str(), 0555);
      lockdb::FileLock lock(dir / "private" / "p.lock");
      try {
        lock.lock();
        FAIL("locked in a read-only directory");
      } catch (const lockdb::Error& e) {
        REQUIRE(e.code() == lockdb::Errc::permission);
        REQUIRE_THAT(std::string(e.what()), Catch::Contains("p.lock"));
      }
    } else {
      REQUIRE(r.code == 3);
      REQUIRE_THAT(r.out, Catch::StartsWith("ERROR permission cannot open lock file: ") &&
                              Catch::Contains("p.lock") && Catch::Contains("Permission denied"));
    }
  }
}

TEST_CASE("mode: a created lock file gets the requested permissions", "[file_lock]") {
  TempDir dir;
  lockdb::FileLock lock(dir / "m.lock", lockdb::LockOptions{.mode = 0640u});
  lock.lock();
  struct stat st {};
  REQUIRE(stat((dir / "m.lock").c_str(), &st) == 0);
  REQUIRE((st.st_mode & 0777) == 0640);
  lock.unlock();
  // Missing parent directories are created.
  lockdb::FileLock deep(dir / "a" / "b" / "c.lock");
  REQUIRE(deep.try_lock());
  deep.unlock();
}

TEST_CASE("FileLock and Python filelock exclude each other, both ways", "[file_lock][python]") {
  std::string py = lockdb::test::python_with_filelock();
  if (py.empty()) {
    WARN("skipped: no python3 with the filelock module (Debian: python3-filelock)");
    return;
  }
  TempDir dir;
  auto path = dir / "py.lock";
  const std::string script =
      "import sys, filelock\n"
      "lock = filelock.FileLock(sys.argv[1])\n"
      "if sys.argv[2] == 'hold':\n"
      "    lock.acquire()\n"
      "    print('LOCKED', flush=True)\n"
      "    sys.stdin.readline()\n"
      "    lock.release()\n"
      "    print('RELEASED', flush=True)\n"
      "else:\n"
      "    try:\n"
      "        lock.acquire(timeout=0)\n"
      "        print('GOT', flush=True)\n"
      "        lock.release()\n"
      "    except filelock.Timeout:\n"
      "        print('TIMEOUT', flush=True)\n";
  // Python holds: C++ is excluded.
  Child python({py, "-c", script, path.string(), "hold"});
  REQUIRE(python.expect_line("LOCKED"));
  lockdb::FileLock lock(path);
  REQUIRE_FALSE(lock.try_lock());
  python.write_line("go");
  REQUIRE(python.expect_line("RELEASED"));
  REQUIRE(python.wait() == 0);
  // C++ holds: Python is excluded.
  lock.lock();
  REQUIRE(lockdb::test::run({py, "-c", script, path.string(), "try"}).out == "TIMEOUT\n");
  lock.unlock();
  REQUIRE(lockdb::test::run({py, "-c", script, path.string(), "try"}).out == "GOT\n");
}
