// Times and durations as lockdb writes and reads them: one <chrono> based module for the
// library, the `lockdb` command and programs that print a Record's time.
//
// Times are std::chrono::system_clock time points, written as RFC 3339 in UTC with microseconds
// ("2026-11-30T18:00:00.123456Z", the log's own form). Parsing is strict: an invalid date
// (2026-02-31), a field out of range, stray characters or a year outside what system_clock holds
// (here 1678 to 2261) is nullopt, never a wrapped or shifted time. Durations saturate: no
// arithmetic here overflows, a huge timeout becomes "practically forever".
// Every function is thread-safe and allocates only for the strings it returns.
#pragma once

#include <lockdb/config.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace lockdb {

using SystemTime = std::chrono::system_clock::time_point;

// "2026-11-30T18:00:00.123456Z": UTC, truncated to microseconds (27 characters).
std::string format_time(SystemTime t);
// Appends format_time(t) to `out` (no other allocation: the log writer's form).
void append_time(std::string& out, SystemTime t);

// An RFC 3339 date-time: "2026-11-30T18:00:00Z", "2026-11-30 18:00:00.5+01:00" (a 'T', 't' or
// one space between date and time; a fraction of any length, kept to nanoseconds; 'Z', 'z' or a
// "+hh:mm"/"-hh:mm" offset, which is required). Second 60 (a leap second) is read as the next
// minute's start. nullopt for anything else.
std::optional<SystemTime> parse_time(std::string_view text) noexcept;
// A full date alone, "2026-11-30": its midnight UTC. nullopt for anything else.
std::optional<SystemTime> parse_date(std::string_view text) noexcept;

// A duration: a whole number and a unit, "500ms", "10s", "2m", "1h", "3d", "1w", or a number of
// seconds, "0.5", "30". Negative, malformed or non-finite text is nullopt; a duration too long for
// nanoseconds saturates at std::chrono::nanoseconds::max().
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) noexcept;

// t + d, saturating at the clock's limits instead of overflowing (d may be negative).
SystemTime add_saturating(SystemTime t, std::chrono::nanoseconds d) noexcept;
std::chrono::steady_clock::time_point add_saturating(std::chrono::steady_clock::time_point t,
                                                     std::chrono::nanoseconds d) noexcept;

}  // namespace lockdb
