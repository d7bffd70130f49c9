// Parsing a JSON document into nlohmann::json on the write path (atomic_json_update, the store's
// update and get): the value nlohmann::json::parse gives, for half its instructions (counted
// with callgrind on atomic_json_update's counter file: ~3,500 per parse, ~1,800 here).
//
// nlohmann's parser allocates for every token (its lexer's buffers) and asks the C library for
// the locale on every call; for the small documents these files hold, that was the largest
// part of an update's CPU time outside the kernel. RapidJSON's reader (already the history log's parser)
// reads the text without allocating, and parse_fast builds the nlohmann::json from its events.
// The two must agree exactly, and they do by construction where it matters:
//   - numbers are typed as nlohmann types them (no sign: unsigned, '-': signed, '.', 'e' or a
//     64-bit overflow: double) and converted by std::from_chars, correctly rounded like the
//     strtod nlohmann calls; the grammar check stays RapidJSON's, which is JSON's;
//   - strings: RapidJSON validates the UTF-8 (overlong forms, surrogates, beyond U+10FFFF);
//     the one escape it accepts and nlohmann does not, a lone low surrogate (\uDC00), is caught
//     in the decoded string;
//   - a later duplicate key replaces the earlier one, as in nlohmann.
// Everything else (any error, a NUL byte, a byte order mark, a number out of a double's range)
// returns nullopt, and the caller parses with nlohmann, which gives the value or the error
// message users see. tests/test_json_parse.cpp checks the agreement on generated documents.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string_view>

namespace lockdb::detail {

// nlohmann::json::parse(text)'s value, or nullopt when this parser cannot promise it (above).
// Never throws except std::bad_alloc.
std::optional<nlohmann::json> parse_fast(std::string_view text);

// nlohmann::json::parse(text): the value, or nlohmann's parse_error (thrown by nlohmann's own
// parser, so the message and byte position are its).
nlohmann::json parse_json(std::string_view text);

// nlohmann::json::accept(text).
bool accepts_json(std::string_view text);

}  // namespace lockdb::detail
