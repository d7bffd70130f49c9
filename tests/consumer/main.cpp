// Uses the umbrella header and the installed target; prints "consumer ok" on success.
#include <lockdb/lockdb.hpp>

#include <cstdio>
#include <filesystem>

int main() {
  auto path = std::filesystem::temp_directory_path() / "lockdb-consumer.lock";
  lockdb::FileLock lock(path);
  auto guard = lock.acquire(std::chrono::seconds(5));
  std::printf("consumer ok: %s locked=%d\n", path.c_str(), lock.is_locked());
  return lock.is_locked() ? 0 : 1;
}
