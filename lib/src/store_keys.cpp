// Key -> file name encoding and the store's hashes (see store_format.hpp for the rules).
#include <array>
#include <cstdio>

#include "store_format.hpp"

namespace lockdb::detail::store_format {
namespace {

using util::kHexDigits;

bool is_literal(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

void append_escaped(std::string& out, unsigned char c) {
  out.push_back(kByteEscape);
  out.push_back(kHexDigits[c >> 4]);
  out.push_back(kHexDigits[c & 0xf]);
}

// The token of one key byte; `at_start`: it would begin a name component.
void append_token(std::string& out, unsigned char c, bool at_start) {
  if (c >= 'A' && c <= 'Z') {
    out.push_back(kUpperEscape);
    out.push_back(static_cast<char>(c));
  } else if (is_literal(c) && !(at_start && c == '.')) {
    out.push_back(static_cast<char>(c));
  } else {
    append_escaped(out, c);
  }
}

std::size_t token_size(unsigned char c, bool at_start) noexcept {
  if (c >= 'A' && c <= 'Z') return 2;
  if (is_literal(c) && !(at_start && c == '.')) return 1;
  return 3;
}

// Windows device names: reserved with any extension, in any case.
bool is_windows_device(std::string_view base) noexcept {
  static constexpr std::array<std::string_view, 4> kPlain = {"con", "prn", "aux", "nul"};
  for (auto name : kPlain) {
    if (base == name) return true;
  }
  return base.size() == 4 && (base.starts_with("com") || base.starts_with("lpt")) &&
         base[3] >= '0' && base[3] <= '9';
}

// A component whose part before the first '.' is a device name gets its first character (always
// a plain lowercase letter here) escaped.
void avoid_device_name(std::string& component) {
  std::string_view base = std::string_view(component).substr(0, component.find('.'));
  if (!is_windows_device(base)) return;
  std::string fixed;
  append_escaped(fixed, static_cast<unsigned char>(component[0]));
  fixed.append(component, 1, std::string::npos);
  component = std::move(fixed);
}

std::vector<std::string> encode_components(std::string_view key) {
  std::vector<std::string> components(1);
  for (char ch : key) {
    auto c = static_cast<unsigned char>(ch);
    std::string* body = &components.back();
    if (body->size() + token_size(c, body->empty()) > kMaxComponent) {
      components.emplace_back();
      body = &components.back();
    }
    append_token(*body, c, body->empty());
  }
  for (auto& component : components) avoid_device_name(component);
  return components;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Decodes one component body; false on a malformed token.
bool decode_body(std::string_view body, std::string& out) {
  for (std::size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c == kUpperEscape) {
      if (i + 1 >= body.size() || body[i + 1] < 'A' || body[i + 1] > 'Z') return false;
      out.push_back(body[++i]);
    } else if (c == kByteEscape) {
      if (i + 2 >= body.size()) return false;
      int hi = hex_value(body[i + 1]), lo = hex_value(body[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (is_literal(static_cast<unsigned char>(c))) {
      out.push_back(c);
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string_view value_text(std::string_view file_bytes) noexcept {
  if (file_bytes.ends_with('\n')) file_bytes.remove_suffix(1);
  return file_bytes;
}

std::string file_text(std::string value_json, int format) {
  if (format >= 2) value_json.push_back('\n');
  return value_json;
}

std::string version_of(std::string_view file_bytes) {
  std::string out;
  util::append_hex(out, fnv1a64(value_text(file_bytes)), 16);
  return out;
}

std::string shard_of(std::string_view key, int format) {
  std::uint64_t h = fnv1a64(key);
  if (format >= 2) {  // MurmurHash3's fmix64: every bit of the key reaches the top byte
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
  }
  auto top = static_cast<unsigned>(h >> 56);
  return {kHexDigits[top >> 4], kHexDigits[top & 0xf]};
}

std::string key_problem(std::string_view key) {
  if (key.empty()) return "is empty";
  if (key.size() > kMaxKeyBytes) {
    return "is " + std::to_string(key.size()) + " bytes long (at most " +
           std::to_string(kMaxKeyBytes) + ")";
  }
  if (auto bad = util::utf8_problem(key)) {
    return (bad->truncated ? "is not valid UTF-8 (truncated at byte "
                           : "is not valid UTF-8 (byte ") +
           std::to_string(bad->at) + ")";
  }
  return {};
}

void append_key_file_relative(std::string_view key, std::string& out, int format) {
  auto components = encode_components(key);
  out += shard_of(key, format);
  for (std::size_t i = 0; i + 1 < components.size(); ++i) {
    out.push_back('/');
    out += components[i];
    out.push_back(kContinuation);
  }
  out.push_back('/');
  out += components.back();
  out += kKeyFileSuffix;
}

void append_lock_file_relative(std::string_view key, std::size_t stripes, std::string& out,
                               int format) {
  if (stripes == 0) {
    append_key_file_relative(key, out, format);
  } else {
    out += kStripePrefix;
    out += std::to_string(fnv1a64(key) % stripes);
  }
  out += kLockSuffix;
}

std::filesystem::path key_file_relative(std::string_view key, int format) {
  std::string rel;
  append_key_file_relative(key, rel, format);
  return rel;
}

std::optional<std::string> decode_key_file(const std::filesystem::path& relative, int format) {
  std::vector<std::string> parts;
  for (const auto& part : relative) parts.push_back(part.string());
  if (parts.size() < 2) return std::nullopt;
  std::string key;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    std::string_view body = parts[i];
    const bool last = i + 1 == parts.size();
    if (last) {
      if (!body.ends_with(kKeyFileSuffix)) return std::nullopt;
      body.remove_suffix(kKeyFileSuffix.size());
    } else {
      if (body.empty() || body.back() != kContinuation) return std::nullopt;
      body.remove_suffix(1);
    }
    if (body.empty() || !decode_body(body, key)) return std::nullopt;
  }
  if (!key_problem(key).empty()) return std::nullopt;
  if (key_file_relative(key, format) != relative)
    return std::nullopt;  // not canonical, or wrong shard
  return key;
}

bool is_shard_name(std::string_view name) {
  return name.size() == 2 && hex_value(name[0]) >= 0 && hex_value(name[1]) >= 0;
}

bool is_key_file_name(std::string_view name) {
  return name.size() > kKeyFileSuffix.size() && name.front() != '.' &&
         name.ends_with(kKeyFileSuffix);
}

bool is_continuation_dir(std::string_view name) {
  if (name.size() < 2 || name.back() != kContinuation) return false;
  std::string ignored;
  return decode_body(name.substr(0, name.size() - 1), ignored);
}

std::optional<std::string> temp_owner(std::string_view name) {
  if (name.size() > 1 && name.front() == '.' && name.ends_with(kTempSuffix)) {
    // ".<file>.<hex>.tmp"
    std::string_view inner = name.substr(1, name.size() - 1 - kTempSuffix.size());
    auto dot = inner.rfind('.');
    if (dot == std::string_view::npos || dot + 1 == inner.size()) return std::nullopt;
    for (char c : inner.substr(dot + 1)) {
      if (hex_value(c) < 0) return std::nullopt;
    }
    std::string_view owner = inner.substr(0, dot);
    if (!owner.ends_with(kKeyFileSuffix)) return std::nullopt;
    return std::string(owner);
  }
  // "<stem>.tmp<pid>" (Python's Path.with_suffix(".tmp" + pid) of "<stem>.json")
  auto at = name.rfind(kPythonTempInfix);
  if (at == std::string_view::npos || at == 0 || name.front() == '.') return std::nullopt;
  std::string_view digits = name.substr(at + kPythonTempInfix.size());
  if (digits.empty()) return std::nullopt;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  return std::string(name.substr(0, at)) + std::string(kKeyFileSuffix);
}

std::string quote_key(std::string_view key) {
  std::string out = "\"";
  std::size_t n = 0;
  for (char ch : key) {
    if (++n > 200) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(ch);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace lockdb::detail::store_format
