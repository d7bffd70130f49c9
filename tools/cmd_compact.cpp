// compact (bound the log) and rebuild (a new store from the log alone).
#include <memory>

#include "cli_common.hpp"

namespace lockdb::cli {
namespace {

struct CompactArgs {
  std::string store;
  std::optional<std::size_t> keep_last;
  std::string before;
  std::string target;
};

std::uint64_t log_bytes(const History& history) {
  std::uint64_t bytes = 0;
  for (const auto& segment : history.segments()) {
    bytes += size_of_file(segment);
  }
  return bytes;
}

int run_compact(const CompactArgs& a, const Settings& settings) {
  if (!a.keep_last && a.before.empty()) {
    throw Error(Errc::invalid_argument, "compact", {}, "give --keep-last N or --before TIME");
  }
  History history = open_history(a.store);
  const std::uint64_t bytes_before = log_bytes(history);
  std::size_t dropped = 0;
  {
    Progress progress("compacting log");
    dropped = a.keep_last ? compact_history_keep_last(a.store, *a.keep_last)
                          : compact_history_before(a.store, to_time(a.before));
  }
  const std::uint64_t bytes_after = log_bytes(history);
  if (settings.json) {
    out_line(JsonObject()
                 .unum("dropped", dropped)
                 .unum("log_bytes_before", bytes_before)
                 .unum("log_bytes_after", bytes_after)
                 .text());
  } else {
    out_line("dropped " + std::to_string(dropped) + (dropped == 1 ? " record" : " records") +
             "; log " + std::to_string(bytes_before) + " -> " + std::to_string(bytes_after) +
             " bytes");
  }
  return 0;
}

int run_rebuild(const CompactArgs& a, const Settings& settings) {
  (void)open_history(a.store);  // the command's own error for a directory without a store
  {
    Progress progress("rebuilding store");
    rebuild_store(a.store, a.target);
  }
  Store rebuilt = open_store(a.target);
  const auto keys = rebuilt.keys().size();
  if (settings.json) {
    out_line(JsonObject()
                 .str("store", rebuilt.dir().string())
                 .str("from", a.store)
                 .unum("keys", keys)
                 .text());
  } else {
    out_line("rebuilt " + rebuilt.dir().string() + " from the log of " + a.store + ": " +
             std::to_string(keys) + (keys == 1 ? " key" : " keys"));
  }
  return 0;
}

}  // namespace

void add_compact_commands(CLI::App& app, Commands& commands) {
  const Settings& settings = commands.settings;
  {
    auto a = std::make_shared<CompactArgs>();
    auto* command = commands.add(
        app, "compact", "Bound the log, keeping every key's current value; safe while writers run",
        "  lockdb compact ./state --keep-last 100\n"
        "  lockdb compact ./state --before 30d\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    auto* keep = add_count(command, "--keep-last", a->keep_last, "Keep each key's last N records");
    auto* before = command->add_option("--before", a->before, "Drop the records before TIME")
                       ->check(time_validator())
                       ->type_name("TIME");
    keep->excludes(before);
    commands.on_run(command, [a, &settings] { return run_compact(*a, settings); });
  }
  {
    auto a = std::make_shared<CompactArgs>();
    auto* command = commands.add(
        app, "rebuild", "Make a new store in TARGET_DIR from the log alone",
        "  lockdb rebuild ./state ./state-rebuilt\n"
        "  lockdb rebuild ./state ./copy && diff <(lockdb keys ./state) <(lockdb keys ./copy)\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("TARGET_DIR", a->target, "Where to make the new store (must not hold one)")
        ->required();
    commands.on_run(command, [a, &settings] { return run_rebuild(*a, settings); });
  }
}

}  // namespace lockdb::cli
