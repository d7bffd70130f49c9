// The lock layer's examples run as programs and say what they promise.
#include <catch2/catch.hpp>

#include <algorithm>

#include "support.hpp"

using lockdb::test::TempDir;

TEST_CASE("example lock_timeout: a 200 ms wait times out, a forever wait succeeds", "[examples]") {
  TempDir dir;
  auto r = lockdb::test::run({LOCKDB_EXAMPLE_LOCK_TIMEOUT, (dir / "x.lock").string()});
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("child: gave up after 200 ms: lock not acquired within "
                                      "200 ms: " +
                                      (dir / "x.lock").string() + ": held by pid "));
  REQUIRE_THAT(r.out, Catch::StartsWith("parent "));
  REQUIRE_THAT(r.out, Catch::EndsWith("parent releases the lock\n"
                                      "child: got the lock after the parent released it\n"));
  // Each line once: nothing buffered before the fork is printed twice.
  REQUIRE(std::count(r.out.begin(), r.out.end(), '\n') == 4);
}

TEST_CASE("example scoped_lock: std lock types over FileLock", "[examples]") {
  TempDir dir;
  auto r = lockdb::test::run({LOCKDB_EXAMPLE_SCOPED_LOCK, dir.path().string()});
  REQUIRE(r.code == 0);
  REQUIRE(r.out ==
          "held both locks: accounts=1 audit=1\n"
          "unique_lock: got accounts within 100 ms\n"
          "shared_lock: reading with lock_counter=1\n"
          "released: accounts=0 audit=0\n");
  REQUIRE(lockdb::test::read_text(dir / "audit.log") == "transfer recorded\n");
}

TEST_CASE("example soft_lock: marker names the holder and is removed on release", "[examples]") {
  TempDir dir;
  auto r = lockdb::test::run({LOCKDB_EXAMPLE_SOFT_LOCK, (dir / "s.lock").string()});
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Catch::StartsWith("holding " + (dir / "s.lock").string() + ": pid "));
  REQUIRE_THAT(r.out, Catch::EndsWith("marker refreshed\nreleased: marker removed\n"));
}
