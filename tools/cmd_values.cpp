// Commands on values: get, put, incr, del, keys, path.
#include <cstdio>
#include <memory>

#include "cli_common.hpp"

namespace lockdb::cli {
namespace {

struct ValueArgs {
  std::string store;
  std::string key;
  std::string json_text;  // put: the JSON argument, or "-" for stdin
  std::string at;         // get --at
  std::int64_t delta = 1;
  std::string prefix;
  bool create = false;
  std::string timeout = "30s";
};

void add_store_and_key(CLI::App* command, ValueArgs& a) {
  command->add_option("STORE_DIR", a.store, "The store directory")->required();
  command->add_option("KEY", a.key, "The key")->required();
}

void add_write_options(CLI::App* command, ValueArgs& a) {
  command->add_option("--timeout", a.timeout, "How long to wait for the key's lock (default 30s)")
      ->check(duration_validator())
      ->type_name("DURATION");
}

std::string read_stdin() {
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) text.append(buf, n);
  if (std::ferror(stdin)) throw Error(Errc::io, "read JSON", "<stdin>", errno);
  return text;
}

// nlohmann's messages start with "[json.exception.parse_error.101] ": keep the part after it.
std::string parse_cause(const nlohmann::json::parse_error& e) {
  std::string what = e.what();
  auto end = what.find("] ");
  return end == std::string::npos ? what : what.substr(end + 2);
}

int run_get(const ValueArgs& a, const Settings& settings) {
  if (!a.at.empty()) {
    History history(a.store);
    const TimePoint t = to_time(a.at);
    std::optional<nlohmann::json> value;
    {
      Progress progress("reading log");
      value = history.value_at(a.key, t);
    }
    if (!value) {
      throw Error(Errc::not_found, "get " + quote(a.key) + " --at " + format_time(t),
                  std::filesystem::path(a.store) / "log", "no value at that time");
    }
    if (settings.json) {
      out_line(
          JsonObject().str("key", a.key).value("value", *value).str("at", format_time(t)).text());
    } else {
      out_line(value->dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    return 0;
  }
  Store store = open_store(a.store);
  auto entry = store.entry(a.key);
  if (!entry)
    throw Error(Errc::not_found, "get " + quote(a.key), store.file_path(a.key), "no such key");
  if (settings.json) {
    out_line(JsonObject()
                 .str("key", a.key)
                 .value("value", entry->value)
                 .str("version", entry->version)
                 .text());
  } else {
    out_line(entry->value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return 0;
}

int run_put(const ValueArgs& a, const Settings& settings) {
  const bool from_stdin = a.json_text == "-";
  const std::string text = from_stdin ? read_stdin() : a.json_text;
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(Errc::invalid_argument, "put " + quote(a.key),
                from_stdin ? std::filesystem::path("<stdin>") : std::filesystem::path(),
                std::string(from_stdin ? "bad JSON: " : "bad JSON argument: ") + parse_cause(e));
  }
  Store store = open_store(a.store, a.create, to_duration(a.timeout));
  const std::string version = store.put(a.key, value);
  if (settings.json) {
    out_line(JsonObject().str("key", a.key).str("version", version).text());
  } else {
    out_line(a.key + ": version " + version);
  }
  return 0;
}

int run_incr(const ValueArgs& a, const Settings& settings) {
  Store store = open_store(a.store, a.create, to_duration(a.timeout));
  const std::int64_t value = store.increment(a.key, a.delta);
  if (settings.json) {
    out_line(JsonObject().str("key", a.key).num("value", value).text());
  } else {
    out_line(std::to_string(value));
  }
  return 0;
}

int run_del(const ValueArgs& a, const Settings& settings) {
  Store store = open_store(a.store, false, to_duration(a.timeout));
  if (!store.erase(a.key)) {
    throw Error(Errc::not_found, "del " + quote(a.key), store.file_path(a.key), "no such key");
  }
  if (settings.json) {
    out_line(JsonObject().str("key", a.key).boolean("deleted", true).text());
  } else {
    out_line("deleted " + a.key);
  }
  return 0;
}

int run_keys(const ValueArgs& a, const Settings& settings) {
  Store store = open_store(a.store);
  for (const auto& key : store.keys()) {
    if (key.compare(0, a.prefix.size(), a.prefix) != 0) continue;
    out_line(settings.json ? JsonObject().str("key", key).text() : key);
  }
  return 0;
}

int run_path(const ValueArgs& a, const Settings& settings) {
  Store store = open_store(a.store);
  const auto path = store.file_path(a.key);
  if (settings.json) {
    std::error_code ec;
    out_line(JsonObject()
                 .str("key", a.key)
                 .str("path", path.string())
                 .boolean("exists", std::filesystem::exists(path, ec))
                 .text());
  } else {
    out_line(path.string());
  }
  return 0;
}

}  // namespace

void add_value_commands(CLI::App& app, Commands& commands) {
  const Settings& settings = commands.settings;
  {
    auto a = std::make_shared<ValueArgs>();
    auto* command = commands.add(app, "get", "Print a key's value as JSON (now, or at a past time)",
                                 "  lockdb get ./state config\n"
                                 "  lockdb get ./state config --at 2h\n"
                                 "  lockdb get ./state config --at 2026-11-30T18:00:00Z\n"
                                 "  lockdb get ./state config --json | jq .version\n");
    add_store_and_key(command, *a);
    command->add_option("--at", a->at, "The value the key had at TIME, from the log")
        ->check(time_validator())
        ->type_name("TIME");
    commands.on_run(command, [a, &settings] { return run_get(*a, settings); });
  }
  {
    auto a = std::make_shared<ValueArgs>();
    auto* command =
        commands.add(app, "put", "Set a key to a JSON value",
                     "  lockdb put ./state config '{\"workers\": 4}'\n"
                     "  lockdb put ./state greeting '\"hello\"'\n"
                     "  curl -s https://example.org/cfg.json | lockdb put ./state cfg -\n"
                     "  lockdb put --create ./new-store first 1\n");
    add_store_and_key(command, *a);
    command->add_option("JSON", a->json_text, "The value as JSON text, or - to read it from stdin")
        ->required();
    command->add_flag("--create", a->create, "Create the store when it does not exist");
    add_write_options(command, *a);
    commands.on_run(command, [a, &settings] { return run_put(*a, settings); });
  }
  {
    auto a = std::make_shared<ValueArgs>();
    auto* command = commands.add(app, "incr", "Add N (default 1) to an integer value; prints it",
                                 "  lockdb incr ./state jobs_done\n"
                                 "  lockdb incr ./state budget -5\n"
                                 "  lockdb incr ./state hits 10 --json\n");
    add_store_and_key(command, *a);
    command->add_option("N", a->delta, "How much to add (may be negative; a missing key is 0)");
    command->add_flag("--create", a->create, "Create the store when it does not exist");
    add_write_options(command, *a);
    commands.on_run(command, [a, &settings] { return run_incr(*a, settings); });
  }
  {
    auto a = std::make_shared<ValueArgs>();
    auto* command = commands.add(app, "del", "Delete a key (exit 1 when it does not exist)",
                                 "  lockdb del ./state config\n");
    add_store_and_key(command, *a);
    add_write_options(command, *a);
    commands.on_run(command, [a, &settings] { return run_del(*a, settings); });
  }
  {
    auto a = std::make_shared<ValueArgs>();
    auto* command = commands.add(app, "keys", "List the keys, sorted",
                                 "  lockdb keys ./state\n"
                                 "  lockdb keys ./state --prefix job/\n"
                                 "  lockdb keys ./state --json | jq -r .key\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("--prefix", a->prefix, "Only keys that start with PREFIX")
        ->type_name("PREFIX");
    commands.on_run(command, [a, &settings] { return run_keys(*a, settings); });
  }
  {
    auto a = std::make_shared<ValueArgs>();
    auto* command = commands.add(app, "path", "Print the file that holds a key's value",
                                 "  lockdb path ./state config\n"
                                 "  jq . \"$(lockdb path ./state config)\"\n");
    add_store_and_key(command, *a);
    commands.on_run(command, [a, &settings] { return run_path(*a, settings); });
  }
}

}  // namespace lockdb::cli
