// Small private helpers shared by the layers: time formatting.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace lockdb::util {

// RFC 3339 UTC with microseconds: "2026-11-30T18:00:00.123456Z".
std::string format_utc(std::chrono::system_clock::time_point t);
// Parses what format_utc writes, and also "...Z" without fraction and "+hh:mm" offsets.
std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view text);

}  // namespace lockdb::util
