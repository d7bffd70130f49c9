#include "cli_common.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <sys/stat.h>
#include <unistd.h>

#include "os.hpp"

namespace lockdb::cli {

// ---- commands ----

CLI::App* Commands::add(CLI::App& app, const std::string& name, const std::string& description,
                        const std::string& examples) {
  CLI::App* command = app.add_subcommand(name, description);
  command->footer("Examples:\n" + examples);
  command->add_flag("--json", settings.json, "Print JSON (one object, or JSON lines for lists)");
  command->add_option("--color", settings.color, "Colours in human output (NO_COLOR is honoured)")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->type_name("WHEN");
  return command;
}

void Commands::on_run(CLI::App* command, std::function<int()> run) {
  actions.emplace_back(command, std::move(run));
}

CLI::Option* add_count(CLI::App* command, const std::string& name,
                       std::optional<std::size_t>& target, const std::string& help) {
  return command
      ->add_option_function<std::string>(
          name,
          [&target, name](const std::string& text) {
            std::uint64_t n = 0;
            auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
            if (text.empty() || text[0] < '0' || text[0] > '9' || ec != std::errc() ||
                end != text.data() + text.size() || n > SIZE_MAX) {
              throw CLI::ValidationError(
                  name, "not a count: \"" + text + "\" (a whole number, 0 or more)");
            }
            target = static_cast<std::size_t>(n);
          },
          help)
      ->type_name("N");
}

std::optional<std::int64_t> parse_int64(std::string_view text) {
  std::int64_t n = 0;
  const std::string_view digits = text.starts_with('-') ? text.substr(1) : text;
  if (digits.empty() || digits[0] < '0' || digits[0] > '9') return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return n;
}

// ---- the store ----

std::optional<std::filesystem::path> not_a_directory(const std::string& path) {
  if (is_etcd_location(path)) return std::nullopt;
  for (std::filesystem::path p = path; !p.empty(); p = p.parent_path()) {
    if (const auto st = os::stat(p); st.ok()) {
      if (S_ISDIR(st.value.mode)) return std::nullopt;
      return p;
    }
    if (p == p.parent_path()) break;
  }
  return std::nullopt;
}

bool is_directory(const std::string& path) {
  const auto st = os::stat(path);
  return st.ok() && S_ISDIR(st.value.mode);
}

bool is_empty_directory(const std::string& path) {
  const auto names = os::list_dir(path);
  return names.ok() && names.value.empty();
}

std::uint64_t size_of_file(const std::filesystem::path& path) {
  const auto st = os::stat(path);
  return st.ok() && S_ISREG(st.value.mode) ? static_cast<std::uint64_t>(st.value.size) : 0;
}

void throw_not_a_store(const std::string& dir, const std::string& why) {
  // Where a file is in the way, 'lockdb init' cannot make the store there: the hint says DIR.
  const bool blocked = not_a_directory(dir).has_value();
  throw Error(Errc::not_found, dir, {},
              "not a lockdb store: " + why + " ('lockdb init " + (blocked ? "DIR" : dir) +
                  "' creates one" +
                  (is_etcd_location(dir) ? std::string(")") : " in a new or empty directory)"));
}

bool is_etcd_location(const std::string& store) { return store.starts_with("etcd://"); }

namespace {

std::string no_marker(const std::string& dir) {
  return is_etcd_location(dir) ? "the prefix has no store marker"
                               : "the directory has no store marker";
}

// The one check every command makes before it opens a store (an etcd location is checked by
// opening it). With `create`, a missing directory is fine: the store makes it.
void require_store_dir(const std::string& dir, bool create = false) {
  if (is_etcd_location(dir)) return;
  if (const auto blocker = not_a_directory(dir)) {
    throw_not_a_store(
        dir, *blocker == dir ? "it is not a directory" : blocker->string() + " is not a directory");
  }
  if (const auto st = os::stat(dir); !create && (st.err == ENOENT || st.err == ENOTDIR)) {
    throw_not_a_store(dir, "there is no such directory");
  }
}

}  // namespace

Store open_store(const std::string& dir, bool create, std::chrono::nanoseconds lock_timeout,
                 Durability durability) {
  require_store_dir(dir, create);
  if (create && !is_etcd_location(dir) && is_directory(dir) && !is_empty_directory(dir)) {
    open_store(dir);  // a directory with other things in it does not become a store
  }
  StoreOptions options;
  options.create = create;
  options.lock_timeout = lock_timeout;
  options.durability = durability;
  try {
    return Store(dir, options);
  } catch (const Error& e) {
    if (e.code() == Errc::not_found && !create) {
      throw_not_a_store(dir, no_marker(dir));
    }
    throw;
  }
}

Durability to_durability(const std::string& name) {
  if (name == "full") return Durability::full;
  if (name == "file") return Durability::file;
  if (name == "power_loss_unsafe") return Durability::power_loss_unsafe;
  return Durability::none;
}

History open_history(const std::string& dir) {
  require_store_dir(dir);
  try {
    return History(dir);
  } catch (const Error& e) {
    if (e.code() == Errc::not_found) throw_not_a_store(dir, no_marker(dir));
    throw;
  }
}

std::string relative_name(const std::filesystem::path& store_dir,
                          const std::filesystem::path& path) {
  auto rel = path.lexically_relative(store_dir);
  if (rel.empty() || *rel.begin() == "..") return path.string();
  return rel.string();
}

// ---- times ----

const char* const kTimeForms =
    "use RFC 3339 like 2026-11-30T18:00:00Z or '2026-11-30 18:00:00+01:00', a date like "
    "2026-11-30, epoch seconds like 1764525600, a time ago like 10m, 2h, 3d, or now";

std::optional<TimePoint> parse_time_arg(std::string_view text, TimePoint now) {
  if (text == "now") return now;
  if (auto t = parse_time(text)) return t;
  if (auto t = parse_date(text)) return t;
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos) {
    std::int64_t secs = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), secs);
    constexpr std::int64_t kMaxSeconds =
        std::chrono::duration_cast<std::chrono::seconds>(TimePoint::duration::max()).count();
    if (ec != std::errc() || secs >= kMaxSeconds) return std::nullopt;
    return TimePoint(std::chrono::seconds(secs));
  }
  if (text.ends_with(" ago")) text.remove_suffix(4);
  // A time ago needs its unit: a bare number is epoch seconds, above.
  if (text.empty() || text.back() < 'a' || text.back() > 'z') return std::nullopt;
  auto ago = parse_duration(text);
  if (!ago) return std::nullopt;
  return add_saturating(now, -*ago);
}

CLI::Validator time_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parse_time_arg(text, std::chrono::system_clock::now())) return {};
        return "not a time: \"" + text + "\" (" + kTimeForms + ")";
      },
      "");
}

CLI::Validator duration_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parse_duration(text)) return {};
        return "not a duration: \"" + text + "\" (use 500ms, 10s, 2m, 1h, or seconds like 0.5)";
      },
      "");
}

TimePoint to_time(const std::string& text) {
  auto t = parse_time_arg(text, std::chrono::system_clock::now());
  if (!t) throw Error(Errc::invalid_argument, "not a time: \"" + text + "\" (" + kTimeForms + ")");
  return *t;
}

std::chrono::nanoseconds to_duration(const std::string& text) {
  auto d = parse_duration(text);
  if (!d) throw Error(Errc::invalid_argument, "not a duration: \"" + text + "\"");
  return *d;
}

// ---- output ----

void out(std::string_view text) { std::fwrite(text.data(), 1, text.size(), stdout); }

void out_line(std::string_view text) {
  out(text);
  std::fputc('\n', stdout);
}

void flush_out() { std::fflush(stdout); }

Style::Style(const Settings& settings) {
  if (settings.color == "always") {
    on_ = true;
  } else if (settings.color == "auto") {
    const char* no_color = std::getenv("NO_COLOR");
    on_ = ::isatty(STDOUT_FILENO) == 1 && (no_color == nullptr || *no_color == '\0');
  }
}

std::string Style::wrap(const char* code, std::string_view s) const {
  if (!on_) return std::string(s);
  return std::string("\033[") + code + "m" + std::string(s) + "\033[0m";
}

std::string Style::op(std::string_view op, std::size_t width) const {
  std::string padded(op);
  if (padded.size() < width) padded.append(width - padded.size(), ' ');
  if (op == "erase") return red(padded);
  if (op == "repair") return yellow(padded);
  return green(padded);
}

std::string dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string quote(std::string_view s) { return dump(nlohmann::json(std::string(s))); }

std::string show_key(std::string_view key) {
  const bool plain = !key.starts_with('"') && std::none_of(key.begin(), key.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  return plain ? std::string(key) : quote(key);
}

std::string shorten(std::string_view s, std::size_t width) {
  if (s.size() <= width) return std::string(s);
  return std::string(s.substr(0, width > 3 ? width - 3 : 0)) + "...";
}

void JsonObject::name(std::string_view n) {
  if (text_.size() > 1) text_ += ',';
  text_ += quote(n);
  text_ += ':';
}

JsonObject& JsonObject::raw(std::string_view n, std::string_view json_text) {
  name(n);
  text_ += json_text;
  return *this;
}

JsonObject& JsonObject::str(std::string_view n, std::string_view value) {
  return raw(n, quote(value));
}

JsonObject& JsonObject::str_or_null(std::string_view n, const std::optional<std::string>& value) {
  return raw(n, value ? quote(*value) : "null");
}

JsonObject& JsonObject::num(std::string_view n, std::int64_t value) {
  return raw(n, std::to_string(value));
}

JsonObject& JsonObject::unum(std::string_view n, std::uint64_t value) {
  return raw(n, std::to_string(value));
}

JsonObject& JsonObject::boolean(std::string_view n, bool value) {
  return raw(n, value ? "true" : "false");
}

JsonObject& JsonObject::value(std::string_view n, const nlohmann::json& value) {
  return raw(n, dump(value));
}

std::string record_json(const Record& r) {
  JsonObject o;
  o.str("time", format_time(r.time)).str("key", r.key).str("op", r.op);
  if (r.value) o.value("value", *r.value);
  o.str_or_null("prev", r.prev_version)
      .str_or_null("version", r.version)
      .num("pid", r.pid)
      .str("host", r.host);
  return o.text();
}

std::string who(const Record& r) { return std::to_string(r.pid) + "@" + r.host; }

std::string record_line(const Record& r, const Style& style) {
  std::string line = style.dim(format_time(r.time));
  line += "  ";
  line += style.op(r.op, 11);  // "update_many" is the longest op
  line += "  ";
  line += who(r);
  line += "  ";
  line += style.bold(show_key(r.key));
  line += "  ";
  line += r.value ? dump(*r.value) : std::string("-");
  return line;
}

// ---- progress ----

namespace {

std::chrono::milliseconds progress_delay() {
  std::chrono::milliseconds delay(1000);
  if (const char* env = std::getenv("LOCKDB_PROGRESS_DELAY_MS")) {
    long ms = 0;
    auto [end, ec] = std::from_chars(env, env + std::char_traits<char>::length(env), ms);
    if (ec == std::errc() && ms >= 0) delay = std::chrono::milliseconds(ms);
  }
  return delay;
}

}  // namespace

Progress::Progress(std::string what, const History& history) : what_(std::move(what)) {
  if (::isatty(STDERR_FILENO) != 1) return;
  for (const auto& segment : history.segments()) {
    std::uint64_t number = 0;
    const std::string stem = segment.stem().string();
    std::from_chars(stem.data(), stem.data() + stem.size(), number);
    bytes_before_[number] = total_bytes_;
    total_bytes_ += size_of_file(segment);
  }
  positional_ = true;
  start();
}

Progress::Progress(std::string what) : what_(std::move(what)) {
  if (::isatty(STDERR_FILENO) == 1) start();
}

void Progress::start() {
  const auto delay = progress_delay();
  if (delay.count() == 0) draw();  // shown from the start: no scan is too short to see it
  thread_ = std::thread([this, delay] { run(delay); });
}

Progress::~Progress() { finish(); }

void Progress::seen(const Record& record) {
  records_.fetch_add(1, std::memory_order_relaxed);
  auto it = bytes_before_.find(record.segment);
  if (it != bytes_before_.end())
    done_bytes_.store(it->second + record.offset, std::memory_order_relaxed);
}

void Progress::finish() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (shown_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
}

void Progress::draw() {
  std::string line = "\rlockdb: " + what_;
  if (positional_) {
    if (total_bytes_ > 0) {
      const auto done = std::min(done_bytes_.load(std::memory_order_relaxed), total_bytes_);
      line += " " + std::to_string(done * 100 / total_bytes_) + "%";
    }
    line += " (" + std::to_string(records_.load(std::memory_order_relaxed)) + " records)";
  } else {
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start_);
    line += " (" + std::to_string(elapsed.count()) + " s)";
  }
  line += "\033[K";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  shown_ = true;
}

void Progress::run(std::chrono::milliseconds delay) {
  std::unique_lock lock(mu_);
  if (cv_.wait_for(lock, delay, [this] { return stop_; })) return;
  do {
    draw();
  } while (!cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_; }));
}

}  // namespace lockdb::cli
