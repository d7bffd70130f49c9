// Helper commands for the history log tests. Each runs as its own process and appends records
// through detail::LogWriter, as a Store would. Hand-shakes are lines on stdout ("READY",
// "STARTED", "DONE <n>") and stdin ("go", "stop").
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <poll.h>

#include "helper.hpp"
#include "log_writer.hpp"

namespace lockdb::test {
namespace {

Durability durability_from(const std::string& name) {
  if (name == "full") return Durability::full;
  if (name == "file") return Durability::file;
  return Durability::none;
}

// True when a line (or EOF) is waiting on stdin.
bool stdin_ready() {
  pollfd p{0, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Record i of writer w: key "w<w>/k<i % keys>", value {"w": w, "i": i}, version "<w>-<i>",
// prev "<w>-<i - keys>" (the same key's previous write), so every record is identifiable.
void append_one(detail::LogWriter& log, int w, long i, long keys) {
  const std::string key = "w" + std::to_string(w) + "/k" + std::to_string(i % keys);
  const nlohmann::json value = {{"w", w}, {"i", i}};
  const std::string version = std::to_string(w) + "-" + std::to_string(i);
  const std::string prev = std::to_string(w) + "-" + std::to_string(i - keys);
  detail::RecordFields f;
  f.time = std::chrono::system_clock::now();
  f.key = key;
  f.op = "put";
  f.value = &value;
  if (i >= keys) f.prev_version = prev;
  f.version = version;
  log.append(detail::render_record(f));
}

// history-append LOGDIR SEGMENT_BYTES WRITER N KEYS [DURABILITY]: READY, wait for a line, append
// N records, DONE N.
RegisterHelper history_append("history-append", [](const std::vector<std::string>& a) {
  detail::LogWriter log(a.at(0), std::stoull(a.at(1)), durability_from(a.size() > 5 ? a[5] : ""));
  const int w = std::stoi(a.at(2));
  const long n = std::stol(a.at(3)), keys = std::stol(a.at(4));
  say("READY");
  wait_for_line();
  for (long i = 0; i < n; ++i) append_one(log, w, i, keys);
  say("DONE " + std::to_string(n));
  return 0;
});

// history-append-until-stop LOGDIR SEGMENT_BYTES WRITER KEYS: appends; says STARTED after the
// first 50 records; stops when a line arrives on stdin; DONE <records appended>.
RegisterHelper history_append_until_stop("history-append-until-stop",
                                         [](const std::vector<std::string>& a) {
                                           detail::LogWriter log(a.at(0), std::stoull(a.at(1)),
                                                                 Durability::none);
                                           const int w = std::stoi(a.at(2));
                                           const long keys = std::stol(a.at(3));
                                           long i = 0;
                                           for (; i < 50; ++i) append_one(log, w, i, keys);
                                           say("STARTED");
                                           for (; !stdin_ready(); ++i) append_one(log, w, i, keys);
                                           say("DONE " + std::to_string(i));
                                           return 0;
                                         });

}  // namespace
}  // namespace lockdb::test
