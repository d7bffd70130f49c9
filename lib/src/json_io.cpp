#include "json_io.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace lockdb::detail::json_io {
namespace {

using json = nlohmann::json;

const std::string& too_deep_cause() {
  static const std::string cause =
      "the document nests deeper than " + std::to_string(kMaxDepth) + " levels";
  return cause;
}

// Stops nlohmann's parser at the first array or object below kMaxDepth levels. `depth` is the
// number of arrays and objects around the one starting.
bool limit_depth(int depth, json::parse_event_t event, json& /*parsed*/) {
  if (depth >= kMaxDepth &&
      (event == json::parse_event_t::array_start || event == json::parse_event_t::object_start)) {
    throw json::parse_error::create(101, 0, too_deep_cause(), nullptr);
  }
  return true;
}

// A SAX handler that builds nothing and counts the nesting (accepts()).
class DepthChecker final : public nlohmann::json_sax<json> {
 public:
  bool null() override { return true; }
  bool boolean(bool /*val*/) override { return true; }
  bool number_integer(number_integer_t /*val*/) override { return true; }
  bool number_unsigned(number_unsigned_t /*val*/) override { return true; }
  bool number_float(number_float_t /*val*/, const string_t& /*s*/) override { return true; }
  bool string(string_t& /*val*/) override { return true; }
  bool binary(binary_t& /*val*/) override { return true; }
  bool start_object(std::size_t /*elements*/) override { return ++depth_ <= kMaxDepth; }
  bool key(string_t& /*val*/) override { return true; }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t /*elements*/) override { return ++depth_ <= kMaxDepth; }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& /*ex*/) override {
    return false;
  }

 private:
  int depth_ = 0;
};

// What a single value (not its members) has that JSON text cannot hold; nullptr if nothing.
const char* own_problem(const json& v) {
  switch (v.type()) {
    case json::value_t::number_float:
      return std::isfinite(v.get<double>()) ? nullptr
                                            : "the value holds a NaN or infinite number, "
                                              "which JSON cannot represent";
    case json::value_t::binary:
      return "the value holds a binary value, which JSON cannot represent";
    case json::value_t::discarded: return "the value is a discarded json";
    default: return nullptr;
  }
}

// Why `root` cannot be written, or empty. Walks the tree with an explicit stack (one entry per
// level, at most kMaxDepth), so a value of any depth is checked without recursion.
std::string problem(const json& root) {
  if (const char* p = own_problem(root)) return p;
  std::vector<std::pair<json::const_iterator, json::const_iterator>> levels;
  if (root.is_structured()) levels.emplace_back(root.cbegin(), root.cend());
  while (!levels.empty()) {
    auto& [next, end] = levels.back();
    if (next == end) {
      levels.pop_back();
      continue;
    }
    const json& v = *next;
    ++next;
    if (const char* p = own_problem(v)) return p;
    if (v.is_structured()) {
      if (levels.size() >= static_cast<std::size_t>(kMaxDepth)) {
        return "the value nests deeper than " + std::to_string(kMaxDepth) + " levels";
      }
      levels.emplace_back(v.cbegin(), v.cend());
    }
  }
  return {};
}

}  // namespace

json parse(std::string_view text) {
  try {
    return json::parse(text, limit_depth);
  } catch (const json::out_of_range& e) {  // a number beyond a double's range ("1e400")
    const std::string what = e.what();
    const std::size_t end = what.find("] ");
    throw json::parse_error::create(e.id, 0, end == std::string::npos ? what : what.substr(end + 2),
                                    nullptr);
  }
}

bool accepts(std::string_view text) {
  DepthChecker checker;
  return json::sax_parse(text, &checker);
}

void append(std::string& out, const json& value, int indent) {
  if (std::string p = problem(value); !p.empty()) throw ValueError(p);
  try {
    // The serializer recurses once per level: at most kMaxDepth, checked above.
    out += value.dump(indent, ' ', false, json::error_handler_t::strict);
  } catch (const json::type_error& e) {  // a string that is not UTF-8
    throw ValueError(e.what());
  }
}

std::string dump(const json& value, int indent) {
  std::string out;
  append(out, value, indent);
  return out;
}

void append_escaped(std::string& out, std::string_view s) {
  // Printable ASCII other than '"' and '\\' is its own escaped text (most keys and ops).
  if (std::all_of(s.begin(), s.end(),
                  [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; })) {
    out += s;
    return;
  }
  const std::string quoted =
      json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  out.append(quoted, 1, quoted.size() - 2);
}

}  // namespace lockdb::detail::json_io
