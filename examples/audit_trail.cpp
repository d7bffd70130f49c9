// The audit trail of one key: who changed it, when, how, and from which version to which.
//
// Every write to a store appends one record to its history log while the key is still locked:
// time, key, operation, the new value, the previous and the new version, pid and host. This
// program changes a "feature_flags" key a few ways (one change from another process, and one
// made around the store by editing the file directly, as a script or the seed's Python helper
// might), then prints the key's trail, what the flags were at an earlier moment, and what
// Store::verify() says about the change nobody logged.
//
//   audit_trail [STORE_DIR]
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "example_support.hpp"

int main(int argc, char** argv) {
  const auto store_dir = example::store_dir(argc, argv, "audit-trail");
  if (!store_dir) return 1;
  const std::string& dir = *store_dir;
  const std::string key = "feature_flags";

  try {
    lockdb::Store store(dir);
    store.put(key, {{"dark_mode", false}, {"beta", false}});
    store.update(key, [](nlohmann::json& flags) { flags["dark_mode"] = true; });
    const auto before_beta = std::chrono::system_clock::now();

    // Another process turns on "beta".
    std::fflush(stdout);
    pid_t pid = ::fork();
    if (pid == 0) {
      int code = 1;
      try {
        lockdb::Store(dir).update(key, [](nlohmann::json& flags) { flags["beta"] = true; });
        code = 0;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
      }
      ::_exit(code);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);

    // Someone edits the file directly (it is plain JSON); the log knows nothing of it...
    std::ofstream(store.file_path(key), std::ios::trunc)
        << R"({"beta": true, "dark_mode": true, "hotfix": true})";
    // ... but the next logged write starts from a version the log has never seen: a gap.
    auto e = store.entry(key).value();
    e.value["rollout_percent"] = 10;
    store.compare_and_put(key, e.version, e.value);
    store.erase(key);
    store.put(key, {{"dark_mode", true}});

    std::printf("audit trail of \"%s\" in %s\n", key.c_str(), store.dir().c_str());
    lockdb::History history(dir);
    lockdb::Query query;
    query.key = key;
    std::optional<std::string> last;
    for (const auto& r : history.records(query)) {
      if (r.prev_version != last) {
        std::printf("  !! unlogged change: the file went from %s to %s outside the store\n",
                    last.value_or("(absent)").c_str(), r.prev_version.value_or("(absent)").c_str());
      }
      std::printf("  %s  %s pid %ld  %-7s %s -> %s  %s\n", example::utc(r.time).c_str(),
                  r.host.c_str(), r.pid, r.op.c_str(), r.prev_version.value_or("(absent)").c_str(),
                  r.version.value_or("(absent)").c_str(),
                  r.value ? r.value->dump().c_str() : "(erased)");
      last = r.version;
    }

    auto then = history.value_at(key, before_beta);
    std::printf("value at %s: %s\n", example::utc(before_beta).c_str(),
                then ? then->dump().c_str() : "(absent)");

    std::printf("verify():\n");
    for (const auto& f : store.verify()) {
      std::printf("  %s %s: %s\n", lockdb::finding_kind_name(f.kind), f.key.c_str(),
                  f.detail.c_str());
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
  } catch (const lockdb::Error& e) {
    std::fprintf(stderr, "audit_trail: %s\n", e.what());
    return 1;
  }
}
