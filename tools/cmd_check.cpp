// verify (exit 0 only for a clean store) and repair (fixes what verify finds).
#include <algorithm>
#include <memory>

#include "cli_common.hpp"

namespace lockdb::cli {
namespace {

struct CheckArgs {
  std::string store;
  std::string timeout = default_timeout_text();
};

std::string finding_json(const Finding& f) {
  return JsonObject()
      .str("kind", finding_kind_name(f.kind))
      .str_or_null("key", f.key.empty() ? std::nullopt : std::optional(f.key))
      .str("path", f.path.string())
      .str("detail", f.detail)
      .text();
}

// Findings as a table: kind, key, path (relative to the store), detail.
void print_findings(const std::vector<Finding>& findings, const Store& store,
                    const Settings& settings) {
  if (settings.json) {
    for (const auto& f : findings) out_line(finding_json(f));
    return;
  }
  const Style style(settings);
  std::size_t kind_width = 0, key_width = 1, path_width = 0;
  for (const auto& f : findings) {
    kind_width = std::max(kind_width, std::string_view(finding_kind_name(f.kind)).size());
    key_width = std::max(key_width, show_key(f.key).size());
    path_width = std::max(path_width, relative_name(store.dir(), f.path).size());
  }
  auto pad = [](std::string s, std::size_t width) {
    if (s.size() < width) s.append(width - s.size(), ' ');
    return s;
  };
  for (const auto& f : findings) {
    out_line(style.red(pad(finding_kind_name(f.kind), kind_width)) + "  " +
             pad(f.key.empty() ? "-" : show_key(f.key), key_width) + "  " +
             pad(relative_name(store.dir(), f.path), path_width) + "  " + f.detail);
  }
}

int run_verify(const CheckArgs& a, const Settings& settings) {
  Store store = open_store(a.store);
  std::vector<Finding> findings;
  {
    Progress progress("verifying store");
    findings = store.verify();
  }
  print_findings(findings, store, settings);
  if (findings.empty()) {
    if (!settings.json) out_line("clean: " + store.dir().string());
    return 0;
  }
  const std::size_t n = findings.size();
  // repair settles every finding but two kinds, which it leaves in place because they may be
  // someone's: a link or special file planted where the store keeps its own, and a file whose
  // name is no key's. Only a person can remove those.
  const auto by_hand = static_cast<std::size_t>(
      std::count_if(findings.begin(), findings.end(), [](const Finding& f) {
        return f.kind == Finding::Kind::planted_file || f.kind == Finding::Kind::bad_file_name;
      }));
  const std::string remove =
      "remove the files that planted_file and bad_file_name findings name (repair leaves them "
      "in place: they may be someone's)";
  const std::string hint = by_hand == 0   ? "run 'lockdb repair' to fix"
                           : by_hand == n ? remove
                                          : remove + ", then run 'lockdb repair' to fix the rest";
  throw Error(Errc::corrupt, "verify", store.dir(),
              std::to_string(n) + (n == 1 ? " finding" : " findings") + " (" + hint + ")");
}

int run_repair(const CheckArgs& a, const Settings& settings) {
  Store store = open_store(a.store, false, to_duration(a.timeout));
  std::vector<Finding> actions;
  {
    Progress progress("repairing store");
    actions = store.repair();
  }
  print_findings(actions, store, settings);
  if (actions.empty() && !settings.json) out_line("nothing to repair: " + store.dir().string());
  return 0;
}

}  // namespace

void add_check_commands(CLI::App& app, Commands& commands) {
  const Settings& settings = commands.settings;
  {
    auto a = std::make_shared<CheckArgs>();
    auto* command = commands.add(
        app, "verify",
        "Check key files, log, temp files and markers; exit 0 only when clean (6: findings)",
        "  lockdb verify ./state\n"
        "  lockdb verify ./state --json | jq -r .kind | sort | uniq -c\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    commands.on_run(command, [a, &settings] { return run_verify(*a, settings); });
  }
  {
    auto a = std::make_shared<CheckArgs>();
    auto* command = commands.add(app, "repair", "Fix what verify finds, printing each action",
                                 "  lockdb repair ./state\n"
                                 "  lockdb verify ./state || lockdb repair ./state\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("--timeout", a->timeout, "How long to wait for each key's lock")
        ->check(duration_validator())
        ->type_name("DURATION");
    commands.on_run(command, [a, &settings] { return run_repair(*a, settings); });
  }
}

}  // namespace lockdb::cli
