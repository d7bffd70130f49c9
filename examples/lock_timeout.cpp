// FileLock with a timeout: one process holds a lock; another tries for 200 ms, gives up with
// lockdb::Timeout (which names the holder), then waits without a timeout and gets it as soon as
// the holder lets go.
//
//   lock_timeout [LOCK_PATH]
#include <lockdb/lockdb.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const std::filesystem::path path =
      argc > 1 ? argv[1] : std::filesystem::temp_directory_path() / "lockdb-example.lock";
  int to_child[2];
  if (pipe(to_child) != 0) return 1;

  lockdb::FileLock lock(path);
  auto guard = lock.acquire();  // the parent holds the lock
  std::printf("parent %d holds %s\n", getpid(), path.c_str());
  std::fflush(stdout);  // before fork, or the child would print the buffered line again

  pid_t child = fork();
  if (child == 0) {
    lockdb::FileLock mine(path);  // the child's own lock object on the same file
    try {
      auto g = mine.acquire(200ms);
      std::printf("child: unexpectedly got the lock\n");
      _exit(1);
    } catch (const lockdb::Timeout& e) {
      std::printf("child: gave up after 200 ms: %s\n", e.what());
    }
    std::fflush(stdout);
    if (write(to_child[1], "w", 1) != 1) _exit(1);  // tell the parent we wait now
    auto g = mine.acquire();  // no timeout: returns as soon as the parent releases
    std::printf("child: got the lock after the parent released it\n");
    std::fflush(stdout);
    _exit(0);
  }
  char byte;
  if (read(to_child[0], &byte, 1) != 1) return 1;  // the child has timed out once
  std::printf("parent releases the lock\n");
  std::fflush(stdout);  // printed before the release, so the child's line comes after it
  guard.release();
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
