#include "log_format.hpp"

#include <cstdio>

#include "json_io.hpp"
#include "os.hpp"
#include "util.hpp"

namespace lockdb::detail::log_format {
std::string segment_name(std::uint64_t number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llu", kSegmentDigits, static_cast<unsigned long long>(number));
  return std::string(buf) + std::string(kSegmentSuffix);
}

std::optional<std::uint64_t> parse_segment_name(std::string_view name) {
  if (name.size() <= kSegmentSuffix.size() || !name.ends_with(kSegmentSuffix)) {
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
  std::string s;
  util::append_hex(s, id, 16);
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

void append_origin(std::string& out) {
  static const std::string host_field = [] {
    std::string s = ",\"" + std::string(kFieldHost) + "\":\"";
    const std::string& host = os::hostname();
    json_io::append_escaped(s, util::valid_utf8(host) ? std::string_view(host) : "localhost");
    return s + "\"";
  }();
  out += ",\"";
  out += kFieldPid;
  out += "\":";
  out += std::to_string(os::cached_pid());
  out += host_field;
}

std::string render_seen_marker(std::chrono::system_clock::time_point time, std::uint64_t segment,
                               std::uint64_t offset, std::uint64_t lines) {
  std::string s(kRecordStart);
  append_time(s, time);
  s += "\",\"";
  s += kFieldOp;
  s += "\":\"";
  s += kSeenOp;
  s += '"';
  append_origin(s);
  s += ",\"";
  s += kFieldSeen;
  s += "\":{\"";
  s += kSeenSegment;
  s += "\":" + std::to_string(segment) + ",\"" + kSeenOffset + "\":" + std::to_string(offset) +
       ",\"" + kSeenLines + "\":" + std::to_string(lines) + "}}";
  return s;
}

}  // namespace lockdb::detail::log_format
