// Helper commands for the crashed-writer and verify-while-writing tests.
#include <lockdb/store.hpp>

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include <poll.h>

#include "helper.hpp"
#include "replace.hpp"

namespace lockdb::test {
namespace {

// stage-temp PATH TEXT: writes the temp file of a replace of PATH with TEXT as atomic_write
// does, says STAGED, waits for a line, then renames it into place and says COMMITTED. Killed
// while waiting, it leaves its temp file as a writer that crashed mid-write does.
RegisterHelper stage_temp("stage-temp", [](const std::vector<std::string>& a) {
  detail::StagedReplace staged(a.at(0), a.at(1), Durability::none);
  say("STAGED");
  wait_for_line();
  staged.commit();
  say("COMMITTED");
  return 0;
});

bool line_waiting() {
  pollfd p{0, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// store-churn DIR PREFIX NKEYS: READY, then puts, increments, erases and update_many calls on
// keys PREFIX0..PREFIX<NKEYS-1> until a line arrives on stdin; then DONE <writes>.
RegisterHelper store_churn("store-churn", [](const std::vector<std::string>& a) {
  Store store(a.at(0));
  const std::string prefix = a.at(1);
  const int nkeys = std::stoi(a.at(2));
  long writes = 0;
  say("READY");
  for (int round = 0; !line_waiting(); ++round) {
    for (int i = 0; i < nkeys; ++i) {
      const std::string key = prefix + std::to_string(i);
      switch ((round + i) % 4) {
        case 0:
          store.put(key, nlohmann::json{{"round", round}, {"pad", std::string(64, 'x')}});
          break;
        case 1: store.erase(key); break;
        case 2: store.increment(key + "n", 1); break;
        default:
          store.update_many({key, key + "m"},
                            [&key, round](std::map<std::string, nlohmann::json>& m) {
                              m[key] = round;
                              if (round % 2 == 0) {
                                m[key + "m"] = round;
                              } else {
                                m.erase(key + "m");
                              }
                            });
      }
      ++writes;
    }
  }
  say("DONE " + std::to_string(writes));
  return 0;
});

}  // namespace
}  // namespace lockdb::test
