// stats: keys and their bytes, the log's size and segments, changes per op, busiest keys.
#include <algorithm>
#include <memory>
#include <unordered_map>

#include "cli_common.hpp"

namespace lockdb::cli {
namespace {

struct StatsArgs {
  std::string store;
  std::optional<std::size_t> top;  // default 10
};

std::string human_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  if (unit == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", value, units[unit]);
  return buf;
}

int run_stats(const StatsArgs& a, const Settings& settings) {
  Store store = open_store(a.store);
  History history = open_history(a.store);

  const auto keys = store.keys();
  std::uint64_t key_bytes = 0;
  for (const auto& key : keys) {
    key_bytes += size_of_file(store.file_path(key));  // a key erased meanwhile counts nothing
  }
  const auto segments = history.segments();
  std::uint64_t log_bytes = 0;
  for (const auto& segment : segments) log_bytes += size_of_file(segment);

  std::uint64_t records = 0;
  std::map<std::string, std::uint64_t> per_op;
  std::unordered_map<std::string, std::uint64_t> per_key;
  std::size_t torn = 0;
  {
    Progress progress("reading log", history);
    torn = history.for_each({}, [&](const Record& r) {
      progress.seen(r);
      ++records;
      ++per_op[r.op];
      ++per_key[r.key];
      return true;
    });
  }
  std::vector<std::pair<std::string, std::uint64_t>> busiest(per_key.begin(), per_key.end());
  std::sort(busiest.begin(), busiest.end(), [](const auto& x, const auto& y) {
    return x.second != y.second ? x.second > y.second : x.first < y.first;
  });
  if (busiest.size() > a.top.value_or(10)) busiest.resize(a.top.value_or(10));

  if (settings.json) {
    JsonObject ops;
    for (const auto& [op, n] : per_op) ops.unum(op, n);
    std::string busy = "[";
    for (const auto& [key, n] : busiest) {
      if (busy.size() > 1) busy += ',';
      busy += JsonObject().str("key", key).unum("changes", n).text();
    }
    busy += "]";
    out_line(JsonObject()
                 .str("store", store.dir().string())
                 .unum("keys", keys.size())
                 .unum("key_bytes", key_bytes)
                 .raw("log", JsonObject()
                                 .unum("bytes", log_bytes)
                                 .unum("segments", segments.size())
                                 .unum("records", records)
                                 .unum("torn_lines", torn)
                                 .text())
                 .raw("ops", ops.text())
                 .raw("busiest", busy)
                 .text());
    return 0;
  }
  const Style style(settings);
  out_line(style.bold("store   ") + "  " + store.dir().string());
  out_line(style.bold("keys    ") + "  " + std::to_string(keys.size()) + " (" +
           human_bytes(key_bytes) + " in key files)");
  std::string log_line =
      std::to_string(records) + " records in " + std::to_string(segments.size()) +
      (segments.size() == 1 ? " segment, " : " segments, ") + human_bytes(log_bytes);
  if (torn) log_line += ", " + std::to_string(torn) + " torn lines";
  out_line(style.bold("log     ") + "  " + log_line);
  std::string ops_line;
  for (const auto& [op, n] : per_op) {
    ops_line += (ops_line.empty() ? "" : ", ") + op + " " + std::to_string(n);
  }
  out_line(style.bold("changes ") + "  " + (ops_line.empty() ? "-" : ops_line));
  out_line(busiest.empty() ? style.bold("busiest ") + "  -" : style.bold("busiest"));
  std::size_t count_width = 0;
  for (const auto& [key, n] : busiest)
    count_width = std::max(count_width, std::to_string(n).size());
  for (const auto& [key, n] : busiest) {
    const std::string count = std::to_string(n);
    out_line("  " + std::string(count_width - count.size(), ' ') + count + "  " + show_key(key));
  }
  return 0;
}

}  // namespace

void add_stats_commands(CLI::App& app, Commands& commands) {
  const Settings& settings = commands.settings;
  auto a = std::make_shared<StatsArgs>();
  auto* command = commands.add(
      app, "stats", "Keys and bytes, log size and segments, changes per op, busiest keys",
      "  lockdb stats ./state\n"
      "  lockdb stats ./state --top 3 --json | jq .busiest\n");
  command->add_option("STORE_DIR", a->store, "The store directory")->required();
  add_count(command, "--top", a->top, "How many of the busiest keys to list (default 10)");
  commands.on_run(command, [a, &settings] { return run_stats(*a, settings); });
}

}  // namespace lockdb::cli
