// What the store examples share: where the store goes, and how a time is printed.
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>

#include <stdlib.h>  // mkdtemp

namespace example {

// The store directory: argv[1] when given, else a fresh directory "/tmp/lockdb-<name>-XXXXXX".
// nullopt (after printing why) when that cannot be made.
inline std::optional<std::string> store_dir(int argc, char** argv, const std::string& name) {
  if (argc > 1) return std::string(argv[1]);
  std::string tmpl = "/tmp/lockdb-" + name + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    return std::nullopt;
  }
  return tmpl;
}

// UTC with microseconds: "2026-11-30T18:00:00.123456Z", or only "18:00:00.123456".
inline std::string utc(std::chrono::system_clock::time_point t, bool with_date = true) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[48];
  if (with_date) {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long>(us % 1000000));
  } else {
    std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%06ld", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long>(us % 1000000));
  }
  return buf;
}

}  // namespace example
