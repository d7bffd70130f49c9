// Small private helpers shared by the layers: the hash, hex digits, UTF-8 validation,
// word-at-a-time byte scanning.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace lockdb::util {

// Word-at-a-time scanning: the first index from `i` on where the next 8 bytes are not all
// `plain(word)`, or where fewer than 8 remain. REQUIRES: i <= s.size().
template <class Plain>
std::size_t skip_plain_words(std::string_view s, std::size_t i, Plain plain) noexcept {
  while (s.size() - i >= 8) {
    std::uint64_t word;
    std::memcpy(&word, s.data() + i, sizeof word);
    if (!plain(word)) break;
    i += 8;
  }
  return i;
}
constexpr std::uint64_t kEveryByte = 0x0101010101010101ULL;
constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;
// Whether some byte of `word` is below `n` (n <= 128), exactly.
constexpr bool has_byte_below(std::uint64_t word, unsigned n) noexcept {
  return ((word - kEveryByte * n) & ~word & kHighBits) != 0;
}
// Whether some byte of `word` equals `b`, exactly.
constexpr bool has_byte(std::uint64_t word, unsigned char b) noexcept {
  const std::uint64_t x = word ^ (kEveryByte * b);
  return ((x - kEveryByte) & ~x & kHighBits) != 0;
}

// ---- hash ----
// FNV-1a, 64 bit: the one hash of the library. Stable across platforms and versions: it names a
// store's shards, stripes and versions (store_format.hpp), so its output must never change.
constexpr std::uint64_t fnv1a64(std::string_view bytes) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// ---- hex ----
inline constexpr char kHexDigits[] = "0123456789abcdef";

// Appends the low `digits` hex digits of `v`, most significant first, lower case.
inline void append_hex(std::string& out, std::uint64_t v, int digits) {
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) out += kHexDigits[(v >> shift) & 0xf];
}

// ---- UTF-8 ----
// Where `s` stops being UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
// U+10FFFF), if it does: the offset of the offending byte, and whether the text ends inside a
// character (then `at` is where that character starts).
struct Utf8Problem {
  std::size_t at = 0;
  bool truncated = false;
};
inline std::optional<Utf8Problem> utf8_problem(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    i = skip_plain_words(s, i, [](std::uint64_t w) { return (w & kHighBits) == 0; });
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the first continuation byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
      return Utf8Problem{i, false};
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      if (i + k >= s.size()) return Utf8Problem{i, true};
      const auto d = static_cast<unsigned char>(s[i + k]);
      if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xbf)) return Utf8Problem{i + k, false};
    }
    i += extra + 1;
  }
  return std::nullopt;
}
inline bool valid_utf8(std::string_view s) noexcept { return !utf8_problem(s); }

}  // namespace lockdb::util
