#include "log_format.hpp"

#include <cstdio>

#include "os.hpp"
#include "util.hpp"

namespace lockdb::detail::log_format {
namespace {

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
  append_time(s, created);
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

}  // namespace lockdb::detail::log_format
