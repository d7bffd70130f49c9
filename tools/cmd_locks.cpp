// locks: every lock file of a store, free or held, and by whom.
//
// A hard lock (flock) is held when the OS says so: FileLock::holder() reads /proc/locks on
// Linux and names the holding pid. A soft lock is a marker file holding its holder's record
// (SoftFileLock); it is held while the marker exists, and stale when its holder is gone
// (SoftFileLock::is_stale, with the default lease for markers of other hosts).
#include <lockdb/etcd.hpp>
#include <lockdb/file_lock.hpp>

#include <algorithm>
#include <memory>

#include "cli_common.hpp"

namespace lockdb::cli {
namespace {

struct LocksArgs {
  std::string store;
};

struct LockInfo {
  std::filesystem::path path;
  std::string name;                // relative to the store
  std::optional<std::string> key;  // the key whose lock this is, when known
  std::string kind;                // hard | soft
  std::string state;               // free | held | stale
  std::optional<LockHolder> holder;
};

LockInfo inspect(const std::filesystem::path& path) {
  LockInfo info;
  info.path = path;
  info.kind = "hard";
  if (size_of_file(path) > 0) {
    // Hard lock files stay empty; a non-empty one is a soft marker if it parses as one.
    SoftFileLock soft(path);
    if (auto holder = soft.holder()) {
      info.kind = "soft";
      info.state = SoftFileLock::is_stale(path, SoftLockOptions{}.stale_after) ? "stale" : "held";
      info.holder = std::move(holder);
      return info;
    }
  }
  FileLock hard(path);
  info.holder = hard.holder();
  info.state = info.holder ? "held" : "free";
  return info;
}

std::string holder_json(const std::optional<LockHolder>& holder) {
  if (!holder) return "null";
  JsonObject o;
  o.raw("pid", holder->pid ? std::to_string(holder->pid) : "null");
  o.str_or_null("host", holder->host.empty() ? std::nullopt : std::optional(holder->host));
  o.str_or_null("program", holder->program.empty() ? std::nullopt : std::optional(holder->program));
  o.str_or_null("since", holder->since ? std::optional(format_time(*holder->since)) : std::nullopt);
  return o.text();
}

std::string pad(const std::string& s, std::size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

// On etcd: the lease-held lock keys under the store's prefix (etcd.hpp), all held.
std::vector<LockInfo> etcd_lock_infos(const std::string& location) {
  std::vector<LockInfo> locks;
  for (auto& l : etcd_locks(location)) {
    LockInfo info;
    info.path = location + "/lock/" + l.name;
    info.name = "lock/" + l.name;
    info.kind = "lease";
    info.state = "held";
    info.holder = std::move(l.holder);
    locks.push_back(std::move(info));
  }
  return locks;
}

int run_locks(const LocksArgs& a, const Settings& settings) {
  Store store = open_store(a.store);
  const bool on_etcd = is_etcd_location(a.store);
  std::map<std::filesystem::path, std::string> key_of_lock;
  for (const auto& key : store.keys()) {
    auto lock = store.file_path(key);
    lock += ".lock";
    key_of_lock.emplace(std::move(lock), key);
  }
  auto files = store.lock_files();
  std::sort(files.begin(), files.end());
  std::vector<LockInfo> locks;
  if (on_etcd) locks = etcd_lock_infos(a.store);
  for (const auto& path : files) {
    LockInfo info = inspect(path);
    info.name = relative_name(store.dir(), path);
    if (auto it = key_of_lock.find(path); it != key_of_lock.end()) info.key = it->second;
    locks.push_back(std::move(info));
  }

  if (settings.json) {
    for (const auto& l : locks) {
      out_line(JsonObject()
                   .str("lock", l.name)
                   .str("path", l.path.string())
                   .str_or_null("key", l.key)
                   .str("kind", l.kind)
                   .str("state", l.state)
                   .raw("holder", holder_json(l.holder))
                   .text());
    }
    return 0;
  }
  const Style style(settings);
  std::size_t name_width = 4, key_width = 3;
  for (const auto& l : locks) {
    name_width = std::max(name_width, l.name.size());
    key_width = std::max(key_width, l.key ? show_key(*l.key).size() : 1);
  }
  out_line(
      style.bold(pad("LOCK", name_width) + "  " + pad("KEY", key_width) + "  KIND  STATE  HOLDER"));
  for (const auto& l : locks) {
    std::string state = pad(l.state, 5);
    if (l.state == "held") state = style.yellow(state);
    if (l.state == "stale") state = style.red(state);
    out_line(pad(l.name, name_width) + "  " + pad(l.key ? show_key(*l.key) : "-", key_width) +
             "  " + pad(l.kind, 4) + "  " + state + "  " + (l.holder ? l.holder->describe() : "-"));
  }
  return 0;
}

}  // namespace

void add_lock_commands(CLI::App& app, Commands& commands) {
  const Settings& settings = commands.settings;
  auto a = std::make_shared<LocksArgs>();
  auto* command = commands.add(
      app, "locks", "List the store's locks, free or held, and who holds them (stale flagged)",
      "  lockdb locks ./state\n"
      "  lockdb locks ./state --json | jq -c 'select(.state != \"free\")'\n"
      "  lockdb locks etcd://10.0.0.1:2379,10.0.0.2:2379/myapp   (lease locks on etcd)\n");
  command->add_option("STORE_DIR", a->store, "The store directory, or etcd://host:port/prefix")
      ->required();
  commands.on_run(command, [a, &settings] { return run_locks(*a, settings); });
}

}  // namespace lockdb::cli
