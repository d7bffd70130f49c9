// The time module: RFC 3339 formatting and strict parsing, durations, saturating arithmetic.
#include <lockdb/time.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

using namespace std::chrono;
using lockdb::SystemTime;

namespace {

SystemTime at(int y, unsigned m, unsigned d, int h = 0, int mi = 0, int s = 0) {
  return sys_days(year(y) / month(m) / day(d)) + hours(h) + minutes(mi) + seconds(s);
}

}  // namespace

TEST_CASE("format_time writes RFC 3339 UTC with microseconds", "[time]") {
  CHECK(lockdb::format_time(at(2026, 11, 30, 18, 0, 0) + microseconds(123456)) ==
        "2026-11-30T18:00:00.123456Z");
  CHECK(lockdb::format_time(SystemTime{}) == "1970-01-01T00:00:00.000000Z");
  // Before the epoch: floors, so the fields are never negative.
  CHECK(lockdb::format_time(SystemTime{} - nanoseconds(1)) == "1969-12-31T23:59:59.999999Z");
  CHECK(lockdb::format_time(at(1700, 2, 28, 23, 59, 59)) == "1700-02-28T23:59:59.000000Z");
  std::string out = "t=";
  lockdb::append_time(out, at(2024, 2, 29));
  CHECK(out == "t=2024-02-29T00:00:00.000000Z");
}

TEST_CASE("parse_time reads what format_time writes, and the other RFC 3339 forms", "[time]") {
  const SystemTime t = at(2026, 11, 30, 18, 0, 0) + microseconds(123456);
  CHECK(lockdb::parse_time(lockdb::format_time(t)) == t);
  CHECK(lockdb::parse_time("2026-11-30T18:00:00Z") == at(2026, 11, 30, 18));
  CHECK(lockdb::parse_time("2026-11-30t18:00:00z") == at(2026, 11, 30, 18));
  CHECK(lockdb::parse_time("2026-11-30 18:00:00Z") == at(2026, 11, 30, 18));
  CHECK(lockdb::parse_time("2026-11-30T19:00:00+01:00") == at(2026, 11, 30, 18));
  CHECK(lockdb::parse_time("2026-11-30T17:30:00-00:30") == at(2026, 11, 30, 18));
  CHECK(lockdb::parse_time("2026-11-30T18:00:00.5Z") == at(2026, 11, 30, 18) + milliseconds(500));
  CHECK(lockdb::parse_time("2026-11-30T18:00:00.123456789Z") ==
        at(2026, 11, 30, 18) + nanoseconds(123456789));
  CHECK(lockdb::parse_time("2016-12-31T23:59:60Z") == at(2017, 1, 1));  // a leap second
  CHECK(lockdb::parse_time("2024-02-29T00:00:00Z") == at(2024, 2, 29));
}

TEST_CASE("parse_time refuses invalid dates, out-of-range years and malformed text", "[time]") {
  for (const char* bad : {"2026-02-31T00:00:00Z",  // no February 31st (not March 3rd)
                          "2025-02-29T00:00:00Z",  // not a leap year
                          "2026-13-01T00:00:00Z",
                          "2026-00-10T00:00:00Z",
                          "2026-11-00T00:00:00Z",
                          "9999-12-31T00:00:00Z",  // beyond what system_clock holds (not 1816)
                          "1000-01-01T00:00:00Z",
                          "0000-01-01T00:00:00Z",
                          "2026-11-30T24:00:00Z",
                          "2026-11-30T18:60:00Z",
                          "2026-11-30T18:00:61Z",
                          "2026-11-30T18:00: 0Z",   // a space inside a field
                          "2026-11-30T18:00:00",    // no offset
                          "2026-11-30T18:00:00.Z",  // a dot without digits
                          "2026-11-30T18:00:00+1:00",
                          "2026-11-30T18:00:00+24:00",
                          "2026-11-30T18:00:00+01:60",
                          "2026-11-30T18:00:00Zjunk",
                          " 2026-11-30T18:00:00Z",
                          "2026-11-30T18:00:00Z ",
                          "2026-11-30",
                          "2026-11-30T18:00Z",
                          "26-11-30T18:00:00Z",
                          "+2026-11-30T18:00:00Z",
                          "2026-11-30X18:00:00Z",
                          "2026/11/30T18:00:00Z",
                          "",
                          "now"}) {
    INFO(bad);
    CHECK_FALSE(lockdb::parse_time(bad));
  }
}

TEST_CASE("parse_date reads a full date alone as its midnight UTC", "[time]") {
  CHECK(lockdb::parse_date("2026-11-30") == at(2026, 11, 30));
  CHECK_FALSE(lockdb::parse_date("2026-02-31"));
  CHECK_FALSE(lockdb::parse_date("9999-12-31"));
  CHECK_FALSE(lockdb::parse_date("2026-11-30T00:00:00Z"));
  CHECK_FALSE(lockdb::parse_date("2026-11-3"));
}

TEST_CASE("parse_duration reads units and seconds, refuses the rest, saturates", "[time]") {
  CHECK(lockdb::parse_duration("500ms") == milliseconds(500));
  CHECK(lockdb::parse_duration("10s") == seconds(10));
  CHECK(lockdb::parse_duration("2m") == minutes(2));
  CHECK(lockdb::parse_duration("1h") == hours(1));
  CHECK(lockdb::parse_duration("3d") == hours(72));
  CHECK(lockdb::parse_duration("1w") == hours(168));
  CHECK(lockdb::parse_duration("0.5") == milliseconds(500));
  CHECK(lockdb::parse_duration("30") == seconds(30));
  CHECK(lockdb::parse_duration("0") == nanoseconds(0));
  // Too long for nanoseconds: saturates instead of wrapping.
  CHECK(lockdb::parse_duration("99999999999999999999s") == nanoseconds::max());
  CHECK(lockdb::parse_duration("10000000000000w") == nanoseconds::max());
  CHECK(lockdb::parse_duration("99999999999") == nanoseconds::max());
  CHECK(lockdb::parse_duration(std::string(400, '9')) == nanoseconds::max());
  for (const char* bad : {"", "-1s", "-1", "+1s", " 1s", "1s ", "1 s", "1.5s", "s", "1x", "0x10",
                          "inf", "nan", "1e3", "1.", ".5s", "10sec"}) {
    INFO(bad);
    CHECK_FALSE(lockdb::parse_duration(bad));
  }
}

TEST_CASE("add_saturating stops at the clock's limits", "[time]") {
  const auto now = steady_clock::now();
  CHECK(lockdb::add_saturating(now, nanoseconds::max()) == steady_clock::time_point::max());
  CHECK(lockdb::add_saturating(now, seconds(1)) == now + seconds(1));
  const SystemTime t = at(2026, 11, 30);
  CHECK(lockdb::add_saturating(at(1700, 1, 1), -nanoseconds::max()) == SystemTime::min());
  CHECK(lockdb::add_saturating(t, nanoseconds::max()) == SystemTime::max());
  CHECK(lockdb::add_saturating(t, -hours(24)) == at(2026, 11, 29));
}
