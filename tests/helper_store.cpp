// Helper commands for the store tests. Each runs as its own process; hand-shakes are lines on
// stdout ("READY", "DONE", acknowledgements) and stdin ("go", "stop").
#include <lockdb/store.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "helper.hpp"

namespace lockdb::test {
namespace {

lockdb::Durability durability_from(const std::string& name) {
  if (name == "full") return lockdb::Durability::full;
  if (name == "file") return lockdb::Durability::file;
  return lockdb::Durability::none;
}

lockdb::StoreOptions options_from(const std::vector<std::string>& a, std::size_t at) {
  lockdb::StoreOptions o;
  if (a.size() > at) o.durability = durability_from(a[at]);
  return o;
}

// True when a line (or EOF) is waiting on stdin.
bool stdin_ready() {
  pollfd p{0, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// store-increment DIR KEY N [DURABILITY]: READY, wait for a line, N increments, DONE <last>.
RegisterHelper store_increment("store-increment", [](const std::vector<std::string>& a) {
  lockdb::Store store(a.at(0), options_from(a, 3));
  const int n = std::stoi(a.at(2));
  say("READY");
  wait_for_line();
  std::int64_t last = 0;
  for (int i = 0; i < n; ++i) last = store.increment(a.at(1));
  say("DONE " + std::to_string(last));
  return 0;
});

// store-erase-churn DIR N SEED INSIDE_DIR: READY, wait for a line, then N random writes to the keys
// e0..e3: an increment (update), an erase through update_many, or a plain erase. While a key's
// update function runs, INSIDE_DIR/<key> exists, made with O_EXCL: finding it there means
// another process runs inside the same key's lock at the same time ("OVERLAP <key>", exit 3).
// Then "DONE".
RegisterHelper store_erase_churn("store-erase-churn", [](const std::vector<std::string>& a) {
  lockdb::Store store(a.at(0));
  const int n = std::stoi(a.at(1));
  std::mt19937 rng(static_cast<unsigned>(std::stoul(a.at(2))));
  const std::string inside_dir = a.at(3);
  bool overlap = false;
  std::string overlapped;
  auto inside = [&](const std::string& key, const std::function<void()>& fn) {
    const std::string mark = inside_dir + "/" + key;
    int fd = ::open(mark.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      overlap = true;
      overlapped = key;
      return;
    }
    ::close(fd);
    fn();
    ::unlink(mark.c_str());
  };
  say("READY");
  wait_for_line();
  for (int i = 0; i < n && !overlap; ++i) {
    const auto r = static_cast<unsigned>(rng());
    const std::string key = "e" + std::to_string(r % 4);
    switch ((r / 4) % 3) {
      case 0:
        store.update(key, [&](nlohmann::json& v) {
          inside(key, [&] { v = v.is_number_integer() ? v.get<int>() + 1 : 1; });
        });
        break;
      case 1:
        store.update_many({key}, [&](std::map<std::string, nlohmann::json>& values) {
          inside(key, [&] { values.erase(key); });
        });
        break;
      default: store.erase(key);
    }
  }
  if (overlap) {
    say("OVERLAP " + overlapped);
    return 3;
  }
  say("DONE");
  return 0;
});

// store-open-increment DIR KEY: READY, wait for a line, then open (perhaps create) the store and
// increment KEY once: "DONE" or "ERROR <what>".
RegisterHelper store_open_increment("store-open-increment", [](const std::vector<std::string>& a) {
  say("READY");
  wait_for_line();
  try {
    lockdb::Store store(a.at(0));
    store.increment(a.at(1));
  } catch (const std::exception& e) {
    say(std::string("ERROR ") + e.what());
    return 1;
  }
  say("DONE");
  return 0;
});

// store-crash-worker DIR SHARED OWN: increments SHARED then OWN, forever, acknowledging each
// increment after it returned ("S" / "O"). The test kills it with SIGKILL.
RegisterHelper store_crash_worker("store-crash-worker",
                                  [](const std::vector<std::string>& a) -> int {
                                    lockdb::Store store(a.at(0));
                                    say("READY");
                                    for (;;) {
                                      store.increment(a.at(1));
                                      say("S");
                                      store.increment(a.at(2));
                                      say("O");
                                    }
                                  });

// The value a writer puts: its own id, a round number and a payload whose length depends on the
// round, so a reader can tell a whole value from a torn one.
nlohmann::json writer_value(const std::string& key, int round) {
  const std::size_t len = static_cast<std::size_t>((round * 37) % 3000);
  return {{"key", key}, {"round", round}, {"len", len}, {"payload", std::string(len, 'x')}};
}

// store-writer DIR PREFIX NKEYS ROUNDS: READY, wait, then ROUNDS times put every key
// PREFIX<i>, DONE.
RegisterHelper store_writer("store-writer", [](const std::vector<std::string>& a) {
  lockdb::Store store(a.at(0));
  const int nkeys = std::stoi(a.at(2)), rounds = std::stoi(a.at(3));
  say("READY");
  wait_for_line();
  for (int r = 1; r <= rounds; ++r) {
    for (int i = 0; i < nkeys; ++i) {
      std::string key = a.at(1) + std::to_string(i);
      store.put(key, writer_value(key, r));
    }
  }
  say("DONE");
  return 0;
});

// store-reader DIR NKEYS PREFIX...: READY, then reads every key PREFIX<i> in a loop until a line
// arrives on stdin; every value must be whole. Says "READS <n> BAD <m> <first problem>".
RegisterHelper store_reader("store-reader", [](const std::vector<std::string>& a) {
  lockdb::Store store(a.at(0));
  const int nkeys = std::stoi(a.at(1));
  std::vector<std::string> prefixes(a.begin() + 2, a.end());
  long reads = 0, bad = 0;
  std::string problem;
  say("READY");
  do {
    for (const auto& prefix : prefixes) {
      for (int i = 0; i < nkeys; ++i) {
        std::string key = prefix + std::to_string(i);
        try {
          auto v = store.get(key);
          ++reads;
          if (!v) continue;  // not written yet
          const auto len = (*v).at("len").get<std::size_t>();
          if ((*v).at("key") != key || (*v).at("payload").get<std::string>().size() != len ||
              *v != writer_value(key, (*v).at("round").get<int>())) {
            if (bad++ == 0) problem = "wrong value for " + key;
          }
        } catch (const std::exception& e) {
          if (bad++ == 0) problem = e.what();
        }
      }
    }
  } while (!stdin_ready());
  say("READS " + std::to_string(reads) + " BAD " + std::to_string(bad) + " " + problem);
  return 0;
});

// store-put-as UID DIR KEY JSON: drops to UID, then tries to put; says "PUT <version>" or
// "ERROR <code> <message>", then "GET <value>".
RegisterHelper store_put_as("store-put-as", [](const std::vector<std::string>& a) {
  if (::setgid(static_cast<gid_t>(std::stoi(a.at(0)))) != 0 ||
      ::setuid(static_cast<uid_t>(std::stoi(a.at(0)))) != 0) {
    say("SETUID-FAILED");
    return 4;
  }
  lockdb::Store store(a.at(1));
  try {
    say("PUT " + store.put(a.at(2), nlohmann::json::parse(a.at(3))));
  } catch (const lockdb::Error& e) {
    say(std::string("ERROR ") + lockdb::errc_name(e.code()) + " " + e.what());
  }
  auto v = store.get(a.at(2));
  say("GET " + (v ? v->dump() : std::string("absent")));
  return 0;
});

// store-threads DIR KEY THREADS N: THREADS threads of one process share one Store and each
// increments KEY N times. DONE.
RegisterHelper store_threads("store-threads", [](const std::vector<std::string>& a) {
  lockdb::Store store(a.at(0));
  const int threads = std::stoi(a.at(2)), n = std::stoi(a.at(3));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < n; ++i) store.increment(a.at(1));
    });
  }
  for (auto& t : pool) t.join();
  say("DONE");
  return 0;
});

// store-update-many DIR N KEY...: N times, one update_many over the KEYs that adds 1 to each
// (missing = 0). Keys are given in different orders by different processes. DONE.
RegisterHelper store_update_many("store-update-many", [](const std::vector<std::string>& a) {
  lockdb::Store store(a.at(0));
  const int n = std::stoi(a.at(1));
  std::vector<std::string> keys(a.begin() + 2, a.end());
  say("READY");
  wait_for_line();
  for (int i = 0; i < n; ++i) {
    store.update_many(keys, [&](std::map<std::string, nlohmann::json>& values) {
      for (const auto& k : keys) {
        auto it = values.find(k);
        values[k] = (it == values.end() ? 0 : it->second.get<long>()) + 1;
      }
    });
  }
  say("DONE");
  return 0;
});

}  // namespace
}  // namespace lockdb::test
