// Counters shared by worker processes, on an etcd cluster: worker_counters with one string
// changed. The workers could run on any number of machines; each increment is a transaction
// that commits only if the counter did not change since it was read (retried when it did), and
// writes its audit record in the same transaction.
//
//   etcd_counters [etcd://host:port[,host:port...]/prefix] [WORKERS] [JOBS_PER_WORKER]
//
// With a location it runs against that cluster. Without one (or with "") it starts a local
// three-member cluster of Debian's etcd (/usr/bin/etcd, package etcd-server) on free loopback
// ports with a temporary data directory, runs the demo on it, and stops it again (LocalCluster
// below: a few lines to copy for your own experiments; tests use their own).
#include <lockdb/etcd.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

// A local etcd cluster of `members` processes on 127.0.0.1, killed (and its data removed) by the
// destructor; the members also die with this process (PR_SET_PDEATHSIG), so none is left behind.
class LocalCluster {
 public:
  explicit LocalCluster(int members) {
    std::string tmpl = "/tmp/lockdb-etcd-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    std::string cluster;
    for (int i = 0; i < members; ++i) {
      ports_.push_back({free_port(), free_port()});
      cluster +=
          (i ? "," : "") + name(static_cast<std::size_t>(i)) + "=" + url(ports_.back().second);
    }
    for (std::size_t i = 0; i < ports_.size(); ++i) {
      const std::vector<std::string> args = {"/usr/bin/etcd",
                                             "--name",
                                             name(i),
                                             "--data-dir",
                                             (dir_ / name(i)).string(),
                                             "--listen-client-urls",
                                             url(ports_[i].first),
                                             "--advertise-client-urls",
                                             url(ports_[i].first),
                                             "--listen-peer-urls",
                                             url(ports_[i].second),
                                             "--initial-advertise-peer-urls",
                                             url(ports_[i].second),
                                             "--initial-cluster",
                                             cluster,
                                             "--initial-cluster-state",
                                             "new",
                                             "--log-level",
                                             "error"};
      spawn(args, dir_ / (name(i) + ".log"));
    }
  }
  ~LocalCluster() {
    for (pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  std::string location(const std::string& prefix) const {
    std::string endpoints;
    for (const auto& [client, peer] : ports_) {
      endpoints += (endpoints.empty() ? "" : ",") + ("127.0.0.1:" + std::to_string(client));
    }
    return "etcd://" + endpoints + "/" + prefix;
  }

  // Opens the store at `location` once the cluster has elected a leader (up to 30 s).
  static std::unique_ptr<lockdb::Store> open_when_ready(const std::string& location) {
    lockdb::StoreOptions quick;
    quick.request_timeout = std::chrono::seconds(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      try {
        lockdb::Store probe(location, quick);  // makes the store: needs a leader
        return std::make_unique<lockdb::Store>(location);
      } catch (const lockdb::Error&) {
        if (std::chrono::steady_clock::now() > deadline) throw;
        // Still starting (connection refused at once): try again shortly.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

 private:
  static std::string name(std::size_t i) { return "m" + std::to_string(i); }
  static std::string url(int port) { return "http://127.0.0.1:" + std::to_string(port); }

  // A port the kernel just handed out and nobody holds now.
  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    if (fd >= 0) ::close(fd);
    if (!ok) throw std::runtime_error("no free loopback port");
    return ntohs(addr.sin_port);
  }

  void spawn(std::vector<std::string> args, const std::filesystem::path& log) {
    std::vector<char*> argv;  // built before fork: the child only calls async-signal-safe code
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      if (std::FILE* out = std::freopen(log.c_str(), "a", stdout)) ::dup2(::fileno(out), 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pids_.push_back(pid);
  }

  std::filesystem::path dir_;
  std::vector<std::pair<int, int>> ports_;  // client, peer
  std::vector<pid_t> pids_;
};

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
  std::unique_ptr<LocalCluster> cluster;
  std::string location;
  try {
    if (argc > 1 && argv[1][0] != '\0') {
      location = argv[1];
    } else {
      std::printf("starting a local three-member etcd cluster...\n");
      std::fflush(stdout);
      cluster = std::make_unique<LocalCluster>(3);
      location = cluster->location("worker-counters");
    }
    std::unique_ptr<lockdb::Store> opened = LocalCluster::open_when_ready(location);
    lockdb::Store& store = *opened;
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
