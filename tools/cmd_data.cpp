// Commands that make a store, move data in and out, and write under conditions: init, cas,
// export, import, run.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_common.hpp"

extern char** environ;

namespace lockdb::cli {
namespace {

struct DataArgs {
  std::string store;
  std::string key;
  std::vector<std::string> args;  // cas: [EXPECTED_VERSION] JSON; run: COMMAND ARGS...
  std::optional<std::size_t> stripes;
  std::string durability = "none";
  std::string timeout = default_timeout_text();
  std::string prefix;
  bool absent = false;        // cas --absent
  bool as_string = false;     // cas --string
  bool if_absent = false;     // import --if-absent
  bool overwrite = false;     // import --overwrite
  bool shared = false;        // run --shared
  bool shared_group = false;  // init --shared-group
};

void add_write_options(CLI::App* command, DataArgs& a) {
  command
      ->add_option("--timeout", a.timeout,
                   "How long to wait for the key's lock (default " + default_timeout_text() + ")")
      ->check(duration_validator())
      ->type_name("DURATION");
  command
      ->add_option("--durability", a.durability,
                   "What the write survives: none (a power cut leaves old or new values), file, "
                   "full (power loss keeps every acknowledged write), power_loss_unsafe")
      ->check(CLI::IsMember({"none", "file", "full", "power_loss_unsafe"}))
      ->type_name("LEVEL");
}

Store open_for_write(const DataArgs& a) {
  return open_store(a.store, false, to_duration(a.timeout), to_durability(a.durability));
}

// ---- init ----

int run_init(const DataArgs& a, const Settings& settings) {
  bool existed = false;
  if (const auto blocker = not_a_directory(a.store)) {
    throw Error(Errc::invalid_argument, "init", a.store,
                (*blocker == a.store ? std::string("it") : blocker->string()) +
                    " is not a directory; give a new or empty directory");
  }
  if (is_directory(a.store)) {
    try {
      Store existing = open_store(a.store);
      existed = true;
      const std::size_t has = existing.options().lock_stripes;
      if (a.stripes && *a.stripes != has) {
        throw Error(Errc::invalid_argument, "init", a.store,
                    "a lockdb store is already there, with " +
                        (has ? std::to_string(has) + " lock stripes"
                             : std::string("one lock file per key")) +
                        " (fixed at creation; give --stripes " + std::to_string(has) +
                        " or leave it out)");
      }
      if (a.shared_group && !existing.options().shared_group) {
        throw Error(Errc::invalid_argument, "init", a.store,
                    "a lockdb store is already there, not group-shared (--shared-group acts at "
                    "creation; docs/store.md says how to share an existing store)");
      }
    } catch (const Error& e) {
      if (e.code() != Errc::not_found) throw;
      if (!is_empty_directory(a.store)) {
        throw Error(Errc::invalid_argument, "init", a.store,
                    "the directory is not empty and holds no lockdb store; give a new or empty "
                    "directory");
      }
    }
  }
  StoreOptions options;
  options.create = true;
  options.lock_stripes = a.stripes.value_or(0);
  options.shared_group = a.shared_group;
  Store store(a.store, options);  // 0 adopts an existing store's stripes
  const std::size_t stripes = store.options().lock_stripes;
  const bool shared_group = store.options().shared_group;
  if (settings.json) {
    out_line(JsonObject()
                 .str("store", store.dir().string())
                 .boolean("created", !existed)
                 .unum("lock_stripes", stripes)
                 .boolean("shared_group", shared_group)
                 .text());
  } else {
    std::string notes = stripes ? std::to_string(stripes) + " lock stripes" : "";
    if (shared_group) notes += notes.empty() ? "group-shared" : ", group-shared";
    out_line((existed ? "a lockdb store is already in " : "created a lockdb store in ") +
             store.dir().string() + (notes.empty() ? "" : " (" + notes + ")"));
  }
  return 0;
}

// ---- cas ----

int run_cas(const DataArgs& a, const Settings& settings) {
  const std::size_t want = a.absent ? 1 : 2;
  if (a.args.size() != want) {
    throw Error(Errc::invalid_argument, "cas", {},
                a.absent ? "give KEY JSON with --absent" : "give KEY EXPECTED_VERSION JSON");
  }
  const std::string context = "cas " + quote(a.key);
  std::optional<std::string> expected;
  if (!a.absent) expected = a.args[0];
  const nlohmann::json value = value_argument(context, a.args.back(), a.as_string);
  Store store = open_for_write(a);
  if (!store.compare_and_put(a.key, expected, value)) {
    const auto now = store.entry(a.key);
    std::string cause = "not written: ";
    if (!now) {
      cause += "the key does not exist";
    } else if (!expected) {
      cause += "the key exists (version " + now->version + ")";
    } else {
      cause += "the key's version is " + now->version + ", not " + *expected;
    }
    throw Error(Errc::conflict, context, store.file_path(a.key), cause);
  }
  const std::string version = store.entry(a.key).value_or(Entry{}).version;
  if (settings.json) {
    out_line(JsonObject().str("key", a.key).str("version", version).text());
  } else {
    out_line(show_key(a.key) + ": version " + version);
  }
  return 0;
}

// ---- export / import ----

int run_export(const DataArgs& a, const Settings&) {
  Store store = open_store(a.store);
  for (const auto& key : store.keys(a.prefix)) {
    auto entry = store.entry(key);
    if (!entry) continue;  // erased since it was listed
    out_line(JsonObject()
                 .str("key", key)
                 .value("value", entry->value)
                 .str("version", entry->version)
                 .text());
  }
  return 0;
}

// The deepest nesting of arrays and objects a store value may have (store.hpp's writes).
constexpr std::size_t kMaxNesting = 512;

// How deeply `value` nests arrays and objects (a scalar: 0). Stops counting past kMaxNesting.
std::size_t nesting(const nlohmann::json& value, std::size_t depth = 0) {
  if (!value.is_structured() || depth > kMaxNesting) return 0;
  std::size_t deepest = 0;
  for (const auto& item : value) deepest = std::max(deepest, nesting(item, depth + 1));
  return 1 + deepest;
}

struct ImportLine {
  std::size_t number = 0;
  std::string key;
  nlohmann::json value;
};

// Every line first, so that a bad one stops the import before anything is written.
std::vector<ImportLine> read_import(const std::string& text) {
  std::vector<ImportLine> out;
  std::size_t start = 0, number = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    const std::string_view line(text.data() + start, nl - start);
    start = nl + 1;
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto bad = [&](const std::string& why) {
      return Error(Errc::invalid_argument, "import: <stdin> line " + std::to_string(number), {},
                   why + " (nothing was imported)");
    };
    auto doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) throw bad("not a JSON line");
    if (!doc.is_object()) throw bad("not a JSON object");
    const auto key = doc.find("key");
    const auto value = doc.find("value");
    if (key == doc.end() || !key->is_string()) throw bad("no \"key\" string");
    if (value == doc.end()) throw bad("no \"value\"");
    // Moved, not copied: a copy recurses once per level, and the value's depth is checked only
    // when it is written (Store refuses one deeper than 512 levels).
    out.push_back({number, key->get<std::string>(), std::move(*value)});
  }
  return out;
}

int run_import(const DataArgs& a, const Settings& settings) {
  if (a.if_absent && a.overwrite) {
    throw Error(Errc::invalid_argument, "import", {}, "give --if-absent or --overwrite, not both");
  }
  const std::vector<ImportLine> lines = read_import(read_stdin());
  Store store = open_for_write(a);
  // Every line is checked before the first write: an invalid key, a value the store refuses, or
  // (by default) a key that exists stops the import with nothing written.
  for (const auto& line : lines) {
    const std::string where = "import: <stdin> line " + std::to_string(line.number);
    bool exists = false;
    try {
      exists = store.contains(line.key);
    } catch (const Error& e) {
      if (e.code() != Errc::invalid_argument) throw;
      throw Error(Errc::invalid_argument, where, {},
                  std::string(e.what()) + " (nothing was imported)");
    }
    if (nesting(line.value) > kMaxNesting) {
      throw Error(Errc::invalid_argument, where + ": key " + quote(line.key), {},
                  "the value nests deeper than " + std::to_string(kMaxNesting) +
                      " levels (nothing was imported)");
    }
    if (exists && !a.if_absent && !a.overwrite) {  // the default: refuse to replace anything
      throw Error(Errc::conflict, where + ": key " + quote(line.key), store.file_path(line.key),
                  "exists (nothing was imported; use --overwrite or --if-absent)");
    }
  }
  std::size_t written = 0, skipped = 0;
  for (const auto& line : lines) {
    const std::string where = "import: <stdin> line " + std::to_string(line.number);
    try {
      if (a.overwrite) {
        store.put(line.key, line.value, "import");
        ++written;
      } else if (store.compare_and_put(line.key, std::nullopt, line.value, "import")) {
        ++written;
      } else if (a.if_absent) {
        ++skipped;
      } else {
        throw Error(Errc::conflict, "key " + quote(line.key), store.file_path(line.key),
                    "was created meanwhile");
      }
    } catch (const Error& e) {
      throw Error(e.code(), where + " (" + std::to_string(written) + " written before it)", {},
                  std::string(e.what()));
    }
  }
  if (settings.json) {
    out_line(JsonObject().unum("written", written).unum("skipped", skipped).text());
  } else {
    out_line("imported " + std::to_string(written) + (written == 1 ? " key" : " keys") +
             (skipped ? ", skipped " + std::to_string(skipped) + " that existed" : ""));
  }
  return 0;
}

// ---- run ----

// Runs argv with LOCKDB_FILE set; returns its exit status (128 + signal when killed, 127 when it
// cannot be started).
int run_child(const std::vector<std::string>& argv, const std::string& file) {
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("LOCKDB_FILE=")) continue;
    env_text.emplace_back(*e);
  }
  env_text.push_back("LOCKDB_FILE=" + file);
  std::vector<char*> env, args;
  for (auto& e : env_text) env.push_back(e.data());
  env.push_back(nullptr);
  for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  flush_out();
  pid_t pid = -1;
  const int err = ::posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), env.data());
  if (err != 0) {
    std::fprintf(stderr, "lockdb: run: %s: %s\n", argv[0].c_str(),
                 err == ENOENT ? "command not found" : std::strerror(err));
    return 127;
  }
  // Like a shell waiting for a foreground job: Ctrl-C goes to the command, which decides.
  struct sigaction ignore {
  }, old_int{}, old_quit{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ignore, &old_int);
  ::sigaction(SIGQUIT, &ignore, &old_quit);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run_run(const DataArgs& a, const Settings& settings) {
  Store store = open_store(a.store, false, to_duration(a.timeout));
  const std::string file = store.file_path(a.key).string();
  int status = 0;
  bool changed = false;
  try {
    changed = store.with_key_locked(
        a.key, a.shared ? Store::LockMode::shared : Store::LockMode::exclusive,
        [&] { status = run_child(a.args, file); }, "run");
  } catch (const Error& e) {
    if (e.code() != Errc::corrupt) throw;
    throw Error(Errc::corrupt, "run " + quote(a.key), file,
                "the command (exit status " + std::to_string(status) +
                    ") left the file not valid JSON, so the change is not logged; fix the file, "
                    "or run 'lockdb repair " +
                    a.store + "' to move it aside");
  }
  if (settings.json) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s\n",
                 JsonObject()
                     .str("key", a.key)
                     .num("status", status)
                     .boolean("changed", changed)
                     .boolean("logged", changed && !a.shared)
                     .text()
                     .c_str());
  }
  return status;
}

}  // namespace

void add_data_commands(CLI::App& app, Commands& commands) {
  const Settings& settings = commands.settings;
  {
    auto a = std::make_shared<DataArgs>();
    auto* command = commands.add(
        app, "init", "Create a store in a new or empty directory",
        "  lockdb init ./state\n"
        "  lockdb init ./state --stripes 64     # 64 lock files shared by all keys\n"
        "  lockdb init ./state --shared-group   # writable by the directory's group\n");
    command->add_option("STORE_DIR", a->store, "The directory (made when missing)")->required();
    add_count(command, "--stripes", a->stripes,
              "Lock stripes, fixed at creation (0: one lock file per key, the default)");
    command->add_flag("--shared-group", a->shared_group,
                      "Make the new store's directory setgid and group-writable (g+rwxs), so "
                      "every user in its group can write the store, whatever their umask");
    commands.on_run(command, [a, &settings] { return run_init(*a, settings); });
  }
  {
    auto a = std::make_shared<DataArgs>();
    auto* command = commands.add(
        app, "cas",
        "Compare and put: write only if the key still has EXPECTED_VERSION (exit 11 if not)",
        "  v=$(lockdb get ./state config --json | jq -r .version)\n"
        "  lockdb cas ./state config \"$v\" '{\"workers\": 8}'\n"
        "  lockdb cas ./state leader --absent --string host-a   # only if no one is leader\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("KEY", a->key, "The key")->required();
    command->add_option("ARGS", a->args, "EXPECTED_VERSION JSON (with --absent: JSON)")
        ->required()
        ->type_name("[EXPECTED_VERSION] JSON");
    command->add_flag("--absent", a->absent, "Write only if the key does not exist");
    command->add_flag("--string,-s", a->as_string, "Store the text as a JSON string");
    add_write_options(command, *a);
    commands.on_run(command, [a, &settings] { return run_cas(*a, settings); });
  }
  {
    auto a = std::make_shared<DataArgs>();
    auto* command = commands.add(app, "export",
                                 "Print every key as a JSON line {\"key\",\"value\",\"version\"}",
                                 "  lockdb export ./state > dump.jsonl\n"
                                 "  lockdb export ./state --prefix job/ | jq -c .value\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("--prefix", a->prefix, "Only keys that start with PREFIX")
        ->type_name("PREFIX");
    commands.on_run(command, [a, &settings] { return run_export(*a, settings); });
  }
  {
    auto a = std::make_shared<DataArgs>();
    auto* command = commands.add(
        app, "import",
        "Write the JSON lines of stdin ({\"key\",\"value\"}, as export prints) through the store",
        "  lockdb import ./new-state < dump.jsonl\n"
        "  lockdb import ./state --overwrite < dump.jsonl\n"
        "  lockdb export ./a | lockdb import ./b --if-absent\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_flag("--if-absent", a->if_absent, "Skip keys that exist");
    command->add_flag("--overwrite", a->overwrite, "Replace keys that exist");
    add_write_options(command, *a);
    commands.on_run(command, [a, &settings] { return run_import(*a, settings); });
  }
  {
    auto a = std::make_shared<DataArgs>();
    auto* command = commands.add(
        app, "run", "Run a command while holding KEY's lock (like flock(1)); exits with its status",
        "  lockdb run ./state config -- sh -c 'jq \".n += 1\" \"$LOCKDB_FILE\" > "
        "\"$LOCKDB_FILE.new\""
        " && mv \"$LOCKDB_FILE.new\" \"$LOCKDB_FILE\"'\n"
        "  lockdb run ./state config --shared -- sh -c 'cat \"$LOCKDB_FILE\"'\n"
        "  lockdb run ./state deploy --timeout 0 -- ./deploy.sh   # exit 4 if someone holds it\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("KEY", a->key, "The key")->required();
    command->add_option("COMMAND", a->args, "The command and its arguments (after --)")->required();
    command->add_flag("--shared", a->shared,
                      "A shared (reader) lock: writers wait, other readers do not; nothing is "
                      "logged");
    command
        ->add_option("--timeout", a->timeout,
                     "How long to wait for the lock (default " + default_timeout_text() + ")")
        ->check(duration_validator())
        ->type_name("DURATION");
    command->footer(
        "The key file's path is in LOCKDB_FILE (it may not exist yet). A change the command makes "
        "to it is logged (op run), so verify stays clean; write a temp file and mv it over "
        "LOCKDB_FILE so that readers never see a partial value. Exit status: the command's (128 + "
        "N when signal N killed it, 127 when it could not be started), or lockdb's own code when "
        "the lock was not had (4) or the store is missing (1). With --json, a summary "
        "{\"key\",\"status\",\"changed\",\"logged\"} goes to stderr: stdout is the "
        "command's.\n\n" +
        command->get_footer());
    commands.on_run(command, [a, &settings] { return run_run(*a, settings); });
  }
}

}  // namespace lockdb::cli
