// Helper commands for the CLI tests: writer processes that fill a store through lockdb::Store.
#include <lockdb/store.hpp>

#include <string>
#include <vector>

#include "helper.hpp"

namespace lockdb::test {
namespace {

// cli-write STORE SEGMENT_BYTES STEP...: opens (creating) STORE with log segments of
// SEGMENT_BYTES (0: the default) and runs each step in order, then says DONE. Steps:
//   put KEY JSON | incr KEY N | del KEY | put-range KEY FROM TO (puts {"n": i} for each i)
//   incr-times KEY TIMES (adds 1, TIMES times)
//   wait (says WAITING and waits for a line on stdin)
RegisterHelper cli_write("cli-write", [](const std::vector<std::string>& a) {
  StoreOptions options;
  const auto segment_bytes = std::stoull(a.at(1));
  if (segment_bytes != 0) options.log_segment_bytes = segment_bytes;
  Store store(a.at(0), options);
  for (std::size_t i = 2; i < a.size();) {
    const std::string& step = a[i];
    if (step == "put") {
      store.put(a.at(i + 1), nlohmann::json::parse(a.at(i + 2)));
      i += 3;
    } else if (step == "incr") {
      store.increment(a.at(i + 1), std::stoll(a.at(i + 2)));
      i += 3;
    } else if (step == "del") {
      store.erase(a.at(i + 1));
      i += 2;
    } else if (step == "put-range") {
      const long from = std::stol(a.at(i + 2)), to = std::stol(a.at(i + 3));
      for (long n = from; n <= to; ++n) store.put(a.at(i + 1), {{"n", n}});
      i += 4;
    } else if (step == "incr-times") {
      const long times = std::stol(a.at(i + 2));
      for (long n = 0; n < times; ++n) store.increment(a.at(i + 1));
      i += 3;
    } else if (step == "wait") {
      say("WAITING");
      wait_for_line();
      i += 1;
    } else {
      say("unknown step " + step);
      return 2;
    }
  }
  say("DONE");
  return 0;
});

}  // namespace
}  // namespace lockdb::test
