// Counters shared by worker processes.
//
// A pool of worker processes (fork) shares one store: every finished job increments the
// "jobs_done" counter and the worker's own "jobs_by_worker/<n>" counter. Each increment is a
// locked read-modify-write of one small JSON file, so no increment is lost however the workers
// interleave, and each one is a record in the store's history: at the end the program prints
// who incremented "jobs_done" and when.
//
//   worker_counters [STORE_DIR] [WORKERS] [JOBS_PER_WORKER]
//
// Without STORE_DIR it makes a fresh store under /tmp and leaves it there to look at:
//   cat STORE_DIR/keys/*/jobs_done.json;  lockdb log STORE_DIR --key jobs_done
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "example_support.hpp"

namespace {

int run_worker(const std::string& dir, int worker, int jobs) {
  // Each worker opens the store itself (a Store object inherited through fork works too).
  lockdb::Store store(dir);
  for (int job = 0; job < jobs; ++job) {
    // ... the job's real work would be here ...
    store.increment("jobs_done");
    store.increment("jobs_by_worker/" + std::to_string(worker));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const auto store_dir = example::store_dir(argc, argv, "worker-counters");
  if (!store_dir) return 1;
  const std::string& dir = *store_dir;
  const int workers = argc > 2 ? std::atoi(argv[2]) : 4;
  const int jobs = argc > 3 ? std::atoi(argv[3]) : 5;

  try {
    lockdb::Store store(dir);
    const long before = store.get("jobs_done").value_or(0).get<long>();
    std::printf("store: %s\n%d workers x %d jobs\n", store.dir().c_str(), workers, jobs);

    std::fflush(stdout);  // or the children would print the buffered lines again
    for (int w = 0; w < workers; ++w) {
      pid_t pid = ::fork();
      if (pid < 0) {
        std::perror("fork");
        return 1;
      }
      if (pid == 0) {
        int code = 1;
        try {
          code = run_worker(dir, w, jobs);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "worker %d: %s\n", w, e.what());
        }
        std::fflush(stdout);
        ::_exit(code);
      }
    }
    int failed = 0;
    for (int w = 0; w < workers; ++w) {
      int status = 0;
      if (::wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    if (failed) {
      std::fprintf(stderr, "%d worker(s) failed\n", failed);
      return 1;
    }

    const long done = store.get("jobs_done").value_or(0).get<long>();
    std::printf("jobs_done = %ld (expected %ld)\n", done - before,
                static_cast<long>(workers) * jobs);
    for (int w = 0; w < workers; ++w) {
      auto mine = store.get("jobs_by_worker/" + std::to_string(w));
      std::printf("  jobs_by_worker/%d = %s\n", w, mine ? mine->dump().c_str() : "0");
    }

    // The counter's history: one record per increment, in commit order, each naming the
    // version it started from, so the chain shows that nothing was skipped.
    lockdb::Query query;
    query.key = "jobs_done";
    auto records = lockdb::History(dir).records(query);
    std::printf("history of \"jobs_done\": %zu records\n", records.size());
    std::optional<std::string> previous;
    for (const auto& r : records) {
      const bool chained = r.prev_version == previous;
      std::printf("  %s  pid %-7ld %-9s %s -> %s  value %s%s\n",
                  example::utc(r.time, /*with_date=*/false).c_str(), r.pid, r.op.c_str(),
                  r.prev_version.value_or("(none)          ").c_str(),
                  r.version.value_or("(erased)").c_str(), r.value ? r.value->dump().c_str() : "-",
                  chained ? "" : "  <- gap: changed outside the store");
      previous = r.version;
    }
    return done - before == static_cast<long>(workers) * jobs ? 0 : 1;
  } catch (const lockdb::Error& e) {
    std::fprintf(stderr, "worker_counters: %s\n", e.what());
    return 1;
  }
}
