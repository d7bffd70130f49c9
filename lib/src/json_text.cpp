#include "json_text.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rapidjson.hpp"
#include "util.hpp"

namespace lockdb::detail {
namespace {

using json = nlohmann::json;

// The number whose JSON text (grammar checked) is [s, end), typed as nlohmann types numbers: an
// integer that fits 64 bits is unsigned without a sign and signed with one; anything else is a
// double. nullopt out of a double's range (nlohmann rejects an infinity and takes an underflow
// as strtod rounds it: left to nlohmann).
std::optional<json> number_value(const char* s, const char* end) {
  if (std::none_of(s, end, [](char c) { return c == '.' || c == 'e' || c == 'E'; })) {
    if (*s == '-') {
      std::int64_t v = 0;
      if (auto r = std::from_chars(s, end, v); r.ec == std::errc() && r.ptr == end) return json(v);
    } else {
      std::uint64_t v = 0;
      if (auto r = std::from_chars(s, end, v); r.ec == std::errc() && r.ptr == end) return json(v);
    }
  }
  double v = 0;
  auto r = std::from_chars(s, end, v);
  if (r.ec != std::errc() || r.ptr != end || !std::isfinite(v)) return std::nullopt;
  return json(v);
}

// The first pass (parse_simple): a recursive descent over the JSON most files hold, building the
// nlohmann::json directly. It declines (nullopt) at the first thing it leaves to RapidJSON's
// reader: a \u escape, a byte below 0x20 or from 0x80 in a string (UTF-8 and surrogate checks),
// nesting deeper than kMaxDepth, and anything that is not JSON (the error is nlohmann's).
class SimpleParser {
 public:
  explicit SimpleParser(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  std::optional<json> document() {
    json v;
    skip_space();
    if (!value(v, 0)) return std::nullopt;
    skip_space();
    if (p_ != end_) return std::nullopt;
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;

  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::memcmp(p_, word.data(), word.size()) != 0) {
      return false;
    }
    p_ += word.size();
    return true;
  }
  static bool digit(char c) { return c >= '0' && c <= '9'; }

  bool value(json& out, int depth) {
    if (p_ == end_) return false;
    switch (*p_) {
      case '{': return object(out, depth + 1);
      case '[': return array(out, depth + 1);
      case '"': {
        json::string_t s;
        if (!string(s)) return false;
        out = std::move(s);
        return true;
      }
      case 't': out = true; return literal("true");
      case 'f': out = false; return literal("false");
      case 'n': out = nullptr; return literal("null");
      default: return number(out);
    }
  }

  bool number(json& out) {
    const char* start = p_;
    if (p_ != end_ && *p_ == '-') ++p_;
    if (p_ == end_ || !digit(*p_)) return false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    if (p_ != end_ && *p_ == '.') {
      ++p_;
      if (p_ == end_ || !digit(*p_)) return false;
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !digit(*p_)) return false;
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    auto v = number_value(start, p_);
    if (!v) return false;
    out = std::move(*v);
    return true;
  }

  // REQUIRES: *p_ == '"'.
  bool string(json::string_t& out) {
    ++p_;
    const char* run = p_;  // bytes not yet copied
    for (;;) {
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') break;
      if (c < 0x20 || c >= 0x80) return false;
      if (c != '\\') {
        ++p_;
        continue;
      }
      out.append(run, p_);
      if (++p_ == end_) return false;
      switch (*p_) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        default: return false;  // \u (left to RapidJSON) or not an escape
      }
      run = ++p_;
    }
    out.append(run, p_);
    ++p_;
    return true;
  }

  // The items of a container up to `close`, each read by `item` (at the item's first byte),
  // separated by commas. REQUIRES: *p_ is the opening bracket.
  template <typename Item>
  bool items(char close, Item&& item) {
    ++p_;
    skip_space();
    if (p_ != end_ && *p_ == close) {
      ++p_;
      return true;
    }
    for (;;) {
      if (!item()) return false;
      skip_space();
      if (p_ == end_) return false;
      if (*p_ == close) {
        ++p_;
        return true;
      }
      if (*p_ != ',') return false;
      ++p_;
      skip_space();
    }
  }

  bool object(json& out, int depth) {
    if (depth > kMaxDepth) return false;
    out = json::object();
    auto& members = out.get_ref<json::object_t&>();
    return items('}', [&] {
      json::string_t key;
      if (p_ == end_ || *p_ != '"' || !string(key)) return false;
      skip_space();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      skip_space();
      json v;
      if (!value(v, depth)) return false;
      // A later duplicate key replaces the earlier value, as nlohmann's parser does.
      if (auto [it, added] = members.try_emplace(std::move(key), std::move(v)); !added) {
        it->second = std::move(v);
      }
      return true;
    });
  }

  bool array(json& out, int depth) {
    if (depth > kMaxDepth) return false;
    out = json::array();
    auto& elements = out.get_ref<json::array_t&>();
    return items(']', [&] {
      elements.emplace_back();
      return value(elements.back(), depth);
    });
  }

  const char* p_;
  const char* const end_;
};

// RapidJSON's events to a nlohmann::json (or, with `build` false, only the checks that RapidJSON
// leaves to it). Returning false from an event stops the reader: the caller then falls back to
// nlohmann's parser.
class Builder : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, Builder> {
 public:
  explicit Builder(bool build) : build_(build) {}

  json take() { return std::move(root_); }

  bool Null() { return put(json(nullptr)); }
  bool Bool(bool b) { return put(json(b)); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool /*copy*/) {
    auto v = number_value(s, s + n);
    return v && put(std::move(*v));
  }
  bool String(const char* s, rapidjson::SizeType n, bool /*copy*/) {
    if (!nlohmann_accepts(s, n)) return false;
    return !build_ || put(json(json::string_t(s, n)));
  }
  bool Key(const char* s, rapidjson::SizeType n, bool /*copy*/) {
    if (!nlohmann_accepts(s, n)) return false;
    if (build_) key_.assign(s, n);
    return true;
  }
  bool StartObject() { return open(json::value_t::object); }
  bool EndObject(rapidjson::SizeType) { return close(); }
  bool StartArray() { return open(json::value_t::array); }
  bool EndArray(rapidjson::SizeType) { return close(); }

 private:
  // A decoded string holds the bytes ED A0..ED BF (a UTF-16 surrogate) only when it came from a
  // \u escape (the input's UTF-8 is validated): RapidJSON lets a lone \uDC00..\uDFFF through;
  // nlohmann rejects it.
  static bool nlohmann_accepts(const char* s, std::size_t n) {
    const char* end = s + n;
    for (const char* p = s; (p = static_cast<const char*>(
                                 std::memchr(p, '\xED', static_cast<std::size_t>(end - p))));) {
      if (++p == end || static_cast<unsigned char>(*p) >= 0xA0) return false;
    }
    return true;
  }

  // Adds `v` to the innermost open container (or makes it the document). Returns its place.
  json* add(json&& v) {
    if (depth_ == 0) {
      root_ = std::move(v);
      return &root_;
    }
    json& top = *(depth_ <= kShallow ? shallow_[depth_ - 1] : deep_.back());
    if (top.is_array()) {
      auto& array = top.get_ref<json::array_t&>();
      array.push_back(std::move(v));
      return &array.back();
    }
    // A later duplicate key replaces the earlier value, as nlohmann's parser does.
    json& slot = top.get_ref<json::object_t&>()[std::move(key_)];
    slot = std::move(v);
    return &slot;
  }
  bool put(json&& v) {
    if (build_) add(std::move(v));
    return true;
  }
  // Containers below the innermost one are not changed while it is open, so the pointers to
  // them stay valid.
  bool open(json::value_t type) {
    if (!build_) return true;
    json* opened = add(json(type));
    if (depth_ < kShallow) {
      shallow_[depth_] = opened;
    } else {
      deep_.push_back(opened);
    }
    ++depth_;
    return true;
  }
  bool close() {
    if (!build_) return true;
    if (depth_ > kShallow) deep_.pop_back();
    --depth_;
    return true;
  }

  const bool build_;
  json root_;
  // The open containers, innermost last: the first kShallow in place (no allocation for the
  // usual document), deeper ones in deep_.
  static constexpr std::size_t kShallow = 16;
  std::array<json*, kShallow> shallow_{};
  std::vector<json*> deep_;
  std::size_t depth_ = 0;
  json::string_t key_;  // the key of the next object member
};

bool run(std::string_view text, Builder& builder) {
  // RapidJSON's streams end at a NUL byte; nlohmann reads past it (and rejects it).
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) return false;
  // The reader's stack (strings and numbers being read, open containers) starts in `buffer`:
  // no allocation for a small document.
  using Pool = rapidjson::MemoryPoolAllocator<rapidjson::CrtAllocator>;
  alignas(std::max_align_t) char buffer[1024];
  Pool pool(buffer, sizeof buffer);
  rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, Pool> reader(&pool, 256);
  rapidjson::MemoryStream stream(text.data(), text.size());
  // Iterative: no recursion however deeply the document nests.
  constexpr unsigned kFlags = rapidjson::kParseIterativeFlag |
                              rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseNumbersAsStringsFlag;
  return !reader.Parse<kFlags>(stream, builder).IsError();
}

// ---- writing ----

// A JSON string as nlohmann writes it with ensure_ascii off. Returns false, leaving `out` as it
// was, when `s` holds a byte >= 0x80: nlohmann checks its UTF-8 (and words the error).
bool append_ascii_string(std::string& out, const std::string& s) {
  if (std::any_of(s.begin(), s.end(),
                  [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    return false;
  }
  out += '"';
  escape_json(s, out);
  out += '"';
  return true;
}

void append_string(std::string& out, const std::string& s) {
  if (!append_ascii_string(out, s))
    out += json(s).dump(-1, ' ', false, json::error_handler_t::strict);
}

template <typename Integer>
void append_integer(std::string& out, Integer v) {
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, r.ptr);
}

void append_newline(std::string& out, int indent, int depth) {
  out += '\n';
  out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(depth), ' ');
}

// A container at nesting `depth` as nlohmann lays it out: `open`, the items (each on its own line
// when indent >= 0) separated by commas, `close`; "[]" or "{}" when empty. `append_item` writes
// one item and returns false where only nlohmann can.
template <typename Items, typename AppendItem>
bool append_container(std::string& out, const Items& items, char open, char close, int indent,
                      int depth, AppendItem append_item) {
  out += open;
  bool first = true;
  for (const auto& item : items) {
    if (!first) out += ',';
    first = false;
    if (indent >= 0) append_newline(out, indent, depth + 1);
    if (!append_item(item)) return false;
  }
  if (indent >= 0 && !first) append_newline(out, indent, depth);
  out += close;
  return true;
}

// Appends `v` at nesting `depth` (indent < 0: compact). Returns false at a binary or discarded
// value, which only nlohmann writes.
bool append_value(std::string& out, const json& v, int indent, int depth) {
  switch (v.type()) {
    case json::value_t::null: out += "null"; return true;
    case json::value_t::boolean: out += v.get<bool>() ? "true" : "false"; return true;
    case json::value_t::number_integer:
      append_integer(out, v.get_ref<const json::number_integer_t&>());
      return true;
    case json::value_t::number_unsigned:
      append_integer(out, v.get_ref<const json::number_unsigned_t&>());
      return true;
    case json::value_t::number_float: out += v.dump(); return true;
    case json::value_t::string: append_string(out, v.get_ref<const json::string_t&>()); return true;
    case json::value_t::array:
      return append_container(
          out, v.get_ref<const json::array_t&>(), '[', ']', indent, depth,
          [&](const json& element) { return append_value(out, element, indent, depth + 1); });
    case json::value_t::object:
      return append_container(out, v.get_ref<const json::object_t&>(), '{', '}', indent, depth,
                              [&](const auto& member) {
                                append_string(out, member.first);
                                out += indent >= 0 ? ": " : ":";
                                return append_value(out, member.second, indent, depth + 1);
                              });
    default: return false;  // binary, discarded
  }
}

}  // namespace

std::optional<json> parse_simple(std::string_view text) { return SimpleParser(text).document(); }

std::optional<json> parse_fast(std::string_view text) {
  if (auto value = parse_simple(text)) return value;
  Builder builder(/*build=*/true);
  if (!run(text, builder)) return std::nullopt;
  return builder.take();
}

json parse_json(std::string_view text) {
  if (auto value = parse_fast(text)) return std::move(*value);
  return json::parse(text);
}

bool accepts_json(std::string_view text) {
  Builder checker(/*build=*/false);
  return run(text, checker) || json::accept(text);
}

void escape_json(std::string_view s, std::string& out) {
  static const char* hex = "0123456789abcdef";
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size(); ++i) {
    i = util::skip_plain_words(s, i, [](std::uint64_t w) {
      return !util::has_byte_below(w, 0x20) && !util::has_byte(w, '"') && !util::has_byte(w, '\\');
    });
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        const char escape[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
        out.append(escape, sizeof escape);
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
}

void append_json(std::string& out, const json& value, int indent) {
  const std::size_t mark = out.size();
  try {
    if (append_value(out, value, indent, 0)) return;
  } catch (...) {
    out.resize(mark);
    throw;
  }
  out.resize(mark);
  out += value.dump(indent, ' ', false, json::error_handler_t::strict);
}

std::string dump_json(const json& value, int indent) {
  std::string out;
  append_json(out, value, indent);
  return out;
}

}  // namespace lockdb::detail
