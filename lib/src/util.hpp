// Small private helpers shared by the layers: time formatting, per-thread scratch strings.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace lockdb::util {

// RFC 3339 UTC with microseconds: "2026-11-30T18:00:00.123456Z".
std::string format_utc(std::chrono::system_clock::time_point t);
// Parses what format_utc writes, and also "...Z" without fraction and "+hh:mm" offsets.
std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view text);

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
