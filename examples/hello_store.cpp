// The README's "Hello, store": 4 processes increment one counter 1000 times each, then the
// program prints the counter (always 4000) and the history of another key.
//
//   hello_store [STORE_DIR]      (default /tmp/hello-store)
#include <lockdb/lockdb.hpp>

#include <cstdio>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp/hello-store";
  lockdb::Store store(dir);  // a directory, created when missing
  store.put("config", {{"workers", 4}});
  for (int w = 0; w < 4; ++w) {  // 4 processes x 1000 increments
    if (fork() == 0) {
      for (int i = 0; i < 1000; ++i) store.increment("jobs_done");
      _exit(0);
    }
  }
  while (wait(nullptr) > 0) {
  }
  std::printf("jobs_done = %s\n", store.get("jobs_done")->dump().c_str());  // always 4000
  for (const auto& r : lockdb::History(dir).records({.key = "config"})) {
    std::printf("%s %s by pid %ld\n", lockdb::format_time(r.time).c_str(), r.op.c_str(), r.pid);
  }
}
