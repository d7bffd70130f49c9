// Config shared by processes, changed with compare-and-set.
//
// Several processes join a cluster by adding themselves to one config value,
//   {"revision": 3, "members": ["worker-0", "worker-2", "worker-1"]}
// without holding any lock while they think: each reads the config with its version
// (Store::entry), edits its copy, and writes it back with Store::compare_and_put, which writes
// only if the config is still at the version it read. A process that lost the race re-reads and
// tries again. No update is lost, and nobody blocks anybody while computing.
//
//   shared_config [STORE_DIR] [PROCESSES]
#include <lockdb/store.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "example_support.hpp"

namespace {

// Joins the cluster; returns how many times another process got there first.
int join(lockdb::Store& store, const std::string& name) {
  for (int retries = 0;; ++retries) {
    auto current = store.entry("config");  // value + version, no lock taken
    nlohmann::json config = current->value;
    config["members"].push_back(name);
    config["revision"] = config["revision"].get<int>() + 1;
    if (store.compare_and_put("config", current->version, config)) return retries;
    // Someone else changed the config since we read it: read again, redo the edit.
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto store_dir = example::store_dir(argc, argv, "shared-config");
  if (!store_dir) return 1;
  const std::string& dir = *store_dir;
  const int processes = argc > 2 ? std::atoi(argv[2]) : 4;

  try {
    lockdb::Store store(dir);
    // Create the config unless it exists: "only if absent" is compare_and_put with nullopt.
    store.compare_and_put("config", std::nullopt,
                          {{"revision", 0}, {"members", nlohmann::json::array()}});
    const int start_revision = store.get("config").value()["revision"].get<int>();

    // A start gate, so that the processes really race: each blocks reading the pipe until the
    // parent closes it.
    int gate[2];
    if (::pipe(gate) != 0) {
      std::perror("pipe");
      return 1;
    }
    std::fflush(stdout);
    for (int i = 0; i < processes; ++i) {
      pid_t pid = ::fork();
      if (pid < 0) {
        std::perror("fork");
        return 1;
      }
      if (pid == 0) {
        ::close(gate[1]);
        char c;
        while (::read(gate[0], &c, 1) > 0) {
        }
        int code = 1;
        try {
          const std::string name = "worker-" + std::to_string(i);
          const int retries = join(store, name);  // the Store object works in the child
          std::printf("%s joined (%d retr%s)\n", name.c_str(), retries, retries == 1 ? "y" : "ies");
          code = 0;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "worker %d: %s\n", i, e.what());
        }
        std::fflush(stdout);
        ::_exit(code);
      }
    }
    ::close(gate[0]);
    ::close(gate[1]);  // open the gate
    int failed = 0;
    for (int i = 0; i < processes; ++i) {
      int status = 0;
      if (::wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }

    auto config = store.entry("config").value();
    const int joined = config.value["revision"].get<int>() - start_revision;
    std::printf("%d processes joined; config at version %s:\n%s\n", joined, config.version.c_str(),
                config.value.dump(2).c_str());
    return failed == 0 && joined == processes ? 0 : 1;
  } catch (const lockdb::Error& e) {
    std::fprintf(stderr, "shared_config: %s\n", e.what());
    return 1;
  }
}
