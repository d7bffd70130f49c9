// The CLI's value argument (`lockdb put KEY JSON`, or JSON on stdin): parsed by nlohmann as the
// CLI does, then checked and rendered as Store::put writes it (refused: too deep, NaN, binary).
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
    value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  std::string rendered;
  try {
    rendered = json_io::dump(value, 2);
  } catch (const json_io::ValueError&) {
    return 0;  // refused with Error{invalid_argument}: nothing is written
  }
  if (json_io::parse(rendered) != value) std::abort();  // what put writes, get reads back
  return 0;
}
