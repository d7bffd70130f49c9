// FileLock is a standard Lockable: std::scoped_lock takes several file locks at once without
// deadlock, std::unique_lock can try with a timeout, and std::shared_lock takes a reader lock.
//
//   scoped_lock [DIR]
#include <lockdb/lockdb.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <shared_mutex>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const std::filesystem::path dir =
      argc > 1 ? argv[1] : std::filesystem::temp_directory_path() / "lockdb-example";
  std::filesystem::create_directories(dir);

  lockdb::FileLock accounts(dir / "accounts.json.lock");
  lockdb::FileLock audit(dir / "audit.log.lock");
  {
    std::scoped_lock both(accounts, audit);  // both files, deadlock-free order
    std::ofstream(dir / "audit.log", std::ios::app) << "transfer recorded\n";
    std::printf("held both locks: accounts=%d audit=%d\n", accounts.is_locked(), audit.is_locked());
  }
  std::unique_lock try_for(accounts, std::defer_lock);
  if (try_for.try_lock_for(100ms)) std::printf("unique_lock: got accounts within 100 ms\n");
  try_for.unlock();

  {
    std::shared_lock reader(accounts);  // many readers at once, no writer
    std::printf("shared_lock: reading with lock_counter=%d\n", accounts.lock_counter());
  }
  std::printf("released: accounts=%d audit=%d\n", accounts.is_locked(), audit.is_locked());
  return 0;
}
