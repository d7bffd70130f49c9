// Commands on the change log: log (with --follow) and history.
#include <memory>
#include <set>

#ifdef __linux__
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>
#endif

#include "cli_common.hpp"

namespace lockdb::cli {
namespace {

const std::vector<std::string> kOps = {"put", "update",      "increment", "erase",
                                       "cas", "update_many", "repair"};

struct LogArgs {
  std::string store;
  std::string key;
  std::string prefix;
  std::string since;
  std::string until;
  std::string op;
  std::size_t limit = 0;
  bool has_limit = false;
  bool follow = false;
};

// Wakes `log --follow` when the log directory changes: inotify on Linux, with a one-second
// re-check as a safety net (a network filesystem may not report writes of other hosts);
// elsewhere a 200 ms poll.
class LogWatcher {
 public:
  explicit LogWatcher(const std::filesystem::path& log_dir) {
#ifdef __linux__
    fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd_ >= 0 && ::inotify_add_watch(fd_, log_dir.c_str(),
                                        IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
      ::close(fd_);
      fd_ = -1;
    }
#else
    (void)log_dir;
#endif
  }
  ~LogWatcher() {
#ifdef __linux__
    if (fd_ >= 0) ::close(fd_);
#endif
  }
  LogWatcher(const LogWatcher&) = delete;
  LogWatcher& operator=(const LogWatcher&) = delete;

  // Returns when the log may have changed.
  void wait() {
#ifdef __linux__
    if (fd_ >= 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 1000) > 0) {
        char buf[4096];
        while (::read(fd_, buf, sizeof buf) > 0) {
        }
      }
      return;
    }
#endif
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

 private:
  int fd_ = -1;
};

bool before(const Record& r, const LogPosition& end) {
  return r.segment < end.segment || (r.segment == end.segment && r.offset < end.offset);
}

int run_log(const LogArgs& a, const Settings& settings) {
  Query query;
  if (!a.key.empty()) query.key = a.key;
  if (!a.prefix.empty()) query.key_prefix = a.prefix;
  if (!a.since.empty()) query.since = to_time(a.since);
  if (!a.until.empty()) query.until = to_time(a.until);
  if (!a.op.empty()) query.op = a.op;
  if (a.has_limit) query.limit = a.limit;
  if (a.has_limit && a.limit == 0) return 0;

  History history(a.store);
  const Style style(settings);
  std::size_t printed = 0;
  auto print = [&](const Record& r) {
    out_line(settings.json ? record_json(r) : record_line(r, style));
    ++printed;
  };

  if (!a.follow) {
    Progress progress("reading log", history);
    history.for_each(query, [&](const Record& r) {
      progress.seen(r);
      print(r);
      return true;
    });
    return 0;
  }

  // Follow: watch first so that no change after end() goes unnoticed; print what is there up to
  // end(), then everything appended from end() on, across segment rotation.
  LogWatcher watcher(std::filesystem::path(a.store) / "log");
  LogPosition position = history.end();
  {
    Progress progress("reading log", history);
    history.for_each(query, [&](const Record& r) {
      if (!before(r, position)) return false;
      progress.seen(r);
      print(r);
      return true;
    });
  }
  Query rest = query;
  rest.limit.reset();  // counted here across calls
  for (;;) {
    if (a.has_limit && printed >= a.limit) return 0;
    flush_out();
    watcher.wait();
    position = history.read_from(position, rest, [&](const Record& r) {
      if (!a.has_limit || printed < a.limit) print(r);
    });
  }
}

// The change a record made, in a few words: the value, or for an object replacing an object,
// the members that changed ("+added=1, -removed, changed: 1 -> 2").
std::string change_text(const Record& r, const std::optional<nlohmann::json>& previous) {
  if (!r.value) return "(erased)";
  const nlohmann::json& now = *r.value;
  if (!previous || !previous->is_object() || !now.is_object()) return shorten(dump(now), 100);
  std::set<std::string> names;
  for (const auto& item : previous->items()) names.insert(item.key());
  for (const auto& item : now.items()) names.insert(item.key());
  std::vector<std::string> parts;
  for (const auto& name : names) {
    const auto old_it = previous->find(name);
    const auto new_it = now.find(name);
    if (old_it == previous->end()) {
      parts.push_back("+" + name + "=" + shorten(dump(*new_it), 30));
    } else if (new_it == now.end()) {
      parts.push_back("-" + name);
    } else if (*old_it != *new_it) {
      parts.push_back(name + ": " + shorten(dump(*old_it), 30) + " -> " +
                      shorten(dump(*new_it), 30));
    }
  }
  if (parts.empty()) return "(unchanged)";
  std::string text;
  const std::size_t shown = std::min<std::size_t>(parts.size(), 5);
  for (std::size_t i = 0; i < shown; ++i) text += (i ? ", " : "") + parts[i];
  if (parts.size() > shown) text += ", ... (" + std::to_string(parts.size() - shown) + " more)";
  return text;
}

int run_history(const LogArgs& a, const Settings& settings) {
  History history(a.store);
  const Style style(settings);
  Query query;
  query.key = a.key;
  bool any = false;
  std::optional<nlohmann::json> previous;
  {
    Progress progress("reading log", history);
    history.for_each(query, [&](const Record& r) {
      progress.seen(r);
      any = true;
      if (settings.json) {
        out_line(record_json(r));
      } else {
        out_line(style.dim(format_time(r.time)) + "  " + style.op(r.op, 11) + "  " + who(r) + "  " +
                 change_text(r, previous));
      }
      previous = r.value;
      return true;
    });
  }
  if (!any) {
    throw Error(Errc::not_found, "history " + quote(a.key), std::filesystem::path(a.store) / "log",
                "no record of this key");
  }
  return 0;
}

}  // namespace

void add_log_commands(CLI::App& app, Commands& commands) {
  const Settings& settings = commands.settings;
  {
    auto a = std::make_shared<LogArgs>();
    auto* command = commands.add(
        app, "log", "Print the change log's records in order (or follow it, like tail -f)",
        "  lockdb log ./state\n"
        "  lockdb log ./state --key config --since 2h\n"
        "  lockdb log ./state --op erase --since 2026-11-30 --until 2026-12-01\n"
        "  lockdb log ./state --follow --since now\n"
        "  lockdb log ./state --key jobs --json | jq -c '{time, value}'\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("--key", a->key, "Only records of KEY")->type_name("KEY");
    command->add_option("--prefix", a->prefix, "Only records of keys that start with PREFIX")
        ->type_name("PREFIX");
    command->add_option("--since", a->since, "Only records at or after TIME")
        ->check(time_validator())
        ->type_name("TIME");
    command->add_option("--until", a->until, "Only records before TIME")
        ->check(time_validator())
        ->type_name("TIME");
    command->add_option("--op", a->op, "Only records of this operation")
        ->check(CLI::IsMember(kOps));
    command
        ->add_option_function<std::size_t>(
            "--limit",
            [a](std::size_t n) {
              a->limit = n;
              a->has_limit = true;
            },
            "Stop after N records")
        ->type_name("N");
    command->add_flag("--follow,-f", a->follow,
                      "Keep printing records as they are appended, until interrupted");
    commands.on_run(command, [a, &settings] { return run_log(*a, settings); });
  }
  {
    auto a = std::make_shared<LogArgs>();
    auto* command =
        commands.add(app, "history", "One line per change of a key: time, op, who, what changed",
                     "  lockdb history ./state config\n"
                     "  lockdb history ./state config --json | jq -c '[.time, .pid, .value]'\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("KEY", a->key, "The key")->required();
    commands.on_run(command, [a, &settings] { return run_history(*a, settings); });
  }
}

}  // namespace lockdb::cli
