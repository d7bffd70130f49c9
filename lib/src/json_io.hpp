// JSON text in and out of nlohmann::json, with lockdb's limits: every value the library writes
// (key files, plain files written by the files.hpp helpers, log records) goes through dump() or
// append(), and every document it reads (key files, plain files, the marker, log headers)
// through parse() or accepts(). The history log's records are read with RapidJSON instead
// (log_reader.cpp: it pays there), under the same depth limit.
//
// The limits, and why:
//   - nesting: at most kMaxDepth levels of arrays and objects. nlohmann's parser and destructor
//     do not recurse, but its serializer, copy and comparison do, one stack frame per level: a
//     document 75,000 levels deep overflows an 8 MB stack. A deeper document read is refused
//     (parse_error), a deeper value written is refused (ValueError), so no accepted document
//     ever recurses beyond kMaxDepth levels.
//   - numbers: NaN and +-infinity have no JSON text (nlohmann writes them as null, which would
//     store a value other than the one given): refused on writing.
//   - binary values (nlohmann's binary type) have no JSON text either: refused on writing.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

namespace lockdb::detail::json_io {

// The deepest nesting of arrays and objects lockdb reads or writes: "[[1]]" nests 2 levels,
// "1" none. README.md and the headers of store.hpp / files.hpp document it.
inline constexpr int kMaxDepth = 512;

// nlohmann::json::parse(text): the value, or a nlohmann::json::parse_error: nlohmann's own for
// a syntax error (with its byte position); byte 0 for a number beyond a double's range and for
// a document that nests deeper than kMaxDepth ("the document nests deeper than 512 levels").
// Never recurses deeper than kMaxDepth.
nlohmann::json parse(std::string_view text);

// Whether parse(text) gives a value, without building it.
bool accepts(std::string_view text);

// A value dump()/append() refuse: nesting too deep, a NaN or infinite number, a binary value, a
// discarded value, or a string that is not valid UTF-8. what() says which.
class ValueError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Appends value.dump(indent) (nlohmann's text, strict UTF-8) to `out`, after checking the value
// within the limits above. Throws ValueError (then `out` is as it was).
void append(std::string& out, const nlohmann::json& value, int indent);
// append() into a new string.
std::string dump(const nlohmann::json& value, int indent);

// Appends the escaped text of the string `s` as nlohmann's dump escapes it (ensure_ascii off:
// '"' '\\' \b \f \n \r \t as two-character escapes, other bytes below 0x20 as \u00xx, the rest
// as is), without the quotes. Invalid UTF-8 becomes U+FFFD: callers that write `s` check it first.
void append_escaped(std::string& out, std::string_view s);

}  // namespace lockdb::detail::json_io
