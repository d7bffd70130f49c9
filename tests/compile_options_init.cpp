// Compiled by the `compile` tests with -Wall -Wextra -Wmissing-field-initializers -Werror: every
// options struct takes designated initializers that name only some members, and the public
// types keep the promises their headers make (Store movable, LockGuard made only by a lock).
#include <lockdb/lockdb.hpp>

#include <chrono>
#include <type_traits>

using namespace std::chrono_literals;

static_assert(std::is_nothrow_move_constructible_v<lockdb::Store>);
static_assert(std::is_nothrow_move_assignable_v<lockdb::Store>);
static_assert(!std::is_copy_constructible_v<lockdb::Store>);
static_assert(!std::is_constructible_v<lockdb::LockGuard, lockdb::detail::LockState*, bool>);
static_assert(std::is_nothrow_move_constructible_v<lockdb::LockGuard>);

int main() {
  [[maybe_unused]] lockdb::Query query{.key = "k"};
  [[maybe_unused]] lockdb::Query since{.since = std::chrono::system_clock::now(), .limit = 3};
  [[maybe_unused]] lockdb::LockOptions lock{.mode = 0600u};
  [[maybe_unused]] lockdb::SoftLockOptions soft{.lock_timeout = 10s, .stale_after = 60s};
  [[maybe_unused]] lockdb::StoreOptions store{.lock_timeout = 1s};
  [[maybe_unused]] lockdb::AtomicWriteOptions write{.durability = lockdb::Durability::full};
  [[maybe_unused]] lockdb::EtcdLockOptions etcd{.ttl = 5s};
  [[maybe_unused]] lockdb::LockHolder holder{.pid = 1};
  [[maybe_unused]] lockdb::LogPosition position{.segment = 2};
  [[maybe_unused]] lockdb::Finding finding{.key = "k"};
  [[maybe_unused]] lockdb::Entry entry{.version = "0"};
  return 0;
}
