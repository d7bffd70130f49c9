// bench_history: the history log's two hot paths, each against its alternatives in one run.
//
//  1. Append: records/s through LogWriter (what every Store write pays after its rename) against
//     a raw loop of the same bytes written with one write(2) each on an O_APPEND descriptor (the
//     physical limit), with 1 and 4 processes, and with an fsync per record.
//  2. History of one key: History::records({.key = K}) over generated logs of 10, 50 and 200 MB,
//     against `grep -F '"key":"K"' | wc -l` and `jq -c 'select(.key=="K")' | wc -l` on the same
//     segment files, page cache warm, medians of 3 runs; match counts are checked to agree.
//
// Usage: bench_history [--quick] [--no-jq] [--dir DIR]
//   --quick   logs of 10 and 50 MB only, shorter append runs
//   --no-jq   skip jq (about 30 MB/s: ~7 s per run on the 200 MB log)
//   --dir     where to generate (default: a temp directory, removed afterwards)
#include <lockdb/history.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_support.hpp"
#include "log_writer.hpp"

namespace fs = std::filesystem;
using lockdb::bench::median;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void make_store_dir(const fs::path& dir) {
  fs::create_directories(dir / "log");
  std::ofstream(dir / "lockdb-store.json") << R"({"format":"lockdb-store","version":1})";
}

nlohmann::json value_for(long i) {
  return {{"id", i},
          {"name", "user number " + std::to_string(i)},
          {"email", "user" + std::to_string(i) + "@example.com"},
          {"tags", {"alpha", "beta"}},
          {"score", static_cast<double>(i % 1000) / 7.0}};
}

std::string record_line(long i, std::size_t keys, const nlohmann::json& value) {
  const std::string key = "user:" + std::to_string(static_cast<std::size_t>(i * 7919) % keys);
  const std::string version = "00000000" + std::to_string(10000000 + i % 90000000);
  lockdb::detail::RecordFields f;
  f.time = std::chrono::system_clock::now();
  f.key = key;
  f.op = "put";
  f.value = &value;
  f.version = version;
  return lockdb::detail::render_record(f);
}

// ---- 1. appends ----

// Runs body(count) in `procs` forked processes for about `secs`; returns records/s in total.
double run_procs(int procs, double secs, const std::function<long(double)>& body) {
  int pipes[2];
  if (pipe(pipes) != 0) std::abort();
  const auto t0 = Clock::now();
  std::vector<pid_t> kids;
  for (int p = 0; p < procs; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      long n = body(secs);
      if (write(pipes[1], &n, sizeof n) != sizeof n) _exit(1);
      _exit(0);
    }
    kids.push_back(pid);
  }
  long total = 0;
  for (int p = 0; p < procs; ++p) {
    long n = 0;
    if (read(pipes[0], &n, sizeof n) == sizeof n) total += n;
  }
  for (pid_t k : kids) waitpid(k, nullptr, 0);
  const double elapsed = seconds_since(t0);
  close(pipes[0]);
  close(pipes[1]);
  return static_cast<double>(total) / elapsed;
}

void bench_appends(const fs::path& base, bool quick) {
  const double secs = quick ? 0.3 : 1.0;
  const std::string line = record_line(1, 10000, value_for(1)) + "\n";
  std::printf("\n== append: records/s (a %zu-byte record; higher is better) ==\n", line.size());
  std::printf("%-44s %12s %12s %8s\n", "variant", "1 process", "4 processes", "4p/1p");

  auto raw = [&](bool sync) {
    return [&, sync](double s) {
      const fs::path file = base / (sync ? "raw-fsync.jsonl" : "raw.jsonl");  // one file for all
      int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      long n = 0;
      const auto t0 = Clock::now();
      while (seconds_since(t0) < s) {
        for (int k = 0; k < 64; ++k, ++n) {
          if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
            std::abort();
          if (sync) fsync(fd);
        }
      }
      close(fd);
      return n;
    };
  };
  auto lockdb_append = [&](const fs::path& store, lockdb::Durability d, bool render) {
    return [&, store, d, render](double s) {
      lockdb::detail::LogWriter log(store / "log", 64ull << 20, d);
      std::vector<nlohmann::json> values;  // built beforehand: a Store already has its value
      for (long i = 0; i < 64; ++i) values.push_back(value_for(i));
      long n = 0;
      const auto t0 = Clock::now();
      while (seconds_since(t0) < s) {
        for (int k = 0; k < 64; ++k, ++n) {
          if (render) {
            log.append(record_line(n, 10000, values[static_cast<std::size_t>(n % 64)]));
          } else {
            log.append(std::string_view(line).substr(0, line.size() - 1));
          }
        }
      }
      return n;
    };
  };
  struct Variant {
    const char* name;
    std::function<long(double)> body;
    bool durable;
  };
  const fs::path s1 = base / "append-none", s2 = base / "append-render", s3 = base / "append-file";
  for (const auto& d : {s1, s2, s3}) make_store_dir(d);
  const std::vector<Variant> variants = {
      {"raw write(2), O_APPEND (the limit)", raw(false), false},
      {"LogWriter::append, durability none", lockdb_append(s1, lockdb::Durability::none, false),
       false},
      {"render_record + append, none (per Store write)",
       lockdb_append(s2, lockdb::Durability::none, true), false},
      {"raw write(2) + fsync", raw(true), true},
      {"LogWriter::append, durability file (fsync)",
       lockdb_append(s3, lockdb::Durability::file, false), true},
  };
  double raw1 = 0, raw4 = 0, rawsync1 = 0, rawsync4 = 0;
  for (const auto& v : variants) {
    const double t = v.durable ? secs / 2 : secs;
    const double one = run_procs(1, t, v.body);
    const double four = run_procs(4, t, v.body);
    std::printf("%-44s %12.0f %12.0f %8.2f", v.name, one, four, four / one);
    if (std::strncmp(v.name, "raw write(2) +", 14) == 0) {
      rawsync1 = one;
      rawsync4 = four;
    } else if (std::strncmp(v.name, "raw", 3) == 0) {
      raw1 = one;
      raw4 = four;
    } else if (v.durable) {
      std::printf("   x raw+fsync: %.2f (1p) %.2f (4p)", one / rawsync1, four / rawsync4);
    } else {
      std::printf("   x raw: %.2f (1p) %.2f (4p)", one / raw1, four / raw4);
    }
    std::printf("\n");
  }
  // Every appended record is in the log exactly once.
  for (const auto& d : {s1, s2, s3}) {
    std::size_t n = lockdb::History(d).records().size();
    std::printf("  (%s: %zu records read back)\n", d.filename().c_str(), n);
  }
}

// ---- 2. history of one key ----

std::uint64_t generate(const fs::path& store, std::uint64_t bytes) {
  make_store_dir(store);
  lockdb::detail::LogWriter log(store / "log", 64ull << 20, lockdb::Durability::none);
  std::uint64_t written = 0;
  for (long i = 0; written < bytes; ++i) {
    const std::string line = record_line(i, 10000, value_for(i));
    log.append(line);
    written += line.size() + 1;
  }
  std::uint64_t total = 0;
  for (const auto& p : lockdb::History(store).segments()) total += fs::file_size(p);
  return total;
}

// Runs a shell command, returns (seconds, its stdout as a number).
std::pair<double, long> shell(const std::string& command) {
  const auto t0 = Clock::now();
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return {0, -1};
  char buf[64] = {};
  long n = -1;
  if (std::fgets(buf, sizeof buf, p) != nullptr) n = std::strtol(buf, nullptr, 10);
  const int status = pclose(p);
  const double s = seconds_since(t0);
  return {s, status == 0 ? n : -1};
}

bool have(const char* tool) {
  return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

void bench_scan(const fs::path& base, bool quick, bool jq) {
  const std::string key = "user:123";
  const bool have_jq = jq && have("jq");
  std::printf(
      "\n== history of one key (\"%s\", 1 record in ~10000), page cache warm, median of "
      "3 ==\n",
      key.c_str());
  std::printf("%8s %8s | %9s %7s | %9s %7s | %9s %7s | %8s %8s\n", "log MB", "matches", "lockdb s",
              "MB/s", "grep s", "MB/s", "jq s", "MB/s", "x grep", "x jq");
  std::vector<std::uint64_t> sizes = {10ull << 20, 50ull << 20, 200ull << 20};
  if (quick) sizes.pop_back();
  for (const std::uint64_t target : sizes) {
    const fs::path store = base / ("scan-" + std::to_string(target >> 20));
    const std::uint64_t bytes = generate(store, target);
    ::sync();
    const double mb = static_cast<double>(bytes) / 1e6;
    lockdb::History h(store);
    std::string files;
    for (const auto& p : h.segments()) files += " '" + p.string() + "'";

    (void)h.records({.key = key});  // warm the page cache
    std::vector<double> ours, greps, jqs;
    std::size_t matches = 0;
    long grep_matches = -1, jq_matches = -1;
    for (int run = 0; run < 3; ++run) {  // interleaved, so drift hits all alike
      const auto t0 = Clock::now();
      matches = h.records({.key = key}).size();
      ours.push_back(seconds_since(t0));
      auto [gs, gn] = shell("grep -h -F '\"key\":\"" + key + "\"'" + files + " | wc -l");
      greps.push_back(gs);
      grep_matches = gn;
      if (have_jq) {
        auto [js, jn] = shell("jq -c 'select(.key==\"" + key + "\")'" + files + " | wc -l");
        jqs.push_back(js);
        jq_matches = jn;
      }
    }
    const double o = median(ours), g = median(greps);
    std::printf("%8.1f %8zu | %9.3f %7.0f | %9.3f %7.0f | ", mb, matches, o, mb / o, g, mb / g);
    if (have_jq) {
      const double j = median(jqs);
      std::printf("%9.3f %7.0f | %8.2f %8.1f\n", j, mb / j, g / o, j / o);
    } else {
      std::printf("%9s %7s | %8.2f %8s\n", "-", "-", g / o, "-");
    }
    if (grep_matches != static_cast<long>(matches) ||
        (have_jq && jq_matches != static_cast<long>(matches))) {
      std::printf("  MISMATCH: lockdb %zu, grep %ld, jq %ld\n", matches, grep_matches, jq_matches);
    }
    if (target == (50ull << 20)) {  // for scale: parsing every record (no key filter)
      const auto t0 = Clock::now();
      const std::size_t all = h.records().size();
      const double s = seconds_since(t0);
      std::printf("%8s every record: %zu in %.3f s (%.0f MB/s, %.0f records/s)\n", "", all, s,
                  mb / s, static_cast<double>(all) / s);
    }
    fs::remove_all(store);
  }
  if (!have_jq) std::printf("(jq %s)\n", jq ? "not found" : "skipped: --no-jq");
  std::printf("x grep / x jq: lockdb's speed as a multiple of the tool's (> 1: lockdb faster)\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, jq = true;
  fs::path dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--no-jq") {
      jq = false;
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--no-jq] [--dir DIR]\n", argv[0]);
      return 2;
    }
  }
  const bool own_dir = dir.empty();
  if (own_dir) {
    std::string tmpl = (fs::temp_directory_path() / "lockdb-bench-history-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return 1;
    dir = tmpl;
  }
  fs::create_directories(dir);
  std::printf("bench_history in %s\n", dir.c_str());
  bench_appends(dir, quick);
  bench_scan(dir, quick, jq);
  if (own_dir) fs::remove_all(dir);
  return 0;
}
