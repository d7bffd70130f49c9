// Key -> file name encoding and the store's hashes (see store_format.hpp for the rules).
#include <array>
#include <cstdio>

#include "store_format.hpp"

namespace lockdb::detail::store_format {
namespace {

constexpr char kHex[] = "0123456789abcdef";

bool is_literal(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

void append_escaped(std::string& out, unsigned char c) {
  out.push_back(kByteEscape);
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 0xf]);
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
  return base.size() == 4 && (base.substr(0, 3) == "com" || base.substr(0, 3) == "lpt") &&
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

bool ends_with(std::string_view s, std::string_view suffix) noexcept {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::uint64_t fnv1a64(std::string_view bytes) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string version_of(std::string_view file_bytes) {
  std::uint64_t h = fnv1a64(file_bytes);
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = kHex[h & 0xf];
    h >>= 4;
  }
  return out;
}

std::string shard_of(std::string_view key) {
  auto top = static_cast<unsigned>(fnv1a64(key) >> 56);
  return {kHex[top >> 4], kHex[top & 0xf]};
}

std::string key_problem(std::string_view key) {
  if (key.empty()) return "is empty";
  if (key.size() > kMaxKeyBytes) {
    return "is " + std::to_string(key.size()) + " bytes long (at most " +
           std::to_string(kMaxKeyBytes) + ")";
  }
  // UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
  std::size_t i = 0;
  while (i < key.size()) {
    auto c = static_cast<unsigned char>(key[i]);
    std::size_t extra = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the first continuation byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return "is not valid UTF-8 (byte " + std::to_string(i) + ")";
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      if (i + k >= key.size())
        return "is not valid UTF-8 (truncated at byte " + std::to_string(i) + ")";
      auto d = static_cast<unsigned char>(key[i + k]);
      unsigned char min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xbf;
      if (d < min || d > max) return "is not valid UTF-8 (byte " + std::to_string(i + k) + ")";
    }
    i += extra + 1;
  }
  return {};
}

void append_key_file_relative(std::string_view key, std::string& out) {
  auto components = encode_components(key);
  out += shard_of(key);
  for (std::size_t i = 0; i + 1 < components.size(); ++i) {
    out.push_back('/');
    out += components[i];
    out.push_back(kContinuation);
  }
  out.push_back('/');
  out += components.back();
  out += kKeyFileSuffix;
}

std::filesystem::path key_file_relative(std::string_view key) {
  std::string rel;
  append_key_file_relative(key, rel);
  return rel;
}

std::optional<std::string> decode_key_file(const std::filesystem::path& relative) {
  std::vector<std::string> parts;
  for (const auto& part : relative) parts.push_back(part.string());
  if (parts.size() < 2) return std::nullopt;
  std::string key;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    std::string_view body = parts[i];
    const bool last = i + 1 == parts.size();
    if (last) {
      if (!ends_with(body, kKeyFileSuffix)) return std::nullopt;
      body.remove_suffix(kKeyFileSuffix.size());
    } else {
      if (body.empty() || body.back() != kContinuation) return std::nullopt;
      body.remove_suffix(1);
    }
    if (body.empty() || !decode_body(body, key)) return std::nullopt;
  }
  if (!key_problem(key).empty()) return std::nullopt;
  if (key_file_relative(key) != relative) return std::nullopt;  // not canonical, or wrong shard
  return key;
}

bool is_shard_name(std::string_view name) {
  return name.size() == 2 && hex_value(name[0]) >= 0 && hex_value(name[1]) >= 0;
}

bool is_key_file_name(std::string_view name) {
  return name.size() > kKeyFileSuffix.size() && name.front() != '.' &&
         ends_with(name, kKeyFileSuffix);
}

bool is_continuation_dir(std::string_view name) {
  if (name.size() < 2 || name.back() != kContinuation) return false;
  std::string ignored;
  return decode_body(name.substr(0, name.size() - 1), ignored);
}

std::optional<std::string> temp_owner(std::string_view name) {
  if (name.size() > 1 && name.front() == '.' && ends_with(name, kTempSuffix)) {
    // ".<file>.<hex>.tmp"
    std::string_view inner = name.substr(1, name.size() - 1 - kTempSuffix.size());
    auto dot = inner.rfind('.');
    if (dot == std::string_view::npos || dot + 1 == inner.size()) return std::nullopt;
    for (char c : inner.substr(dot + 1)) {
      if (hex_value(c) < 0) return std::nullopt;
    }
    std::string_view owner = inner.substr(0, dot);
    if (!ends_with(owner, kKeyFileSuffix)) return std::nullopt;
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
