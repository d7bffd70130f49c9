#include "cli_common.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <unistd.h>

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

// ---- the store ----

Store open_store(const std::string& dir, bool create, std::chrono::nanoseconds lock_timeout) {
  StoreOptions options;
  options.create = create;
  options.lock_timeout = lock_timeout;
  return Store(dir, options);
}

std::string relative_name(const std::filesystem::path& store_dir,
                          const std::filesystem::path& path) {
  auto rel = path.lexically_relative(store_dir);
  if (rel.empty() || *rel.begin() == "..") return path.string();
  return rel.string();
}

// ---- times ----

namespace {

bool take_digits(std::string_view& s, std::size_t n, int& value) {
  if (s.size() < n) return false;
  value = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    value = value * 10 + (s[i] - '0');
  }
  s.remove_prefix(n);
  return true;
}

bool take_char(std::string_view& s, std::string_view allowed) {
  if (s.empty() || allowed.find(s.front()) == std::string_view::npos) return false;
  s.remove_prefix(1);
  return true;
}

std::optional<TimePoint> parse_rfc3339(std::string_view s) {
  using namespace std::chrono;
  int year, month, day;
  if (!take_digits(s, 4, year) || !take_char(s, "-") || !take_digits(s, 2, month) ||
      !take_char(s, "-") || !take_digits(s, 2, day))
    return std::nullopt;
  year_month_day date{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month)),
                      std::chrono::day(static_cast<unsigned>(day))};
  // system_clock counts nanoseconds here: it reaches from 1677 to 2262.
  if (!date.ok() || year < 1678 || year > 2261) return std::nullopt;
  TimePoint t = sys_days(date);
  if (s.empty()) return t;  // a full-date alone: its midnight UTC
  int hour, minute, second;
  if (!take_char(s, "Tt ") || !take_digits(s, 2, hour) || !take_char(s, ":") ||
      !take_digits(s, 2, minute) || !take_char(s, ":") || !take_digits(s, 2, second))
    return std::nullopt;
  if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
  t += hours(hour) + minutes(minute) + seconds(second);
  if (take_char(s, ".")) {
    std::int64_t scale = 100'000'000, nanos = 0;
    std::size_t n = 0;
    while (n < s.size() && std::isdigit(static_cast<unsigned char>(s[n]))) {
      nanos += (s[n] - '0') * scale;
      scale /= 10;
      ++n;
    }
    if (n == 0) return std::nullopt;
    s.remove_prefix(n);
    t += duration_cast<system_clock::duration>(nanoseconds(nanos));
  }
  if (take_char(s, "Zz")) return s.empty() ? std::optional(t) : std::nullopt;
  if (s.empty()) return std::nullopt;  // RFC 3339 requires an offset
  const bool east = s.front() == '+';
  int off_hour, off_minute;
  if (!take_char(s, "+-") || !take_digits(s, 2, off_hour) || !take_char(s, ":") ||
      !take_digits(s, 2, off_minute) || !s.empty() || off_hour > 23 || off_minute > 59)
    return std::nullopt;
  const auto offset = hours(off_hour) + minutes(off_minute);
  return east ? t - offset : t + offset;
}

// "10m" -> 10 minutes; also "500ms" when allow_ms. nullopt when not a number and a unit.
std::optional<std::chrono::nanoseconds> parse_count_unit(std::string_view s, bool allow_ms) {
  using namespace std::chrono;
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end == s.data() || n < 0) return std::nullopt;
  const std::string_view unit(end, static_cast<std::size_t>(s.data() + s.size() - end));
  nanoseconds per;
  if (unit == "ms" && allow_ms)
    per = milliseconds(1);
  else if (unit == "s")
    per = seconds(1);
  else if (unit == "m")
    per = minutes(1);
  else if (unit == "h")
    per = hours(1);
  else if (unit == "d")
    per = hours(24);
  else if (unit == "w")
    per = hours(24 * 7);
  else
    return std::nullopt;
  // Bound to ~100 years so that the arithmetic cannot overflow.
  if (n > hours(24 * 366 * 100) / per) return std::nullopt;
  return per * n;
}

}  // namespace

std::string format_time(TimePoint t) {
  using namespace std::chrono;
  const auto us = floor<microseconds>(t);
  const auto day = floor<days>(us);
  const year_month_day date{day};
  const hh_mm_ss<microseconds> clock{us - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%06lldZ", int(date.year()),
                unsigned(date.month()), unsigned(date.day()), int(clock.hours().count()),
                int(clock.minutes().count()), int(clock.seconds().count()),
                static_cast<long long>(clock.subseconds().count()));
  return buf;
}

std::optional<TimePoint> parse_time(std::string_view text, TimePoint now) {
  if (text == "now") return now;
  if (auto t = parse_rfc3339(text)) return t;
  if (auto d = parse_count_unit(text, false))
    return now - std::chrono::duration_cast<std::chrono::system_clock::duration>(*d);
  return std::nullopt;
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  if (auto d = parse_count_unit(text, true)) return d;
  // A plain number of seconds, possibly fractional.
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(seconds) ||
      seconds < 0 || seconds > 1e9)
    return std::nullopt;
  return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
}

CLI::Validator time_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parse_time(text, std::chrono::system_clock::now())) return {};
        return "not a time: \"" + text +
               "\" (use RFC 3339 like 2026-11-30T18:00:00Z, or 10m, 2h, 3d ago, or now)";
      },
      "");
}

CLI::Validator duration_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (parse_duration(text)) return {};
        return "not a duration: \"" + text + "\" (use 500ms, 10s, 2m, or seconds like 0.5)";
      },
      "");
}

TimePoint to_time(const std::string& text) {
  auto t = parse_time(text, std::chrono::system_clock::now());
  if (!t) throw Error(Errc::invalid_argument, "not a time: \"" + text + "\"");
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
  line += style.bold(r.key);
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
    std::error_code ec;
    const auto size = std::filesystem::file_size(segment, ec);
    if (!ec) total_bytes_ += size;
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
