// Helper commands for the lock layer tests.
#include <lockdb/file_lock.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "helper.hpp"

namespace lockdb::test {
namespace {

std::unique_ptr<BasicLock> make_lock(const std::string& kind, const std::string& path) {
  if (kind == "soft") return std::make_unique<SoftFileLock>(path);
  return std::make_unique<FileLock>(path);
}

long read_counter(const std::string& path) {
  std::ifstream in(path);
  long v = 0;
  in >> v;
  return v;
}

void write_counter(const std::string& path, long v) {
  std::ofstream out(path, std::ios::trunc);
  out << v;
}

// lock-increment KIND LOCK COUNTER M [THREADS]: each thread adds 1 to COUNTER M times, under the
// lock, with a plain (non-atomic) read and rewrite, so any overlap loses increments.
RegisterHelper lock_increment("lock-increment", [](const std::vector<std::string>& a) {
  const std::string kind = a.at(0), lock_path = a.at(1), counter = a.at(2);
  const int m = std::stoi(a.at(3));
  const int threads = a.size() > 4 ? std::stoi(a.at(4)) : 1;
  auto lock = make_lock(kind, lock_path);  // one object shared by this process's threads
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < m; ++i) {
        auto guard = lock->acquire();
        write_counter(counter, read_counter(counter) + 1);
      }
    });
  }
  for (auto& t : pool) t.join();
  say("DONE");
  return 0;
});

// hold KIND LOCK [shared]: acquire, say LOCKED, wait for a line on stdin, release, say RELEASED.
RegisterHelper hold("hold", [](const std::vector<std::string>& a) {
  if (a.size() > 2 && a[2] == "shared") {
    FileLock lock(a.at(1));
    auto guard = lock.acquire_shared();
    say("LOCKED");
    wait_for_line();
    guard.release();
    say("RELEASED");
    return 0;
  }
  auto lock = make_lock(a.at(0), a.at(1));
  auto guard = lock->acquire();
  say("LOCKED");
  wait_for_line();
  guard.release();
  say("RELEASED");
  return 0;
});

// try KIND LOCK [shared]: say 1 if the lock could be had at once, else 0.
RegisterHelper try_cmd("try", [](const std::vector<std::string>& a) {
  bool got;
  if (a.size() > 2 && a[2] == "shared") {
    FileLock lock(a.at(1));
    got = lock.try_lock_shared();
  } else {
    auto lock = make_lock(a.at(0), a.at(1));
    got = lock->try_lock();
  }
  say(got ? "1" : "0");
  return 0;
});

// soft-race LOCK LOG N: N times: take the soft lock, append "enter PID" and "exit PID" to LOG
// (O_APPEND) with a short pause between, release. Waits for a line on stdin before starting so
// that all racers start together.
RegisterHelper soft_race("soft-race", [](const std::vector<std::string>& a) {
  SoftFileLock lock(a.at(0));
  const int n = std::stoi(a.at(2));
  int fd = ::open(a.at(1).c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  const std::string pid = std::to_string(::getpid());
  const std::string enter = "enter " + pid + "\n", leave = "exit " + pid + "\n";
  say("READY");
  wait_for_line();
  for (int i = 0; i < n; ++i) {
    auto guard = lock.acquire();
    if (::write(fd, enter.data(), enter.size()) < 0) return 1;
    std::this_thread::yield();
    if (::write(fd, leave.data(), leave.size()) < 0) return 1;
  }
  ::close(fd);
  say("DONE");
  return 0;
});

// pid: say this process's pid and exit (used to obtain a pid that is then dead).
RegisterHelper pid_cmd("pid", [](const std::vector<std::string>&) {
  say(std::to_string(::getpid()));
  return 0;
});

// lock-as UID KIND LOCK: drop to UID, try to lock, say OK or the error.
RegisterHelper lock_as("lock-as", [](const std::vector<std::string>& a) {
  if (::setgid(static_cast<gid_t>(std::stoi(a.at(0)))) != 0 ||
      ::setuid(static_cast<uid_t>(std::stoi(a.at(0)))) != 0) {
    say("SETUID-FAILED");
    return 4;
  }
  auto lock = make_lock(a.at(1), a.at(2));
  auto guard = lock->acquire(std::chrono::seconds(5));
  say("OK");
  return 0;
});

}  // namespace
}  // namespace lockdb::test
