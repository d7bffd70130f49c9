// Test support: real etcd members on 127.0.0.1, started by the test, stopped with it.
//
// Each member runs /usr/bin/etcd on free loopback ports with a data directory in a TempDir,
// tuned for quick elections (heartbeat 25 ms, election timeout 250 ms). The destructor kills
// (SIGKILL) and reaps every member; each member also gets SIGKILL when the test process dies
// (PR_SET_PDEATHSIG), so a failed or crashed test leaves no etcd behind.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include "support.hpp"

namespace lockdb::test {

class EtcdCluster {
 public:
  // Starts `members` members as one cluster and waits (up to 20 s) until it has a leader.
  explicit EtcdCluster(int members = 1);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // Whether etcd is installed (tests say why they skip when it is not).
  static bool available();

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:p1,127.0.0.1:p2,..." and "etcd://<endpoints>/<prefix>".
  std::string endpoints() const;
  std::string endpoint(int member) const;
  pid_t pid(int member) const { return members_.at(static_cast<std::size_t>(member)).pid; }
  const std::filesystem::path& data_dir() const { return dir_.path(); }  // the members' data
  std::string location(const std::string& prefix) const;
  // A fresh location whose prefix no other caller of this object gets.
  std::string fresh_location();

  // The member that leads now (asks every live member); -1 when none says.
  int leader() const;
  void kill(int member);     // SIGKILL, reaped
  void stop(int member);     // SIGSTOP: alive, silent
  void resume(int member);   // SIGCONT
  void restart(int member);  // starts a killed member again on its data directory
  // Waits (up to 20 s) until some live member reports a leader.
  void wait_for_leader() const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
    bool stopped = false;
  };
  void spawn(Member& m, bool fresh);

  TempDir dir_;
  std::vector<Member> members_;
  std::string initial_cluster_;
  int next_prefix_ = 0;
};

// The cluster a test program shares (one member), started on first use.
EtcdCluster& shared_etcd();

}  // namespace lockdb::test
