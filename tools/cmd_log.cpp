// Commands on the change log: log (with --follow) and history.
#include <algorithm>
#include <memory>
#include <set>

#include <csignal>
#include <cstdlib>
#include <deque>

#include <signal.h>

#ifdef __linux__
#include <poll.h>
#include <sys/inotify.h>
#include <sys/vfs.h>
#include <unistd.h>
#endif

#include "cli_common.hpp"

namespace lockdb::cli {
namespace {

const std::vector<std::string> kOps = {"put",         "update", "increment", "erase", "cas",
                                       "update_many", "repair", "import",    "run"};

struct LogArgs {
  std::string store;
  std::string key;
  std::vector<std::string> keys;  // watch KEY...
  std::string prefix;
  std::string since;
  std::string until;
  std::string op;
  std::optional<std::size_t> limit;  // the first N (log, history); watch --count
  std::optional<std::size_t> last;   // the newest N, oldest first
  bool reverse = false;
  bool follow = false;
  bool from_start = false;
  bool quiet = false;
};

// SIGINT and SIGTERM end --follow and watch cleanly: what was printed is flushed, exit 0.
volatile std::sig_atomic_t g_stop = 0;

void on_stop_signal(int) { g_stop = 1; }

void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;  // no SA_RESTART: a blocked poll() returns at once
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

// Filesystems where inotify does not see other hosts' writes (or any): network and FUSE
// filesystems (NFS, SMB/CIFS, 9p, Ceph, AFS, FUSE such as sshfs). There --follow and watch poll.
bool inotify_blind(const std::filesystem::path& dir) {
#ifdef __linux__
  struct statfs st {};
  if (::statfs(dir.c_str(), &st) != 0) return true;
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0x6969UL:      // NFS
    case 0xFF534D42UL:  // CIFS
    case 0xFE534D42UL:  // SMB2
    case 0x517BUL:      // SMB
    case 0x01021997UL:  // 9p (v9fs)
    case 0x00C36400UL:  // Ceph
    case 0x5346414FUL:  // AFS
    case 0x65735546UL:  // FUSE
      return true;
    default: return false;
  }
#else
  (void)dir;
  return true;
#endif
}

// LOCKDB_POLL set and not "0": poll even where inotify seems to work (a network filesystem
// that inotify_blind does not know).
bool poll_asked() {
  const char* env = std::getenv("LOCKDB_POLL");
  return env != nullptr && *env != '\0' && std::string_view(env) != "0";
}

// Wakes `log --follow` and `watch` when the log directory changes: inotify on Linux, with a
// one-second re-check as a safety net; a 200 ms poll where inotify is unavailable or blind
// (inotify_blind above, or no inotify instance left) or LOCKDB_POLL asks for it. On an etcd
// location it never waits: History::read_from itself waits on an etcd watch of the log.
class LogWatcher {
 public:
  explicit LogWatcher(const std::string& store) : on_etcd_(is_etcd_location(store)) {
    if (on_etcd_) return;
    const std::filesystem::path log_dir = std::filesystem::path(store) / "log";
#ifdef __linux__
    if (poll_asked() || inotify_blind(log_dir)) return;
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
    if (on_etcd_) return;
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
  const bool on_etcd_;
  int fd_ = -1;
};

bool before(const Record& r, const LogPosition& end) {
  return r.segment < end.segment || (r.segment == end.segment && r.offset < end.offset);
}

// Prints records as log --follow and watch do, from `position` on, until --limit/--count
// records were printed or a signal came. `keep(r)`: whether a record is one of those asked for.
int follow_from(const History& history, const std::string& store, LogPosition position,
                const Query& query, const std::function<bool(const Record&)>& keep,
                std::optional<std::size_t> limit, std::size_t printed,
                const std::function<void(const Record&)>& print, LogWatcher& watcher) {
  Query rest = query;
  rest.limit.reset();  // counted here across calls
  (void)store;
  for (;;) {
    if ((limit && printed >= *limit) || g_stop) break;
    flush_out();
    watcher.wait();
    if (g_stop) break;
    position = history.read_from(position, rest, [&](const Record& r) {
      if ((!limit || printed < *limit) && keep(r)) {
        print(r);
        ++printed;
      }
    });
  }
  flush_out();
  return 0;
}

int run_log(const LogArgs& a, const Settings& settings) {
  if (a.reverse && a.follow) {
    throw Error(Errc::invalid_argument, "log", {}, "--reverse cannot follow");
  }
  Query query;
  if (!a.key.empty()) query.key = a.key;
  if (!a.prefix.empty()) query.key_prefix = a.prefix;
  if (!a.since.empty()) query.since = to_time(a.since);
  if (!a.until.empty()) query.until = to_time(a.until);
  if (!a.op.empty()) query.op = a.op;
  const bool counted = !a.last && !a.reverse;  // the first N can stop the scan early
  if (a.limit && counted) query.limit = a.limit;
  if (a.limit && *a.limit == 0) return 0;

  History history = open_history(a.store);
  const Style style(settings);
  std::size_t printed = 0;
  auto print = [&](const Record& r) {
    out_line(settings.json ? record_json(r) : record_line(r, style));
    ++printed;
  };
  if (a.follow) catch_stop_signals();
  // Follow: watch first so that no change after end() goes unnoticed.
  std::optional<LogWatcher> watcher;
  if (a.follow) watcher.emplace(a.store);
  const LogPosition end = history.end();
  // The past: all of it (or the newest N, or reversed); with --follow only when asked.
  const bool past = !a.follow || a.from_start || !a.since.empty() || a.last;
  if (past) {
    std::deque<Record> kept;  // --last / --reverse
    Progress progress("reading log", history);
    history.for_each(query, [&](const Record& r) {
      if (a.follow && !before(r, end)) return false;
      progress.seen(r);
      if (counted) {
        print(r);
        return true;
      }
      kept.push_back(r);
      if (a.last && kept.size() > *a.last) kept.pop_front();
      return true;
    });
    progress.finish();
    if (a.reverse) std::reverse(kept.begin(), kept.end());
    if (a.limit && kept.size() > *a.limit) kept.resize(*a.limit);
    for (const auto& r : kept) print(r);
  }
  if (!a.follow) return 0;
  if (!a.quiet) {
    flush_out();
    std::fprintf(stderr, "lockdb: following the log of %s (Ctrl-C to stop)\n", a.store.c_str());
    std::fflush(stderr);
  }
  // --limit counts every record printed, the past ones included.
  return follow_from(
      history, a.store, end, query, [](const Record&) { return true; }, a.limit, printed,
      [&](const Record& r) { print(r); }, *watcher);
}

int run_watch(const LogArgs& a, const Settings& settings) {
  if (a.keys.empty() && a.prefix.empty()) {
    throw Error(Errc::invalid_argument, "watch", {}, "give KEY... or --prefix PREFIX");
  }
  if (!a.keys.empty() && !a.prefix.empty()) {
    throw Error(Errc::invalid_argument, "watch", {}, "give KEY... or --prefix, not both");
  }
  History history = open_history(a.store);
  const Style style(settings);
  Query query;
  if (a.keys.size() == 1) query.key = a.keys[0];
  if (!a.prefix.empty()) query.key_prefix = a.prefix;
  if (!a.since.empty()) query.since = to_time(a.since);
  const std::set<std::string> wanted(a.keys.begin(), a.keys.end());
  auto keep = [&](const Record& r) { return wanted.empty() || wanted.count(r.key) != 0; };
  std::size_t printed = 0;
  auto print = [&](const Record& r) {
    out_line(settings.json ? record_json(r) : record_line(r, style));
  };
  catch_stop_signals();
  LogWatcher watcher(a.store);
  const LogPosition end = history.end();
  if (!a.since.empty()) {  // the past only when asked
    history.for_each(query, [&](const Record& r) {
      if (!before(r, end) || (a.limit && printed >= *a.limit)) return false;
      if (keep(r)) {
        print(r);
        ++printed;
      }
      return true;
    });
  }
  if (!a.quiet) {
    std::fflush(stdout);
    std::fprintf(stderr, "lockdb: watching %s in %s (Ctrl-C to stop)\n",
                 a.prefix.empty()
                     ? (a.keys.size() == 1 ? quote(a.keys[0]).c_str()
                                           : (std::to_string(a.keys.size()) + " keys").c_str())
                     : ("keys starting with " + quote(a.prefix)).c_str(),
                 a.store.c_str());
    std::fflush(stderr);
  }
  return follow_from(history, a.store, end, query, keep, a.limit, printed, print, watcher);
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
  History history = open_history(a.store);
  const Style style(settings);
  Query query;
  query.key = a.key;
  bool any = false;
  std::optional<nlohmann::json> previous;
  struct Line {
    Record record;
    std::optional<nlohmann::json> previous;
  };
  std::deque<Line> shown;
  {
    Progress progress("reading log", history);
    history.for_each(query, [&](const Record& r) {
      progress.seen(r);
      any = true;
      if (!a.limit || shown.size() < *a.limit) shown.push_back({r, previous});
      if (a.last && shown.size() > *a.last) shown.pop_front();
      previous = r.value;
      return a.last || !a.limit || shown.size() < *a.limit;
    });
  }
  for (const auto& [r, before_r] : shown) {
    if (settings.json) {
      out_line(record_json(r));
    } else {
      out_line(style.dim(format_time(r.time)) + "  " + style.op(r.op, 11) + "  " + who(r) + "  " +
               change_text(r, before_r));
    }
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
        "  lockdb log ./state --since '2026-11-30 18:00:00Z' --until 1764525600\n"
        "  lockdb log ./state --last 20                  # the newest 20, oldest first\n"
        "  lockdb log ./state --reverse --limit 5        # the newest 5, newest first\n"
        "  lockdb log ./state --follow                   # changes from now on\n"
        "  lockdb log ./state --follow --last 10         # like tail -n 10 -f\n"
        "  lockdb log ./state --follow --from-start      # the whole log, then new records\n"
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
    add_count(command, "--limit", a->limit, "Stop after N records");
    add_count(command, "--last", a->last, "Only the newest N records (printed oldest first)");
    command->add_flag("--reverse", a->reverse, "Newest first");
    command->add_flag("--follow,-f", a->follow,
                      "Keep printing records as they are appended (from now on; the past too "
                      "with --from-start, --since or --last), until interrupted");
    command->add_flag("--from-start", a->from_start, "With --follow: print the whole log first");
    command->add_flag("--quiet,-q", a->quiet,
                      "With --follow: no \"following\" line on stderr once it is in place");
    commands.on_run(command, [a, &settings] { return run_log(*a, settings); });
  }
  {
    auto a = std::make_shared<LogArgs>();
    auto* command =
        commands.add(app, "history", "One line per change of a key: time, op, who, what changed",
                     "  lockdb history ./state config\n"
                     "  lockdb history ./state config --last 5      # the newest 5\n"
                     "  lockdb history ./state config --limit 3     # the first 3\n"
                     "  lockdb history ./state config --json | jq -c '[.time, .pid, .value]'\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("KEY", a->key, "The key")->required();
    add_count(command, "--limit", a->limit, "Only the first N changes");
    add_count(command, "--last", a->last, "Only the newest N changes (printed oldest first)");
    commands.on_run(command, [a, &settings] { return run_history(*a, settings); });
  }
  {
    auto a = std::make_shared<LogArgs>();
    auto* command = commands.add(
        app, "watch", "Print each change of some keys as it happens (until --count or Ctrl-C)",
        "  lockdb watch ./state config\n"
        "  lockdb watch ./state --prefix job/ --json\n"
        "  lockdb watch ./state leader --count 1       # wait for the next change, then exit\n"
        "  lockdb watch ./state config --since 1h      # the last hour's changes first\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("KEY", a->keys, "The keys to watch");
    command->add_option("--prefix", a->prefix, "Watch the keys that start with PREFIX")
        ->type_name("PREFIX");
    command->add_option("--since", a->since, "Print the changes since TIME first")
        ->check(time_validator())
        ->type_name("TIME");
    add_count(command, "--count", a->limit, "Exit after N changes");
    command->add_flag("--quiet,-q", a->quiet,
                      "No \"watching\" line on stderr once the watch is in place");
    command->footer(
        "Changes come from the log: inotify wakes the watch at once; on network and FUSE "
        "filesystems (NFS, SMB, 9p, Ceph, AFS, sshfs) it polls every 200 ms (LOCKDB_POLL=1: "
        "poll everywhere, for a network filesystem lockdb does not recognise).\n\n" +
        command->get_footer());
    commands.on_run(command, [a, &settings] { return run_watch(*a, settings); });
  }
}

}  // namespace lockdb::cli
