// Commands on values: get, put, incr, del, keys, path.
#include <cstdio>
#include <fstream>
#include <memory>

#include <fnmatch.h>

#include "cli_common.hpp"
#include "os.hpp"

namespace lockdb::cli {
namespace {

struct ValueArgs {
  std::string store;
  std::string key;
  std::vector<std::string> keys;  // get KEY...
  std::string json_text;          // put: the JSON argument, or "-" for stdin
  std::string at;                 // get --at
  std::string delta = "1";        // incr N, checked by parse_int64
  std::string prefix;
  std::string glob;  // keys PATTERN
  bool create = false;
  bool raw = false;           // get -r
  bool with_version = false;  // get --version
  bool as_string = false;     // put --string
  std::string timeout = default_timeout_text();
  std::string durability = "none";
};

void add_store_and_key(CLI::App* command, ValueArgs& a) {
  command->add_option("STORE_DIR", a.store, "The store directory")->required();
  command->add_option("KEY", a.key, "The key")->required();
}

void add_write_options(CLI::App* command, ValueArgs& a) {
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

Store open_for_write(const ValueArgs& a, bool create) {
  return open_store(a.store, create, to_duration(a.timeout), to_durability(a.durability));
}

// A value for human output: a string as it is with --raw (like jq -r), else JSON (indented for
// one value, one line each for several).
std::string show_value(const nlohmann::json& value, bool raw, bool one_line) {
  if (raw && value.is_string()) return value.get<std::string>();
  if (one_line) return dump(value);
  return value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

// nlohmann's messages start with "[json.exception.parse_error.101] ": keep the part after it.
std::string parse_cause(const nlohmann::json::parse_error& e) {
  std::string what = e.what();
  auto end = what.find("] ");
  return end == std::string::npos ? what : what.substr(end + 2);
}

// Whether a compaction wrote one of the log's segments: its header line has a "compacted"
// member (docs/FORMAT.md, "History log").
bool log_compacted(const History& history) {
  for (const auto& segment : history.segments()) {
    std::ifstream in(segment);
    std::string header;
    if (!std::getline(in, header)) continue;
    const auto doc = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
    if (doc.is_object() && doc.contains("compacted")) return true;
  }
  return false;
}

// The value `key` had at time t, from the log. When there is none, says why: the key did not
// exist then, or the log was compacted and no longer reaches back to t.
nlohmann::json value_at(const History& history, const std::string& store, const std::string& key,
                        TimePoint t) {
  std::optional<nlohmann::json> value;
  {
    Progress progress("reading log");
    value = history.value_at(key, t);
  }
  if (value) return *value;
  Query first;
  first.key = key;
  first.limit = 1;
  std::optional<Record> earliest;
  history.for_each(first, [&](const Record& r) {
    earliest = r;
    return false;
  });
  const std::string context = "get " + quote(key) + " --at " + format_time(t);
  const auto log_dir = std::filesystem::path(store) / "log";
  // The key's first record follows a change the log no longer has (prev_version), or the log
  // was compacted, which may have dropped an earlier life of the key.
  if (earliest && earliest->time > t && (earliest->prev_version || log_compacted(history))) {
    throw Error(Errc::not_found, context, log_dir,
                "the log was compacted and does not reach back that far; the earliest time it "
                "can answer for this key is " +
                    format_time(earliest->time));
  }
  throw Error(Errc::not_found, context, log_dir, "no value at that time");
}

int run_get(const ValueArgs& a, const Settings& settings) {
  if (a.with_version && a.keys.size() > 1) {
    throw Error(Errc::invalid_argument, "get --version", {}, "give one key");
  }
  if (a.with_version && !a.at.empty()) {
    throw Error(Errc::invalid_argument, "get --version", {}, "--at gives no version");
  }
  std::vector<Entry> entries;  // every key first: a missing one fails before anything is printed
  if (!a.at.empty()) {
    History history = open_history(a.store);
    const TimePoint t = to_time(a.at);
    for (const auto& key : a.keys) entries.push_back({value_at(history, a.store, key, t), ""});
    if (settings.json && a.keys.size() == 1) {
      out_line(JsonObject()
                   .str("key", a.keys[0])
                   .value("value", entries[0].value)
                   .str("at", format_time(t))
                   .text());
      return 0;
    }
  } else {
    Store store = open_store(a.store);
    for (const auto& key : a.keys) {
      auto entry = store.entry(key);
      if (!entry) {
        throw Error(Errc::not_found, "get " + quote(key), store.file_path(key), "no such key");
      }
      entries.push_back(std::move(*entry));
    }
    if (settings.json && a.keys.size() == 1) {
      out_line(JsonObject()
                   .str("key", a.keys[0])
                   .value("value", entries[0].value)
                   .str("version", entries[0].version)
                   .text());
      return 0;
    }
  }
  if (settings.json) {  // several keys: one object keyed by name
    JsonObject o;
    for (std::size_t i = 0; i < a.keys.size(); ++i) o.value(a.keys[i], entries[i].value);
    out_line(o.text());
    return 0;
  }
  const bool one_line = a.keys.size() > 1;
  for (const auto& entry : entries) out_line(show_value(entry.value, a.raw, one_line));
  if (a.with_version) out_line("version " + entries[0].version);
  return 0;
}

}  // namespace

std::string read_stdin() {
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) text.append(buf, n);
  if (std::ferror(stdin)) throw Error(Errc::io, "read JSON", "<stdin>", errno);
  return text;
}

nlohmann::json value_argument(const std::string& context, const std::string& text, bool as_string) {
  const bool from_stdin = text == "-";
  std::string input = from_stdin ? read_stdin() : text;
  if (as_string) {
    if (from_stdin && input.ends_with('\n')) input.pop_back();  // as $(...) would
    return nlohmann::json(std::move(input));
  }
  try {
    return nlohmann::json::parse(input);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(Errc::invalid_argument, context,
                from_stdin ? std::filesystem::path("<stdin>") : std::filesystem::path(),
                std::string(from_stdin ? "bad JSON: " : "bad JSON argument: ") + parse_cause(e) +
                    (from_stdin ? "" : " (for a plain string use --string)"));
  }
}

namespace {

int run_put(const ValueArgs& a, const Settings& settings) {
  const nlohmann::json value = value_argument("put " + quote(a.key), a.json_text, a.as_string);
  Store store = open_for_write(a, a.create);
  const std::string version = store.put(a.key, value);
  if (settings.json) {
    out_line(JsonObject().str("key", a.key).str("version", version).text());
  } else {
    out_line(show_key(a.key) + ": version " + version);
  }
  return 0;
}

int run_incr(const ValueArgs& a, const Settings& settings) {
  const auto delta = parse_int64(a.delta);
  if (!delta) {
    throw Error(Errc::invalid_argument, "incr " + quote(a.key), {},
                "N is not a whole number from -9223372036854775808 to 9223372036854775807: \"" +
                    a.delta + "\"");
  }
  Store store = open_for_write(a, a.create);
  const std::int64_t value = store.increment(a.key, *delta);
  if (settings.json) {
    out_line(JsonObject().str("key", a.key).num("value", value).text());
  } else {
    out_line(std::to_string(value));
  }
  return 0;
}

int run_del(const ValueArgs& a, const Settings& settings) {
  Store store = open_for_write(a, false);
  if (!store.erase(a.key)) {
    throw Error(Errc::not_found, "del " + quote(a.key), store.file_path(a.key), "no such key");
  }
  if (settings.json) {
    out_line(JsonObject().str("key", a.key).boolean("deleted", true).text());
  } else {
    out_line("deleted " + show_key(a.key));
  }
  return 0;
}

int run_keys(const ValueArgs& a, const Settings& settings) {
  Store store = open_store(a.store);
  for (const auto& key : store.keys(a.prefix)) {
    if (!a.glob.empty() && ::fnmatch(a.glob.c_str(), key.c_str(), 0) != 0) continue;
    out_line(settings.json ? JsonObject().str("key", key).text() : show_key(key));
  }
  return 0;
}

int run_path(const ValueArgs& a, const Settings& settings) {
  Store store = open_store(a.store);
  const auto path = store.file_path(a.key);
  if (settings.json) {
    out_line(JsonObject()
                 .str("key", a.key)
                 .str("path", path.string())
                 .boolean("exists", os::stat(path).ok())
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
    auto* command = commands.add(
        app, "get", "Print keys' values as JSON (now, or at a past time)",
        "  lockdb get ./state config\n"
        "  lockdb get ./state greeting -r              # a string without quotes: hello\n"
        "  lockdb get ./state a b c                    # one line each\n"
        "  lockdb get ./state a b --json               # {\"a\":...,\"b\":...}\n"
        "  lockdb get ./state config --version         # the value, then its version\n"
        "  lockdb get ./state config --at 2h\n"
        "  lockdb get ./state config --at '2026-11-30 18:00:00Z'\n"
        "  lockdb get ./state config --json | jq -r .version\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("KEY", a->keys, "The keys (several: one line each)")->required();
    command->add_flag("--raw,-r", a->raw, "Print a string value without quotes (like jq -r)");
    command->add_flag("--version", a->with_version, "Also print the value's version (for cas)");
    command->add_option("--at", a->at, "The value the key had at TIME, from the log")
        ->check(time_validator())
        ->type_name("TIME");
    commands.on_run(command, [a, &settings] { return run_get(*a, settings); });
  }
  {
    auto a = std::make_shared<ValueArgs>();
    auto* command =
        commands.add(app, "put", "Set a key to a JSON value (or a string with --string)",
                     "  lockdb put ./state config '{\"workers\": 4}'\n"
                     "  lockdb put ./state greeting --string 'hello world'\n"
                     "  curl -s https://example.org/cfg.json | lockdb put ./state cfg -\n"
                     "  hostname | lockdb put ./state host --string -\n");
    add_store_and_key(command, *a);
    command
        ->add_option("JSON", a->json_text,
                     "The value as JSON text (with --string: any text), or - to read stdin")
        ->required();
    command->add_flag("--string,-s", a->as_string,
                      "Store the text as a JSON string (stdin: without its last newline)");
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
    command->add_option("N", a->delta, "How much to add (may be negative; a missing key is 0)")
        ->allow_extra_args(false);
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
    auto* command = commands.add(
        app, "keys", "List the keys, sorted (a key with control characters as a JSON string)",
        "  lockdb keys ./state\n"
        "  lockdb keys ./state --prefix job/\n"
        "  lockdb keys ./state 'job/*.done'\n"
        "  lockdb keys ./state --json | jq -r .key\n");
    command->add_option("STORE_DIR", a->store, "The store directory")->required();
    command->add_option("PATTERN", a->glob, "Only keys that match this glob (*, ?, [...])");
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
