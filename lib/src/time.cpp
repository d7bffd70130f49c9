// Times and durations (time.hpp): RFC 3339 through <chrono>'s calendar types, which check every
// date (year_month_day::ok) so that no invalid date is normalised into another one.
#include <lockdb/time.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ratio>
#include <type_traits>

namespace lockdb {
namespace {

using namespace std::chrono;

// The whole years system_clock can hold (nanoseconds from 1970: 1678 to 2261 here), so that
// every date-time of such a year, with any offset, converts without overflow.
const year kMinYear = year_month_day{floor<days>(SystemTime::min())}.year() + years(1);
const year kMaxYear = year_month_day{floor<days>(SystemTime::max())}.year() - years(1);

// Reads exactly `n` digits.
bool take_digits(std::string_view& s, std::size_t n, int& value) noexcept {
  if (s.size() < n) return false;
  value = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  s.remove_prefix(n);
  return true;
}

bool take_char(std::string_view& s, std::string_view allowed) noexcept {
  if (s.empty() || allowed.find(s.front()) == std::string_view::npos) return false;
  s.remove_prefix(1);
  return true;
}

// "YYYY-MM-DD" at the start of `s`, consumed; nullopt when invalid or out of range.
std::optional<sys_days> take_date(std::string_view& s) noexcept {
  int y = 0, m = 0, d = 0;
  if (!take_digits(s, 4, y) || !take_char(s, "-") || !take_digits(s, 2, m) || !take_char(s, "-") ||
      !take_digits(s, 2, d)) {
    return std::nullopt;
  }
  const year_month_day date{year(y), month(static_cast<unsigned>(m)),
                            day(static_cast<unsigned>(d))};
  if (!date.ok() || date.year() < kMinYear || date.year() > kMaxYear) return std::nullopt;
  return sys_days(date);
}

void put_digits(char* at, unsigned long long v, int width) noexcept {
  for (int i = width - 1; i >= 0; --i) {
    at[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

template <class TimePoint>
TimePoint saturating(TimePoint t, nanoseconds d) noexcept {
  using Duration = typename TimePoint::duration;
  static_assert(std::ratio_less_equal_v<std::nano, typename Duration::period>,
                "a clock finer than nanoseconds");
  const auto step = duration_cast<Duration>(d);  // as fine or coarser: cannot overflow
  const auto since = t.time_since_epoch();
  if (step.count() > 0 && since > Duration::max() - step) return TimePoint::max();
  if (step.count() < 0 && since < Duration::min() - step) return TimePoint::min();
  return t + step;
}

}  // namespace

void append_time(std::string& out, SystemTime t) {
  const auto us = floor<microseconds>(t);
  const auto day_start = floor<days>(us);
  const year_month_day date{day_start};
  const hh_mm_ss clock{us - day_start};
  char buf[27];
  put_digits(buf, static_cast<unsigned>(static_cast<int>(date.year())), 4);
  buf[4] = '-';
  put_digits(buf + 5, static_cast<unsigned>(date.month()), 2);
  buf[7] = '-';
  put_digits(buf + 8, static_cast<unsigned>(date.day()), 2);
  buf[10] = 'T';
  put_digits(buf + 11, static_cast<unsigned long long>(clock.hours().count()), 2);
  buf[13] = ':';
  put_digits(buf + 14, static_cast<unsigned long long>(clock.minutes().count()), 2);
  buf[16] = ':';
  put_digits(buf + 17, static_cast<unsigned long long>(clock.seconds().count()), 2);
  buf[19] = '.';
  put_digits(buf + 20, static_cast<unsigned long long>(clock.subseconds().count()), 6);
  buf[26] = 'Z';
  out.append(buf, sizeof buf);
}

std::string format_time(SystemTime t) {
  std::string s;
  s.reserve(27);
  append_time(s, t);
  return s;
}

std::optional<SystemTime> parse_date(std::string_view text) noexcept {
  auto date = take_date(text);
  if (!date || !text.empty()) return std::nullopt;
  return SystemTime(*date);
}

std::optional<SystemTime> parse_time(std::string_view s) noexcept {
  auto date = take_date(s);
  int h = 0, m = 0, sec = 0;
  if (!date || !take_char(s, "Tt ") || !take_digits(s, 2, h) || !take_char(s, ":") ||
      !take_digits(s, 2, m) || !take_char(s, ":") || !take_digits(s, 2, sec)) {
    return std::nullopt;
  }
  if (h > 23 || m > 59 || sec > 60) return std::nullopt;
  nanoseconds fraction{0};
  if (take_char(s, ".")) {
    std::int64_t scale = 100'000'000, nanos = 0;
    std::size_t n = 0;
    for (; n < s.size() && s[n] >= '0' && s[n] <= '9'; ++n) {
      nanos += (s[n] - '0') * scale;
      scale /= 10;
    }
    if (n == 0) return std::nullopt;
    s.remove_prefix(n);
    fraction = nanoseconds(nanos);
  }
  minutes offset{0};
  if (!take_char(s, "Zz")) {
    if (s.empty()) return std::nullopt;  // RFC 3339 requires an offset
    const bool east = s.front() == '+';
    int oh = 0, om = 0;
    if (!take_char(s, "+-") || !take_digits(s, 2, oh) || !take_char(s, ":") ||
        !take_digits(s, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = hours(oh) + minutes(om);
    if (!east) offset = -offset;
  }
  if (!s.empty()) return std::nullopt;
  // In range: the year is one system_clock holds whole, and the rest is within a day of it.
  return SystemTime(*date) + hours(h) + minutes(m) + seconds(sec) +
         duration_cast<SystemTime::duration>(fraction) - offset;
}

std::optional<nanoseconds> parse_duration(std::string_view text) noexcept {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (text.empty() || text.front() < '0' || text.front() > '9' || text.back() == '.') {
    return std::nullopt;
  }
  // A whole number and a unit.
  std::int64_t n = 0;
  auto [after, ec] = std::from_chars(begin, end, n);
  const std::string_view unit(after, static_cast<std::size_t>(end - after));
  nanoseconds per{0};
  if (unit == "ms")
    per = milliseconds(1);
  else if (unit == "s")
    per = seconds(1);
  else if (unit == "m")
    per = minutes(1);
  else if (unit == "h")
    per = hours(1);
  else if (unit == "d")
    per = days(1);
  else if (unit == "w")
    per = weeks(1);
  if (per.count() != 0) {
    if (ec == std::errc::result_out_of_range || n > nanoseconds::max() / per) {
      return nanoseconds::max();
    }
    if (ec != std::errc()) return std::nullopt;
    return per * n;
  }
  // A plain number of seconds, possibly fractional.
  double secs = 0;
  auto [stop, dec] = std::from_chars(begin, end, secs, std::chars_format::fixed);
  if (stop != end || !(dec == std::errc() || dec == std::errc::result_out_of_range) ||
      !std::isfinite(secs) || secs < 0) {
    return std::nullopt;
  }
  if (dec == std::errc::result_out_of_range) {  // too large, or too small to tell from zero
    const std::string_view whole = text.substr(0, text.find('.'));
    return whole.find_first_not_of('0') == std::string_view::npos ? nanoseconds(0)
                                                                  : nanoseconds::max();
  }
  if (secs >= 9.2e9) return nanoseconds::max();
  return nanoseconds(static_cast<std::int64_t>(std::llround(secs * 1e9)));
}

SystemTime add_saturating(SystemTime t, nanoseconds d) noexcept { return saturating(t, d); }

steady_clock::time_point add_saturating(steady_clock::time_point t, nanoseconds d) noexcept {
  return saturating(t, d);
}

}  // namespace lockdb
