#include "log_format.hpp"

#include <cstdio>

#include "os.hpp"
#include "util.hpp"

namespace lockdb::detail::log_format {
namespace {

// Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's algorithms).
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct Civil {
  std::int64_t year;
  unsigned month;
  unsigned day;
};

constexpr Civil civil_from_days(std::int64_t z) noexcept {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

void put_digits(char* at, std::uint64_t v, int width) noexcept {
  for (int i = width - 1; i >= 0; --i) {
    at[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

// Reads `width` digits at `s`; -1 when one is not a digit.
std::int64_t digits(const char* s, int width) noexcept {
  std::int64_t v = 0;
  for (int i = 0; i < width; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

const char kHex[] = "0123456789abcdef";

}  // namespace

std::string segment_name(std::uint64_t number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llu", kSegmentDigits, static_cast<unsigned long long>(number));
  return std::string(buf) + std::string(kSegmentSuffix);
}

std::optional<std::uint64_t> parse_segment_name(std::string_view name) {
  if (name.size() <= kSegmentSuffix.size() ||
      name.substr(name.size() - kSegmentSuffix.size()) != kSegmentSuffix) {
    return std::nullopt;
  }
  std::string_view digits_part = name.substr(0, name.size() - kSegmentSuffix.size());
  if (digits_part.size() > 19) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : digits_part) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (n == 0) return std::nullopt;
  return n;
}

std::uint64_t new_segment_id() {
  for (;;) {
    if (auto id = parse_id(os::random_hex(8)); id && *id != 0) return *id;
  }
}

std::string id_text(std::uint64_t id) {
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i) {
    s[static_cast<std::size_t>(i)] = kHex[id & 0xf];
    id >>= 4;
  }
  return s;
}

std::optional<std::uint64_t> parse_id(std::string_view text) {
  if (text.size() != 16) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : text) {
    unsigned d;
    if (c >= '0' && c <= '9') {
      d = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<unsigned>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    v = (v << 4) | d;
  }
  return v;
}

std::string render_header(std::uint64_t number, std::uint64_t id,
                          std::chrono::system_clock::time_point created) {
  std::string s(kHeaderStart);
  s += std::to_string(kLogFormatVersion);
  s += ",\"";
  s += kHeaderSegment;
  s += "\":" + std::to_string(number) + ",\"" + kHeaderId + "\":\"" + id_text(id) + "\",\"" +
       kHeaderCreated + "\":\"";
  format_time(created, s);
  s += "\"}";
  return s;
}

bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    i = util::skip_plain_words(s, i, [](std::uint64_t w) { return (w & util::kHighBits) == 0; });
    if (i == n) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates, and code points past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

void format_time(std::chrono::system_clock::time_point t, std::string& out) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::int64_t days = us / 86400000000LL;
  std::int64_t rest = us % 86400000000LL;
  if (rest < 0) {
    rest += 86400000000LL;
    days -= 1;
  }
  const Civil c = civil_from_days(days);
  const auto secs_of_day = static_cast<std::uint64_t>(rest / 1000000);
  const auto micros = static_cast<std::uint64_t>(rest % 1000000);
  char buf[kTimeChars];
  if (c.year < 0 || c.year > 9999) {  // outside RFC 3339: fall back to the general formatter
    out += util::format_utc(t);
    return;
  }
  put_digits(buf, static_cast<std::uint64_t>(c.year), 4);
  buf[4] = '-';
  put_digits(buf + 5, c.month, 2);
  buf[7] = '-';
  put_digits(buf + 8, c.day, 2);
  buf[10] = 'T';
  put_digits(buf + 11, secs_of_day / 3600, 2);
  buf[13] = ':';
  put_digits(buf + 14, secs_of_day / 60 % 60, 2);
  buf[16] = ':';
  put_digits(buf + 17, secs_of_day % 60, 2);
  buf[19] = '.';
  put_digits(buf + 20, micros, 6);
  buf[26] = 'Z';
  out.append(buf, kTimeChars);
}

std::string format_time(std::chrono::system_clock::time_point t) {
  std::string s;
  format_time(t, s);
  return s;
}

std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text) {
  const char* s = text.data();
  if (text.size() == kTimeChars && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' &&
      s[16] == ':' && s[19] == '.' && s[26] == 'Z') {
    const std::int64_t y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2),
                       h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2),
                       us = digits(s + 20, 6);
    if (y >= 0 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h >= 0 && h <= 23 && mi >= 0 &&
        mi <= 59 && se >= 0 && se <= 60 && us >= 0) {
      const std::int64_t days =
          days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
      const std::int64_t total = ((days * 24 + h) * 60 + mi) * 60 + se;
      return std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::seconds(total) + std::chrono::microseconds(us)));
    }
  }
  return util::parse_utc(text);
}

}  // namespace lockdb::detail::log_format
