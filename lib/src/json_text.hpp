// JSON text in and out of nlohmann::json on the write path (atomic_json_update, the store's
// writes and reads, the history log's values): the same values and the same bytes as
// nlohmann::json::parse and dump, for a fraction of their instructions.
//
// Reading. nlohmann's parser allocates for every token (its lexer's buffers) and asks the C
// library for the locale on every call; for the small documents these files hold, that was the
// largest part of an update's CPU time outside the kernel (callgrind, atomic_json_update of a
// counter file: ~3,500 instructions per parse; ~1,800 here). RapidJSON's reader (already the
// history log's parser) reads the text without allocating, and parse_fast builds the
// nlohmann::json from its events. The two must agree exactly, and they do by construction:
//   - numbers are typed as nlohmann types them (no sign: unsigned, '-': signed, '.', 'e' or a
//     64-bit overflow: double) and converted by std::from_chars, correctly rounded like the
//     strtod nlohmann calls; the grammar check stays RapidJSON's, which is JSON's;
//   - strings: RapidJSON validates the UTF-8 (overlong forms, surrogates, beyond U+10FFFF);
//     the one escape it accepts and nlohmann does not, a lone low surrogate (\uDC00), is caught
//     in the decoded string;
//   - a later duplicate key replaces the earlier one, as in nlohmann.
// Everything else (any error, a NUL byte, a byte order mark, a number out of a double's range)
// returns nullopt, and the caller parses with nlohmann, which gives the value or the error
// message users see.
// Before RapidJSON, parse_simple tries a recursive descent that builds the nlohmann::json as it
// reads (a counter file: ~1,100 instructions instead of ~1,700 with RapidJSON's events). It reads
// what most files hold: printable-ASCII strings with the two-character escapes, numbers (typed
// and converted as above), up to 64 levels of nesting; it declines a \u escape, any other byte
// below 0x20 or from 0x80, deeper nesting and every error, and RapidJSON's reader goes on.
//
// Writing. dump_json writes nlohmann's layout itself (its serializer also asks for the locale and
// writes through a buffer object per call) for containers, literals, integers and ASCII strings,
// and hands nlohmann what needs its rules: each double (its shortest round-trip form), each
// string holding a byte >= 0x80 (its UTF-8 check and error), and a document holding a binary or
// discarded value (written by nlohmann whole).
// tests/test_json_text.cpp compares both directions with nlohmann on edge cases and on generated
// documents.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string_view>

namespace lockdb::detail {

// nlohmann::json::parse(text)'s value, or nullopt when this parser cannot promise it (above).
// Never throws except std::bad_alloc.
std::optional<nlohmann::json> parse_fast(std::string_view text);
// parse_fast's first pass, for the documents most files hold: the same value, or nullopt much
// more often (see json_text.cpp: SimpleParser), then parse_fast goes on with RapidJSON's reader.
std::optional<nlohmann::json> parse_simple(std::string_view text);

// nlohmann::json::parse(text): the value, or nlohmann's parse_error (thrown by nlohmann's own
// parser, so the message and byte position are its).
nlohmann::json parse_json(std::string_view text);

// nlohmann::json::accept(text).
bool accepts_json(std::string_view text);

// The canonical JSON string escaping, nlohmann's with ensure_ascii off: '"' '\\' \b \f \n \r \t
// as two-character escapes, other bytes below 0x20 as \u00xx (lowercase hex), everything else
// (UTF-8 included) as is. Appends the escaped text of `s`, without quotes, to `out`; checks no
// UTF-8.
void escape_json(std::string_view s, std::string& out);

// Appends value.dump(indent, ' ', false, error_handler_t::strict) to `out`: the same text, and
// on invalid UTF-8 in a string the same nlohmann::json::type_error (then `out` is as it was).
void append_json(std::string& out, const nlohmann::json& value, int indent);
// value.dump(indent, ' ', false, error_handler_t::strict).
std::string dump_json(const nlohmann::json& value, int indent);

}  // namespace lockdb::detail
