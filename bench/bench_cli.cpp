// bench_cli: `lockdb log STORE --key K` against jq and grep over the same >= 200 MB log, in one
// run, with MB/s and ratios.
//
// The store gets a real marker (Store) and one log segment of --mb megabytes written by the
// store's own log writer (records of --keys keys in turn, ~200 bytes each, so one key matches
// about records/keys lines). Then each command scans that segment for one key and pipes into
// `wc -l` (so GNU grep cannot take its stdout-is-/dev/null shortcut), --runs times with a warm
// page cache; the median wall time gives MB/s (MB = 10^6 bytes of the segment file). Every
// command must find the same number of lines.
//
//   bench_cli [--mb 210] [--keys 10000] [--key k123] [--runs 3] [--dir DIR] [--keep]
//
// Targets (issue 5): lockdb >= 600 MB/s, >= 20x jq, >= 0.5x grep.
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "log_writer.hpp"

#ifndef LOCKDB_CLI
#error "LOCKDB_CLI (the lockdb command's path) must be defined by the build"
#endif

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::uint64_t mb = 210;
  long keys = 10000;
  std::string key = "k123";
  int runs = 3;
  fs::path dir;
  bool keep = false;
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

std::string hex16(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Fills the store's log through the store's log writer until its one segment has `bytes`.
void fill_log(const fs::path& store_dir, std::uint64_t bytes, long keys) {
  lockdb::StoreOptions options;
  options.log_segment_bytes = 4ull << 30;  // one segment, so that jq and grep read the same file
  lockdb::Store store(store_dir, options);
  store.put("k0", {{"n", 0}});  // a real record first: the log exists and is the store's
  lockdb::detail::LogWriter writer(store_dir / "log", options.log_segment_bytes,
                                   lockdb::Durability::none);
  const std::string payload(120, 'x');
  std::vector<std::uint64_t> version(static_cast<std::size_t>(keys), 0);
  auto time = std::chrono::system_clock::now() - std::chrono::hours(24);
  std::uint64_t written = 0;
  for (std::uint64_t i = 0; written < bytes; ++i) {
    const auto k = static_cast<std::size_t>(i % static_cast<std::uint64_t>(keys));
    const std::string key = "k" + std::to_string(k);
    const nlohmann::json value = {{"n", i}, {"worker", i % 8}, {"payload", payload}};
    const std::string prev = hex16(version[k]);
    version[k] = i + 1;
    const std::string next = hex16(version[k]);
    lockdb::detail::RecordFields fields;
    fields.time = time + std::chrono::microseconds(i * 50);
    fields.key = key;
    fields.op = "put";
    fields.value = &value;
    if (i >= static_cast<std::uint64_t>(keys)) fields.prev_version = prev;
    fields.version = next;
    const std::string line = lockdb::detail::render_record(fields);
    writer.append(line);
    written += line.size() + 1;
  }
}

struct Measure {
  std::string name;
  std::string command;
  double median_s = 0;
  long lines = -1;
};

// Runs `command` (a shell pipeline ending in wc -l) `runs` times; the median wall time.
void measure(Measure& m, int runs) {
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    FILE* p = ::popen(m.command.c_str(), "r");
    if (!p) {
      std::perror("popen");
      std::exit(1);
    }
    long lines = -1;
    if (std::fscanf(p, "%ld", &lines) != 1) lines = -1;
    const int status = ::pclose(p);
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    if (status != 0 || lines < 0) {
      std::fprintf(stderr, "bench_cli: '%s' failed (status %d)\n", m.command.c_str(), status);
      std::exit(1);
    }
    if (m.lines >= 0 && m.lines != lines) {
      std::fprintf(stderr, "bench_cli: '%s' found %ld lines, then %ld\n", m.command.c_str(),
                   m.lines, lines);
      std::exit(1);
    }
    m.lines = lines;
  }
  std::sort(times.begin(), times.end());
  m.median_s = times[times.size() / 2];
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_cli: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--mb")
      o.mb = std::stoull(next());
    else if (a == "--keys")
      o.keys = std::stol(next());
    else if (a == "--key")
      o.key = next();
    else if (a == "--runs")
      o.runs = std::stoi(next());
    else if (a == "--dir")
      o.dir = next();
    else if (a == "--keep")
      o.keep = true;
    else {
      std::fprintf(stderr,
                   "usage: bench_cli [--mb 210] [--keys 10000] [--key k123] [--runs 3] "
                   "[--dir DIR] [--keep]\n");
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  fs::path base = o.dir;
  if (base.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "lockdb-bench-cli-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      return 1;
    }
    base = tmpl;
  }
  const fs::path store = base / "store";
  std::printf("bench_cli: filling a %llu MB log in %s ...\n", static_cast<unsigned long long>(o.mb),
              store.c_str());
  std::fflush(stdout);
  const auto fill_start = Clock::now();
  fill_log(store, o.mb * 1000 * 1000, o.keys);
  const double fill_s = std::chrono::duration<double>(Clock::now() - fill_start).count();

  const auto segments = lockdb::History(store).segments();
  if (segments.size() != 1) {
    std::fprintf(stderr, "bench_cli: expected one log segment, found %zu\n", segments.size());
    return 1;
  }
  const fs::path segment = segments.front();
  const double mb = static_cast<double>(fs::file_size(segment)) / 1e6;
  std::printf("log: %s, %.1f MB, written in %.1f s; key %s; %d runs each, page cache warm\n\n",
              segment.c_str(), mb, fill_s, o.key.c_str(), o.runs);

  // Warm the page cache.
  if (std::system(("cat " + shell_quote(segment.string()) + " > /dev/null").c_str()) != 0) {
    return 1;
  }
  const std::string seg = shell_quote(segment.string());
  std::vector<Measure> all = {
      {"grep (ref)", "grep " + shell_quote("\"key\":\"" + o.key + "\"") + " " + seg + " | wc -l"},
      {"lockdb log --key", std::string(LOCKDB_CLI) + " log " + shell_quote(store.string()) +
                               " --key " + shell_quote(o.key) + " | wc -l"},
      {"lockdb log --key --json", std::string(LOCKDB_CLI) + " log " + shell_quote(store.string()) +
                                      " --key " + shell_quote(o.key) + " --json | wc -l"},
      {"jq", "jq -c " + shell_quote("select(.key==\"" + o.key + "\")") + " " + seg + " | wc -l"},
  };
  for (auto& m : all) measure(m, o.runs);

  const double grep_mbs = mb / all[0].median_s;
  const double jq_mbs = mb / all[3].median_s;
  std::printf("| variant | median s | MB/s | x grep | x jq | matches |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const auto& m : all) {
    const double mbs = mb / m.median_s;
    std::printf("| %s | %.3f | %.0f | %.2f | %.1f | %ld |\n", m.name.c_str(), m.median_s, mbs,
                mbs / grep_mbs, mbs / jq_mbs, m.lines);
  }
  bool same = true;
  for (const auto& m : all) same = same && m.lines == all[0].lines;
  const double lockdb_mbs = mb / all[1].median_s;
  std::printf(
      "\ntargets: lockdb %.0f MB/s (>= 600: %s), %.1fx jq (>= 20: %s), %.2fx grep "
      "(>= 0.5: %s); same matches: %s\n",
      lockdb_mbs, lockdb_mbs >= 600 ? "met" : "MISSED", lockdb_mbs / jq_mbs,
      lockdb_mbs / jq_mbs >= 20 ? "met" : "MISSED", lockdb_mbs / grep_mbs,
      lockdb_mbs / grep_mbs >= 0.5 ? "met" : "MISSED", same ? "yes" : "NO");
  if (!o.keep && o.dir.empty()) fs::remove_all(base);
  return same ? 0 : 1;
}
