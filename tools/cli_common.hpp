// Shared pieces of the `lockdb` command: command registration, output (human or JSON, colour),
// time parsing, progress on stderr, and the JSON shapes every command prints.
//
// Output rules: results go to stdout, one failure is one line on stderr (main.cpp turns every
// exception into it and into the exit code of its lockdb::Errc). Human output is the default;
// --json prints one JSON object (single results) or JSON lines (streams and lists) with the
// field names written here, which are part of the CLI's contract.
#pragma once

#include <lockdb/error.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>
#include <lockdb/time.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace lockdb::cli {

// ---- commands ----

// Settings every command takes (--json, --color).
struct Settings {
  bool json = false;
  std::string color = "auto";  // auto | always | never
};

// What the command line selected: each subcommand registers the function that runs it.
struct Commands {
  Settings settings;
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions;

  // Adds subcommand `name` with its help text and examples (shown by --help), and the common
  // options. `run` is called after parsing when this subcommand was chosen; it returns the
  // exit code.
  CLI::App* add(CLI::App& app, const std::string& name, const std::string& description,
                const std::string& examples);
  void on_run(CLI::App* command, std::function<int()> run);
};

// Each file registers its group of subcommands.
void add_value_commands(CLI::App& app, Commands& commands);    // cmd_values.cpp
void add_log_commands(CLI::App& app, Commands& commands);      // cmd_log.cpp
void add_lock_commands(CLI::App& app, Commands& commands);     // cmd_locks.cpp
void add_check_commands(CLI::App& app, Commands& commands);    // cmd_check.cpp
void add_stats_commands(CLI::App& app, Commands& commands);    // cmd_stats.cpp
void add_compact_commands(CLI::App& app, Commands& commands);  // cmd_compact.cpp
void add_data_commands(CLI::App& app, Commands& commands);     // cmd_data.cpp

// A count option (--limit N, --top N, ...): a whole decimal number, 0 or more; anything else
// (negative, hex, spaces, beyond 64 bits) is a usage error naming the option.
CLI::Option* add_count(CLI::App* command, const std::string& name,
                       std::optional<std::size_t>& target, const std::string& help);
// A whole decimal number in std::int64_t ("-5", "42"; no '+', hex, spaces). nullopt otherwise.
std::optional<std::int64_t> parse_int64(std::string_view text);

// ---- the store ----

// Opens an existing store (create=false unless asked). A missing directory, a file, or a
// directory without a store is Error{not_found} "DIR: not a lockdb store: why (...'lockdb init')",
// the same for every command; other errors are what Store's constructor throws.
Store open_store(const std::string& dir, bool create = false,
                 std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout,
                 Durability durability = Durability::none);
// "none", "file", "full", "power_loss_unsafe" (the --durability values). REQUIRES: one of them.
Durability to_durability(const std::string& name);
// A value argument: JSON text, or with `as_string` any text as a JSON string; "-" reads stdin.
// THROWS Error{invalid_argument} ("context: bad JSON argument: cause") for bad JSON.
nlohmann::json value_argument(const std::string& context, const std::string& text,
                              bool as_string);  // cmd_values.cpp
std::string read_stdin();                       // cmd_values.cpp
// The store's log, with the same errors as open_store for a missing store.
History open_history(const std::string& dir);
// Whether a STORE argument names an etcd location ("etcd://...") rather than a directory.
bool is_etcd_location(const std::string& store);
// The error for "DIR holds no store": Error{not_found} (exit 1), one shape for every command:
// "DIR: not a lockdb store: WHY ('lockdb init DIR' creates one in a new or empty directory)".
[[noreturn]] void throw_not_a_store(const std::string& dir, const std::string& why);
// The path itself or the nearest existing ancestor of it when that is not a directory (a file
// in the way of a store there); nullopt when the nearest existing one is a directory.
std::optional<std::filesystem::path> not_a_directory(const std::string& path);
// Whether `path` is a directory (a link to one counts), and whether it is one known to be empty.
// Through the library's OS seam, as every file system call of the command.
bool is_directory(const std::string& path);
bool is_empty_directory(const std::string& path);
// The size of the regular file at `path`; 0 when it cannot be had.
std::uint64_t size_of_file(const std::filesystem::path& path);

// The store-relative name of `path` ("counter.json.lock"), or the path itself when outside.
std::string relative_name(const std::filesystem::path& store_dir,
                          const std::filesystem::path& path);

// ---- times ----

using TimePoint = SystemTime;  // times and durations: <lockdb/time.hpp>

// A TIME argument: RFC 3339 ("2026-11-30T18:00:00Z", a space for the T, a fraction, an offset),
// a date alone ("2026-11-30", its midnight UTC), epoch seconds ("1764525600"), "now", or a time
// ago counted back from `now`: a whole number and s, m, h, d or w ("10m", "2h", "3d", also
// "3d ago"). nullopt when it is none of them.
std::optional<TimePoint> parse_time_arg(std::string_view text, TimePoint now);
// The accepted forms, for error messages.
extern const char* const kTimeForms;

// CLI11 validators for TIME and DURATION arguments (usage error, exit 2, naming the option).
CLI::Validator time_validator();
CLI::Validator duration_validator();
TimePoint to_time(const std::string& text);  // REQUIRES: time_validator() accepted it
std::chrono::nanoseconds to_duration(const std::string& text);
// The library's default lock timeout (kDefaultLockTimeout) as a --timeout value: "30s".
inline std::string default_timeout_text() {
  return std::to_string(
             std::chrono::duration_cast<std::chrono::seconds>(lockdb::kDefaultLockTimeout)
                 .count()) +
         "s";
}

// ---- output ----

// Buffered stdout. write() failures (EPIPE, ENOSPC) are caught at exit by main().
void out(std::string_view text);
void out_line(std::string_view text);
void flush_out();

// Terminal colours for human output: on when --color=always, or when --color=auto, stdout is
// a terminal and NO_COLOR is unset or empty. Colours never appear in --json output.
class Style {
 public:
  explicit Style(const Settings& settings);
  bool on() const { return on_; }
  std::string bold(std::string_view s) const { return wrap("1", s); }
  std::string red(std::string_view s) const { return wrap("31", s); }
  std::string green(std::string_view s) const { return wrap("32", s); }
  std::string yellow(std::string_view s) const { return wrap("33", s); }
  std::string dim(std::string_view s) const { return wrap("2", s); }
  // The colour of a log operation: puts green, erases red, repairs yellow.
  std::string op(std::string_view op, std::size_t width) const;

 private:
  std::string wrap(const char* code, std::string_view s) const;
  bool on_ = false;
};

// Compact JSON text; invalid UTF-8 is replaced rather than failing the whole output.
std::string dump(const nlohmann::json& value);
std::string quote(std::string_view s);  // a JSON string literal
// A key for human output: as it is, or as a JSON string literal when it holds a control
// character or starts with '"', so that one key is always one line.
std::string show_key(std::string_view key);
// Cuts `s` to at most `width` characters (bytes), ending in "..." when cut.
std::string shorten(std::string_view s, std::size_t width);

// Builds one JSON object, fields in the order they are added.
class JsonObject {
 public:
  JsonObject& raw(std::string_view name, std::string_view json_text);
  JsonObject& str(std::string_view name, std::string_view value);
  JsonObject& str_or_null(std::string_view name, const std::optional<std::string>& value);
  JsonObject& num(std::string_view name, std::int64_t value);
  JsonObject& unum(std::string_view name, std::uint64_t value);
  JsonObject& boolean(std::string_view name, bool value);
  JsonObject& value(std::string_view name, const nlohmann::json& value);
  std::string text() const { return text_ + "}"; }

 private:
  void name(std::string_view name);
  std::string text_ = "{";
};

// A log record as JSON: the log's own fields, in the log's order:
// {"time","key","op","value"(absent on erase),"prev","version","pid","host"}.
std::string record_json(const Record& record);
// "pid@host".
std::string who(const Record& record);
// One human line: time, op, who, key, value ("-" for an erase).
std::string record_line(const Record& record, const Style& style);

// ---- progress ----

// Shows "lockdb: <what> 42% (1234 records)" on stderr while a scan of the log runs longer than
// a second (LOCKDB_PROGRESS_DELAY_MS overrides the delay; 0 shows it from the start), only when
// stderr is a terminal; the line is cleared when the scan ends. seen() is cheap: call it from the
// scan's callback.
class Progress {
 public:
  // Percent of the log's bytes seen, and the records seen.
  Progress(std::string what, const History& history);
  // Seconds elapsed only, for work that reports no position (verify, repair, compact, ...).
  explicit Progress(std::string what);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Called per record seen: counts it and remembers how far the scan is.
  void seen(const Record& record);
  void finish();

 private:
  void start();
  void run(std::chrono::milliseconds delay);
  void draw();  // REQUIRES: mu_ held, or the thread not started
  std::string what_;
  // Constant after construction: bytes of the segments before segment n.
  std::map<std::uint64_t, std::uint64_t> bytes_before_;
  std::uint64_t total_bytes_ = 0;
  bool positional_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> done_bytes_{0};
  std::atomic<std::uint64_t> records_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  bool shown_ = false;  // guarded by mu_; read by finish() after the thread ended
  std::thread thread_;
};

}  // namespace lockdb::cli
