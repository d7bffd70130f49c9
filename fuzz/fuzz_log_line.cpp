// One line of a log segment, as every history reader (log, verify, repair, stats, rebuild,
// compact) parses it: a record, a torn fragment with a record glued on, or a skipped line.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "log_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static lockdb::detail::log_reader::RecordParser parser;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  lockdb::detail::log_reader::Parsed parsed;
  const auto outcome = parser.parse(line, parsed);
  if (outcome == lockdb::detail::log_reader::RecordParser::Outcome::record ||
      outcome == lockdb::detail::log_reader::RecordParser::Outcome::fragment_record) {
    const lockdb::Record r = parser.to_record(parsed, 1, 0);
    if (r.value) (void)r.value->dump();  // a value read from the log is within the depth limit
  }
  return 0;
}
