// Counters shared by worker processes, on an etcd cluster: worker_counters with one string
// changed. The workers could run on any number of machines; each increment is a transaction
// that commits only if the counter did not change since it was read (retried when it did), and
// writes its audit record in the same transaction.
//
//   etcd_counters [etcd://host:port[,host:port...]/prefix] [WORKERS] [JOBS_PER_WORKER]
//
// Without a location (or with "") it starts a local three-member etcd cluster on loopback ports
// (with the tests' cluster support, tests/etcd_cluster.hpp), runs the demo on it, and stops it.
#include <lockdb/etcd.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "etcd_cluster.hpp"

namespace {

int run_worker(const std::string& location, int worker, int jobs) {
  lockdb::Store store(location);  // the only difference from worker_counters: the location
  for (int job = 0; job < jobs; ++job) {
    store.increment("jobs_done");
    store.increment("jobs_by_worker/" + std::to_string(worker));
  }
  // A lock across machines: one worker at a time writes the report (lease-held, so a worker
  // that dies holding it frees it after the lease's TTL).
  lockdb::EtcdLock report(location, "report");
  report.acquire(std::chrono::seconds(30));
  store.update("report", [&](nlohmann::json& r) { r["last_worker"] = worker; });
  report.release();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int workers = argc > 2 ? std::atoi(argv[2]) : 4;
  const int jobs = argc > 3 ? std::atoi(argv[3]) : 5;
  std::unique_ptr<lockdb::test::EtcdCluster> cluster;
  std::string location;
  try {
    if (argc > 1 && argv[1][0] != '\0') {
      location = argv[1];
    } else {
      std::printf("starting a local three-member etcd cluster...\n");
      cluster = std::make_unique<lockdb::test::EtcdCluster>(3);
      location = cluster->location("worker-counters");
    }
    lockdb::Store store(location);
    const long before = store.get("jobs_done").value_or(0).get<long>();
    std::printf("store: %s\n%d workers x %d jobs\n", store.dir().c_str(), workers, jobs);
    std::fflush(stdout);
    for (int w = 0; w < workers; ++w) {
      const pid_t pid = ::fork();
      if (pid < 0) {
        std::perror("fork");
        return 1;
      }
      if (pid == 0) {
        int code = 1;
        try {
          code = run_worker(location, w, jobs);
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
    // The history: one audit record per increment, in commit order; versions are etcd
    // revisions, each record names the one it started from.
    lockdb::Query query;
    query.key = "jobs_done";
    auto records = lockdb::History(location).records(query);
    std::optional<std::string> previous;
    std::size_t chained = 0;
    for (const auto& r : records) {
      if (r.prev_version == previous) ++chained;
      previous = r.version;
    }
    std::printf("history of \"jobs_done\": %zu records, %zu chained to the one before\n",
                records.size(), chained);
    return done - before == static_cast<long>(workers) * jobs && chained == records.size() ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "etcd_counters: %s\n", e.what());
    return 1;
  }
}
