// Helper commands for the tests that run against both backends (a directory or an etcd
// location: Store takes either) and for the etcd lock tests. Hand-shakes are lines on stdout
// ("READY", "DONE ...", acknowledgements) and stdin ("go", "stop").
#include <lockdb/etcd.hpp>
#include <lockdb/store.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include <poll.h>
#include <unistd.h>

#include "helper.hpp"

namespace lockdb::test {
namespace {

bool line_waiting() {
  pollfd p{0, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// backend-cas LOCATION KEY N: READY, wait for a line, then N times: read the key's entry and
// compare_and_put value+1 at its version, again until it wins. DONE <losses>.
RegisterHelper backend_cas("backend-cas", [](const std::vector<std::string>& a) {
  Store store(a.at(0));
  const int n = std::stoi(a.at(2));
  say("READY");
  wait_for_line();
  long losses = 0;
  for (int i = 0; i < n; ++i) {
    for (;;) {
      auto e = store.entry(a.at(1));
      const long next = e ? e->value.get<long>() + 1 : 1;
      if (store.compare_and_put(a.at(1), e ? std::optional(e->version) : std::nullopt, next)) {
        break;
      }
      ++losses;
    }
  }
  say("DONE " + std::to_string(losses));
  return 0;
});

// backend-transfer LOCATION N KEY...: READY, wait for a line, then N update_many calls that each
// move a random amount from one random KEY to another (the sum stays constant). DONE.
RegisterHelper backend_transfer("backend-transfer", [](const std::vector<std::string>& a) {
  Store store(a.at(0));
  const int n = std::stoi(a.at(1));
  std::vector<std::string> keys(a.begin() + 2, a.end());
  std::mt19937 random(static_cast<unsigned>(::getpid()));
  say("READY");
  wait_for_line();
  for (int i = 0; i < n; ++i) {
    const std::size_t i_from = random() % keys.size();
    const std::size_t i_to = (i_from + 1 + random() % (keys.size() - 1)) % keys.size();
    const std::string& from = keys[i_from];
    const std::string& to = keys[i_to];
    const long amount = static_cast<long>(random() % 10) + 1;
    store.update_many({from, to}, [&](std::map<std::string, nlohmann::json>& v) {
      v[from] = v[from].get<long>() - amount;
      v[to] = v[to].get<long>() + amount;
    });
  }
  say("DONE");
  return 0;
});

// backend-acked-increments LOCATION KEY TIMEOUT_MS: READY, wait for a line, then increments KEY
// until a line arrives, saying "A" after each acknowledged increment and "E <error>" after each
// failed one (which may or may not have been applied). Then DONE.
RegisterHelper backend_acked("backend-acked-increments", [](const std::vector<std::string>& a) {
  StoreOptions options;
  options.request_timeout = std::chrono::milliseconds(std::stol(a.at(2)));
  options.lock_timeout = std::chrono::milliseconds(std::stol(a.at(2)));
  Store store(a.at(0), options);
  say("READY");
  wait_for_line();
  while (!line_waiting()) {
    try {
      store.increment(a.at(1));
      say("A");
    } catch (const std::exception& e) {
      std::string what = e.what();
      for (char& c : what) {
        if (c == '\n') c = ' ';
      }
      say("E " + what);
    }
  }
  say("DONE");
  return 0;
});

// etcd-lock-hold LOCATION NAME TTL_S: acquires the lock, says LOCKED, waits for a line (the
// test may SIGKILL it instead), releases, says RELEASED.
RegisterHelper etcd_lock_hold("etcd-lock-hold", [](const std::vector<std::string>& a) {
  EtcdLockOptions o;
  o.ttl = std::chrono::seconds(std::stol(a.at(2)));
  EtcdLock lock(a.at(0), a.at(1), o);
  lock.acquire(std::chrono::seconds(30));
  say("LOCKED");
  wait_for_line();
  lock.release();
  say("RELEASED");
  return 0;
});

// etcd-singleton LOCATION NAME: holds the name as a singleton ("HELD") until a line arrives, or
// says "RUNNING <what>" when another process holds it.
RegisterHelper etcd_singleton("etcd-singleton", [](const std::vector<std::string>& a) {
  try {
    EtcdLock guard = EtcdLock::hold_singleton(a.at(0), a.at(1));
    say("HELD");
    wait_for_line();
  } catch (const AlreadyRunning& e) {
    say(std::string("RUNNING ") + e.what());
  }
  return 0;
});

}  // namespace
}  // namespace lockdb::test
