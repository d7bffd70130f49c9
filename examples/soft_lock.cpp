// SoftFileLock: a marker-file lock for filesystems where OS locks fail (some network
// filesystems). The marker names its holder; a holder that died on this host is detected at
// once, and a long-running holder refreshes its heartbeat so hosts elsewhere do not judge it
// stale.
//
//   soft_lock [LOCK_PATH]
#include <lockdb/lockdb.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const std::filesystem::path path =
      argc > 1 ? argv[1] : std::filesystem::temp_directory_path() / "lockdb-example.soft.lock";
  lockdb::SoftFileLock lock(path, lockdb::SoftLockOptions{.lock_timeout = 10s, .stale_after = 60s});
  {
    auto guard = lock.acquire();
    auto holder = lock.holder();
    std::printf("holding %s: %s\n", path.c_str(), holder ? holder->describe().c_str() : "?");
    lock.refresh();  // heartbeat: call it well within stale_after during long work
    std::printf("marker refreshed\n");
  }
  std::printf("released: marker %s\n", std::filesystem::exists(path) ? "remains" : "removed");
  return 0;
}
