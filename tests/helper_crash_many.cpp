// Helper command for test_crash_many: transfers between keys with update_many until killed.
#include <lockdb/store.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "helper.hpp"

namespace lockdb::test {
namespace {

// transfer DIR KEYS SEED: READY, then forever: move a random amount between two of the KEYS
// keys "k0".. with update_many, each value {"balance": n, "last": "<pid>-<seq>"}, and print
// "T <pid>-<seq>" once the update returned.
RegisterHelper transfer("transfer", [](const std::vector<std::string>& a) {
  lockdb::Store store(a.at(0));
  const int keys = std::stoi(a.at(1));
  std::mt19937 rng(static_cast<unsigned>(std::stoul(a.at(2))));
  const std::string me = std::to_string(::getpid());
  say("READY");
  for (std::uint64_t seq = 0;; ++seq) {
    const int from = static_cast<int>(rng() % static_cast<unsigned>(keys));
    const int to = (from + 1 + static_cast<int>(rng() % static_cast<unsigned>(keys - 1))) % keys;
    const std::int64_t amount = 1 + static_cast<std::int64_t>(rng() % 50);
    const std::string id = me + "-" + std::to_string(seq);
    const std::string kf = "k" + std::to_string(from), kt = "k" + std::to_string(to);
    store.update_many({kf, kt}, [&](std::map<std::string, nlohmann::json>& v) {
      v[kf] = {{"balance", v.at(kf).at("balance").get<std::int64_t>() - amount}, {"last", id}};
      v[kt] = {{"balance", v.at(kt).at("balance").get<std::int64_t>() + amount}, {"last", id}};
    });
    say("T " + id);
  }
  return 0;
});

}  // namespace
}  // namespace lockdb::test
