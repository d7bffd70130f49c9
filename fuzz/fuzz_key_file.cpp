// A key file's (or a plain file's) bytes, as Store and atomic_json_update read them: parse within
// the limits; what parses is written back (dump, the write path) and reads back as the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "json_io.hpp"

namespace json_io = lockdb::detail::json_io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  nlohmann::json value;
  try {
    value = json_io::parse(text);
  } catch (const nlohmann::json::parse_error&) {
    if (json_io::accepts(text)) std::abort();  // accepts() and parse() disagree
    return 0;
  }
  if (!json_io::accepts(text)) std::abort();
  try {
    if (json_io::parse(json_io::dump(value, 2)) != value) std::abort();
  } catch (const json_io::ValueError&) {
    // Only a string that is not UTF-8 can be read but not written (nlohmann's parser checks
    // UTF-8, so this does not happen); anything else is a bug.
    std::abort();
  }
  return 0;
}
