// What the store examples share: where the store goes, and how a time is printed.
#pragma once

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include <stdlib.h>  // mkdtemp

#include <lockdb/time.hpp>

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
  const std::string text = lockdb::format_time(t);
  return with_date ? text : text.substr(11, 15);
}

}  // namespace example
