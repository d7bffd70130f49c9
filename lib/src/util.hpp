// Small private helpers shared by the layers: per-thread scratch strings,
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

// Per-thread scratch strings for the write path: each keeps its room from call to call, so a
// small update allocates nothing for its paths and texts. A string is lent for the length of one
// call that runs no user code while it holds it (or is done with it before); the one exception,
// lock_path, is held across `fn` by the outermost locked call only (nested ones keep their own:
// files.cpp, HeldLock). A call made after
// this thread's thread_local objects were destroyed (from a static destructor at exit) gets
// `fallback` instead.
enum class Scratch : unsigned { lock_path, file_text, document_text, temp_path, count };

namespace scratch_detail {
inline thread_local bool gone = false;  // trivially destructible: readable to the thread's end
struct Strings {
  std::string s[static_cast<unsigned>(Scratch::count)];
  Strings() = default;
  Strings(const Strings&) = delete;
  Strings& operator=(const Strings&) = delete;
  ~Strings() { gone = true; }
};
inline thread_local Strings strings;
}  // namespace scratch_detail

inline std::string& scratch(Scratch which, std::string& fallback) noexcept {
  if (scratch_detail::gone) return fallback;
  std::string& s = scratch_detail::strings.s[static_cast<unsigned>(which)];
  if (s.capacity() > (std::size_t{64} << 10)) s = std::string();  // no big one kept for good
  return s;
}

}  // namespace lockdb::util
