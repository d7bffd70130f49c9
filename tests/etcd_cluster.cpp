#include "etcd_cluster.hpp"

#include <lockdb/error.hpp>

#include <chrono>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etcd_client.hpp"

namespace lockdb::test {

namespace {

constexpr const char* kEtcd = "/usr/bin/etcd";

// A port the kernel just gave out and nobody holds now.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind failed");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The member id of `endpoint` and the leader it knows (0: none); {0, 0} when it does not answer.
std::pair<std::int64_t, std::int64_t> status(const std::string& endpoint) {
  try {
    detail::etcd::Client client({endpoint}, std::chrono::milliseconds(300));
    auto doc = client.call("/v3/maintenance/status", nlohmann::json::object(), true);
    return {detail::etcd::int_field(doc["header"], "member_id"),
            detail::etcd::int_field(doc, "leader")};
  } catch (const Error&) {
    return {0, 0};
  }
}

}  // namespace

bool EtcdCluster::available() { return ::access(kEtcd, X_OK) == 0; }

EtcdCluster::EtcdCluster(int members) {
  if (!available()) throw std::runtime_error(std::string(kEtcd) + " is not installed");
  members_.resize(static_cast<std::size_t>(members));
  for (int i = 0; i < members; ++i) {
    auto& m = members_[static_cast<std::size_t>(i)];
    m.name = "m" + std::to_string(i);
    m.client_port = free_port();
    m.peer_port = free_port();
    initial_cluster_ +=
        (i ? "," : "") + m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
  }
  for (auto& m : members_) spawn(m, true);
  wait_for_leader();
}

EtcdCluster::~EtcdCluster() {
  for (auto& m : members_) {
    if (m.pid > 0) {
      ::kill(m.pid, SIGKILL);
      ::waitpid(m.pid, nullptr, 0);
      m.pid = -1;
    }
  }
}

void EtcdCluster::spawn(Member& m, bool fresh) {
  const std::string data = (dir_.path() / m.name).string();
  const std::string client = "http://127.0.0.1:" + std::to_string(m.client_port);
  const std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  std::vector<std::string> args = {kEtcd,
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   data,
                                   "--listen-client-urls",
                                   client,
                                   "--advertise-client-urls",
                                   client,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   initial_cluster_,
                                   "--initial-cluster-state",
                                   fresh ? "new" : "existing",
                                   "--heartbeat-interval",
                                   "25",
                                   "--election-timeout",
                                   "250",
                                   "--max-txn-ops",
                                   "1024",
                                   "--log-level",
                                   "error"};
  const std::string log = (dir_.path() / (m.name + ".log")).string();
  // Everything the child needs is made before fork: in a process with threads (lease keep-alive,
  // Catch2's), the child may only call async-signal-safe functions, and malloc is not one.
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    for (int i = 3; i < 1024; ++i) ::close(i);
    ::execv(kEtcd, argv.data());
    ::_exit(127);
  }
  m.pid = pid;
  m.stopped = false;
}

std::string EtcdCluster::endpoint(int member) const {
  return "127.0.0.1:" + std::to_string(members_.at(static_cast<std::size_t>(member)).client_port);
}

std::string EtcdCluster::endpoints() const {
  std::string out;
  for (int i = 0; i < size(); ++i) out += (i ? "," : "") + endpoint(i);
  return out;
}

std::string EtcdCluster::location(const std::string& prefix) const {
  return "etcd://" + endpoints() + "/" + prefix;
}

std::string EtcdCluster::fresh_location() {
  return location("t" + std::to_string(::getpid()) + "-" + std::to_string(next_prefix_++));
}

int EtcdCluster::leader() const {
  std::int64_t leader_id = 0;
  std::vector<std::int64_t> ids(members_.size());
  for (int i = 0; i < size(); ++i) {
    const auto& m = members_[static_cast<std::size_t>(i)];
    if (m.pid < 0 || m.stopped) continue;
    auto [id, leader] = status(endpoint(i));
    ids[static_cast<std::size_t>(i)] = id;
    if (leader != 0) leader_id = leader;
  }
  for (int i = 0; i < size(); ++i) {
    if (leader_id != 0 && ids[static_cast<std::size_t>(i)] == leader_id) return i;
  }
  return -1;
}

void EtcdCluster::wait_for_leader() const {
  // Readiness of an outside server: each probe is itself bounded (300 ms); between probes that
  // fail at once (connection refused while etcd starts), a short pause.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (leader() >= 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string logs;
  for (int i = 0; i < size(); ++i) {
    auto [id, leader] = status(endpoint(i));
    logs += "\nstatus of " + endpoint(i) + ": member " + std::to_string(id) + ", leader " +
            std::to_string(leader);
  }
  for (const auto& m : members_) {
    std::string text;
    try {
      text = read_text(dir_.path() / (m.name + ".log"));
    } catch (const std::exception&) {
    }
    if (text.size() > 600) text = text.substr(text.size() - 600);
    logs += "\n--- " + m.name + (m.pid < 0 ? " (killed)" : "") + ":\n" + text;
  }
  throw std::runtime_error("etcd cluster has no leader after 20 s; the members' logs end:" + logs);
}

void EtcdCluster::kill(int member) {
  auto& m = members_.at(static_cast<std::size_t>(member));
  if (m.pid < 0) return;
  ::kill(m.pid, SIGKILL);
  ::waitpid(m.pid, nullptr, 0);
  m.pid = -1;
}

void EtcdCluster::stop(int member) {
  auto& m = members_.at(static_cast<std::size_t>(member));
  ::kill(m.pid, SIGSTOP);
  m.stopped = true;
}

void EtcdCluster::resume(int member) {
  auto& m = members_.at(static_cast<std::size_t>(member));
  ::kill(m.pid, SIGCONT);
  m.stopped = false;
}

void EtcdCluster::restart(int member) {
  auto& m = members_.at(static_cast<std::size_t>(member));
  if (m.pid > 0) return;
  spawn(m, false);
}

EtcdCluster& shared_etcd() {
  static EtcdCluster cluster(1);
  return cluster;
}

}  // namespace lockdb::test
