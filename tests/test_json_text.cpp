// The write path's JSON text (json_text.hpp) against nlohmann. Parsing: where parse_fast (or its
// first pass, parse_simple) gives a value, nlohmann::json::parse gives the same value with the
// same number types; where nlohmann rejects the text, both give nothing. Writing: dump_json gives
// nlohmann's dump, byte for byte, or its exception. Fixed cases at the edges, then generated
// documents (and, for the parser, byte-level mutations of them).
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "json_text.hpp"
#include "log_format.hpp"

using lockdb::detail::accepts_json;
using lockdb::detail::append_json;
using lockdb::detail::dump_json;
using lockdb::detail::parse_fast;
using lockdb::detail::parse_json;
using lockdb::detail::parse_simple;
using nlohmann::json;

namespace {

// Equal values and equal types, numbers included (json's == takes 0 and 0u as equal).
bool identical(const json& a, const json& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case json::value_t::array:
      if (a.size() != b.size()) return false;
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (!identical(a[i], b[i])) return false;
      }
      return true;
    case json::value_t::object:
      if (a.size() != b.size()) return false;
      for (auto it = a.begin(), jt = b.begin(); it != a.end(); ++it, ++jt) {
        if (it.key() != jt.key() || !identical(*it, *jt)) return false;
      }
      return true;
    case json::value_t::number_float: {
      const double x = a.get<double>(), y = b.get<double>();
      return std::memcmp(&x, &y, sizeof x) == 0;  // -0.0 and 0.0 differ
    }
    default: return a == b;
  }
}

struct Agreement {
  bool fast = false;    // parse_fast gave a value
  bool simple = false;  // so did its first pass
};

// What parse_fast and parse_simple must do with `text`: agree with nlohmann or decline.
Agreement check_agrees(const std::string& text) {
  INFO("text: " << json(text).dump(-1, ' ', true, json::error_handler_t::replace));
  const json reference = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const auto fast = parse_fast(text);
  const auto simple = parse_simple(text);
  if (reference.is_discarded()) {
    CHECK_FALSE(fast.has_value());
    CHECK_FALSE(simple.has_value());
    CHECK_FALSE(accepts_json(text));
    return {};
  }
  CHECK(accepts_json(text));
  if (fast) CHECK(identical(*fast, reference));
  if (simple) CHECK(identical(*simple, reference));
  if (simple) CHECK(fast.has_value());
  return {fast.has_value(), simple.has_value()};
}

// dump_json(value, indent) is nlohmann's dump(indent, ' ', false, strict): the same text, or
// the same exception.
void check_dump(const json& value) {
  for (int indent : {-1, 0, 2, 4}) {
    INFO("indent " << indent);
    std::string expected, error;
    try {
      expected = value.dump(indent, ' ', false, json::error_handler_t::strict);
    } catch (const json::exception& e) {
      error = e.what();
    }
    if (error.empty()) {
      CHECK(dump_json(value, indent) == expected);
    } else {
      std::string out = "kept";
      try {
        append_json(out, value, indent);
        FAIL("append_json wrote what nlohmann refuses: " << error);
      } catch (const json::type_error& e) {
        CHECK(std::string(e.what()) == error);
      }
      CHECK(out == "kept");  // nothing half-written is left
    }
  }
}

// A random document: nested containers, strings with escapes and multi-byte characters (only
// printable ASCII, tab and newline with `ascii`: what parse_simple reads itself), and numbers at
// the edges of each type.
json random_value(std::mt19937_64& rng, int depth, bool ascii = false) {
  std::uniform_int_distribution<int> pick(0, depth > 3 ? 5 : 7);
  switch (pick(rng)) {
    case 0: return nullptr;
    case 1: return rng() % 2 == 0;
    case 2: {
      static const std::int64_t edges[] = {0, 1, -1, INT64_MIN, INT64_MAX, -4294967296, 4294967295};
      if (rng() % 3 == 0) return edges[rng() % 7];
      return static_cast<std::int64_t>(rng()) >> (rng() % 64);
    }
    case 3: return rng() % 2 ? UINT64_MAX - rng() % 3 : rng() >> (rng() % 64);
    case 4: {
      double d;
      std::uint64_t bits = rng();
      std::memcpy(&d, &bits, sizeof d);
      if (!std::isfinite(d)) d = 0.1;
      return rng() % 2 ? d
                       : static_cast<double>(static_cast<std::int64_t>(rng() % 2000) - 1000) / 8;
    }
    case 5: {
      static const char* pieces[] = {"a",  "key",   "\"",   "\\",       "/",
                                     "\n", "\t",    "\x01", "é",        "€",
                                     "𝄞",  " ",     "\x7f", "\xc3\xa9", "\xf4\x8f\xbf\xbf",
                                     "\0", "\u2028"};
      static const char* ascii_pieces[] = {"a", "key", "\"", "\\", "/", "\n", "\t", " "};
      std::string s;
      for (int n = static_cast<int>(rng() % 6); n > 0; --n) {
        const char* piece = ascii ? ascii_pieces[rng() % std::size(ascii_pieces)]
                                  : pieces[rng() % std::size(pieces)];
        s += *piece ? std::string(piece) : std::string(1, '\0');
      }
      return s;
    }
    case 6: {
      json a = json::array();
      for (int n = static_cast<int>(rng() % 5); n > 0; --n)
        a.push_back(random_value(rng, depth + 1, ascii));
      return a;
    }
    default: {
      json o = json::object();
      for (int n = static_cast<int>(rng() % 5); n > 0; --n) {
        o[random_value(rng, 10, ascii).dump()] = random_value(rng, depth + 1, ascii);
      }
      return o;
    }
  }
}

}  // namespace

TEST_CASE("parse_fast: numbers get the types and values nlohmann gives", "[json_text]") {
  for (const char* text : {"0",
                           "-0",
                           "1",
                           "-1",
                           "18446744073709551615",
                           "18446744073709551616",
                           "-9223372036854775808",
                           "-9223372036854775809",
                           "9223372036854775808",
                           "0.1",
                           "-0.0",
                           "1e2",
                           "1E-2",
                           "1.5e+3",
                           "4.9e-324",
                           "2.2250738585072011e-308",
                           "1.7976931348623157e308",
                           "1e400",
                           "-1e400",
                           "1e-400",
                           "123456789012345678901234567890",
                           "0.30000000000000004",
                           "01",
                           "1.",
                           ".5",
                           "-",
                           "+1",
                           "1e",
                           "0x10",
                           "NaN",
                           "Infinity"}) {
    check_agrees(text);
  }
  // The fast path, not the fallback, gave these (the common cases must not silently fall back).
  REQUIRE(parse_fast("-0")->is_number_integer());
  REQUIRE(parse_fast("7")->is_number_unsigned());
  REQUIRE(parse_fast("-7")->is_number_integer());
  REQUIRE(parse_fast("18446744073709551616")->is_number_float());
  REQUIRE(parse_fast("1.0")->is_number_float());
  REQUIRE(parse_fast("{\"n\": 12}")->at("n").get<std::uint64_t>() == 12);
  // The first pass reads numbers itself.
  REQUIRE(parse_simple("-0")->is_number_integer());
  REQUIRE(parse_simple("7")->is_number_unsigned());
  REQUIRE(parse_simple("18446744073709551616")->is_number_float());
  REQUIRE(parse_simple("[1.5e3, -2E-2]") == json::parse("[1.5e3, -2E-2]"));
  REQUIRE(parse_simple(" {\"n\": 12}\n")->at("n").get<std::uint64_t>() == 12);
}

TEST_CASE("parse_fast: strings and escapes and UTF-8 as nlohmann checks them", "[json_text]") {
  for (const std::string& text :
       std::vector<std::string>{"\"\"",
                                "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
                                "\"\\u0000\"",
                                "\"\\u00e9\"",
                                "\"\\uD83D\\uDE00\"",  // a surrogate pair
                                "\"\\uD800\"",
                                "\"\\uDC00\"",
                                "\"\\uDFFF\"",
                                "\"\\uD800\\u0041\"",
                                "\"\\uD800\\uD800\"",
                                "\"\\uDC00\\uD800\"",
                                "\"\\x\"",
                                "\"\\u12\"",
                                "\"\x01\"",
                                "\"\x1f\"",
                                "\"\x7f\"",
                                "\"\xc3\xa9\"",
                                "\"\xc0\xaf\"",          // overlong '/'
                                "\"\xe0\x80\xaf\"",      // overlong, 3 bytes
                                "\"\xed\xa0\x80\"",      // an encoded surrogate
                                "\"\xed\x9f\xbf\"",      // U+D7FF
                                "\"\xf4\x8f\xbf\xbf\"",  // U+10FFFF
                                "\"\xf4\x90\x80\x80\"",  // beyond U+10FFFF
                                "\"\xc3\"",
                                "\"\x80\"",
                                "\"\xff\"",
                                "\"abc",
                                "{\"\\uDC00\": 1}",
                                "{\"\xc3\": 1}"}) {
    check_agrees(text);
  }
  // The first pass decodes the two-character escapes and leaves \u escapes and the bytes below
  // 0x20 or from 0x80 to RapidJSON's reader.
  REQUIRE(parse_simple("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\x7f\"")->get<std::string>() ==
          "a\"b\\c/d\b\f\n\r\t\x7f");
  REQUIRE_FALSE(parse_simple("\"\\u0041\""));
  REQUIRE(parse_fast("\"\\u0041\"")->get<std::string>() == "A");
  REQUIRE_FALSE(parse_simple("\"\xc3\xa9\""));
  REQUIRE(parse_fast("\"\xc3\xa9\"")->get<std::string>() == "\xc3\xa9");
  REQUIRE(parse_fast("\"\\uD83D\\uDE00\"")->get<std::string>() == "\xf0\x9f\x98\x80");
  REQUIRE(parse_fast(std::string("\"\\u0000\"", 8))->get<std::string>() == std::string(1, '\0'));
}

TEST_CASE("parse_fast: documents and whitespace and what surrounds the value", "[json_text]") {
  for (const std::string& text :
       std::vector<std::string>{"{}",
                                "[]",
                                " \t\r\n{\"a\": [1, {\"b\": null}], \"c\": true} \n",
                                "{\"a\":1,\"a\":2}",
                                "[1,2",
                                "[1,]",
                                "{\"a\" 1}",
                                "{a: 1}",
                                "{\"a\":1,}",
                                "nul",
                                "true false",
                                "[] []",
                                "\xef\xbb\xbf{}",  // a byte order mark
                                "{} \v",
                                "// c\n{}",
                                "/* c */ 1",
                                "",
                                " ",
                                std::string("{}\0", 3),
                                std::string("[\"a\0b\"]", 7),
                                std::string("1\0x", 3)}) {
    check_agrees(text);
  }
  REQUIRE(parse_fast("{\"a\":1,\"a\":2}")->at("a") == 2);  // a later duplicate wins, as in nlohmann
  // Siblings after closing containers at every depth around where the parser's stack of open
  // containers moves to the heap (16).
  // The first pass reads 64 levels and leaves deeper documents to RapidJSON's reader.
  for (int depth = 1; depth <= 70; ++depth) {
    INFO("depth " << depth);
    std::string text = std::string(static_cast<std::size_t>(depth), '[') + "1";
    for (int d = 1; d < depth; ++d) text += "],{\"k\":" + std::to_string(d) + "}";
    text += "]";
    const Agreement a = check_agrees(text);
    REQUIRE(a.fast);
    REQUIRE(a.simple == (depth <= 64));
  }
  // Deeply nested: the parser does not recurse (nor does nlohmann's destructor).
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const auto nested = parse_fast(deep);
  REQUIRE(nested.has_value());
  std::size_t depth = 0;
  for (const json* j = &*nested; !j->empty(); j = &(*j)[0]) ++depth;
  REQUIRE(depth == 100000 - 1);
}

TEST_CASE("parse_fast: generated documents and their mutations agree with nlohmann",
          "[json_text]") {
  std::mt19937_64 rng(20261201);
  for (const bool ascii : {false, true}) {
    INFO("ASCII strings only: " << ascii);
    int fast = 0, simple = 0, valid = 0;
    for (int i = 0; i < 4000; ++i) {
      const json doc = random_value(rng, 0, ascii);
      std::string text = doc.dump(rng() % 2 ? 2 : -1, ' ', rng() % 3 == 0);
      const Agreement a = check_agrees(text);
      fast += a.fast;
      simple += a.simple;
      ++valid;
      for (int m = 0; m < 4; ++m) {  // one byte changed, inserted, removed, or the text cut short
        std::string bad = text;
        const std::size_t at = bad.empty() ? 0 : rng() % bad.size();
        static const char bytes[] = {'"',    '\\',   '{',    '}',    '[',  ']', ',',  ':',
                                     '0',    '-',    'e',    '.',    'u',  ' ', '\t', '/',
                                     '\x80', '\xed', '\xa0', '\xc3', '\0', 'x'};
        const char byte = bytes[rng() % sizeof bytes];
        switch (m) {
          case 0:
            if (!bad.empty()) bad[at] = byte;
            break;
          case 1: bad.insert(at, 1, byte); break;
          case 2:
            if (!bad.empty()) bad.erase(at, 1);
            break;
          default: bad.resize(at); break;
        }
        check_agrees(bad);
      }
    }
    // Generated documents hold no text the fast path declines (no NUL outside strings, no BOM, no
    // number beyond a double's range), so it parsed every one; the first pass parsed every one
    // whose strings are printable ASCII, tab and newline (escaped as \t and \n).
    REQUIRE(fast == valid);
    if (ascii) REQUIRE(simple == valid);
  }
}

TEST_CASE("parse_json: nlohmann's error for text it rejects", "[json_text]") {
  REQUIRE(parse_json("{\"a\": [1, 2]}")["a"][1] == 2);
  try {
    (void)parse_json("{\"a\": [1, 2}");
    FAIL("parse_json accepted a broken document");
  } catch (const json::parse_error& e) {
    REQUIRE(e.byte == 12);
  }
  REQUIRE_THROWS_AS(parse_json("\"\\uDC00\""), json::parse_error);
  REQUIRE(parse_json("\xef\xbb\xbf[1]") == json::array({1}));  // nlohmann skips a BOM
}

TEST_CASE("dump_json: literals and numbers as nlohmann writes them", "[json_text]") {
  const double inf = std::numeric_limits<double>::infinity();
  for (const json& value : std::vector<json>{nullptr,
                                             true,
                                             false,
                                             0,
                                             -0,
                                             1,
                                             -1,
                                             INT64_MIN,
                                             INT64_MAX,
                                             0u,
                                             UINT64_MAX,
                                             0.0,
                                             -0.0,
                                             1.0,
                                             -1.5,
                                             0.1,
                                             1e20,
                                             1e21,
                                             1e-5,
                                             1e-7,
                                             123456789.125,
                                             5e-324,
                                             std::numeric_limits<double>::max(),
                                             inf,
                                             -inf,
                                             std::numeric_limits<double>::quiet_NaN()}) {
    check_dump(value);
  }
  REQUIRE(dump_json(json(-7), -1) == "-7");
  REQUIRE(dump_json(json(1.0), -1) == "1.0");
}

TEST_CASE("dump_json: strings and keys as nlohmann escapes and checks them", "[json_text]") {
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls += static_cast<char>(c);
  for (const std::string& s : std::vector<std::string>{
           "", "plain", controls, "\"quoted\" \\ back/slash", "\x7f", "caf\xc3\xa9",
           "\xf0\x9d\x84\x9e", "\xe2\x80\xa8", "\xc3",  // cut short
           "ab\xff",                                    // never UTF-8
           "\xc0\xaf",                                  // overlong
           "\xed\xa0\x80",                              // a surrogate
           "ok \x01 then \xc3\x28"}) {
    check_dump(json(s));
    check_dump(json::object({{s, 1}}));               // as a key
    check_dump(json::array({1, s, json::object()}));  // inside a document
  }
  REQUIRE(dump_json(json("a\x01\"\n"), -1) == "\"a\\u0001\\\"\\n\"");
}

TEST_CASE("dump_json: containers and layout at any indent", "[json_text]") {
  const json doc = {{"a", json::array()},
                    {"b", json::object()},
                    {"c", {1, {2, {3, json::object({{"d", nullptr}})}}}},
                    {"é", {{"x", 1.5}, {"y", "z"}}}};
  check_dump(doc);
  check_dump(json::array());
  check_dump(json::object());
  check_dump(json::array({json::array({json::array()})}));
  REQUIRE(dump_json(json::object({{"n", 3}}), 2) == "{\n  \"n\": 3\n}");
  // What only nlohmann writes, written by nlohmann: binary values and discarded ones.
  check_dump(json::binary({1, 2, 3}, 42));
  check_dump(json::object({{"bin", json::binary({255})}, {"n", 1}}));
  check_dump(json::array({1, json(json::value_t::discarded)}));
}

TEST_CASE("dump_json: generated documents are written as nlohmann writes them", "[json_text]") {
  std::mt19937_64 rng(20261202);
  for (int i = 0; i < 3000; ++i) check_dump(random_value(rng, 0));
}

// escape_json and valid_utf8 skip 8 plain bytes at a time: a byte that matters is found at every
// position of strings around that width, and next to every other.
TEST_CASE("escape_json and valid_utf8 see a special byte at any position", "[json_text]") {
  const std::string specials[] = {"\"", "\\", std::string(1, '\0'), "\x01", "\x1f", "\n", "\t"};
  for (std::size_t len = 1; len <= 40; ++len) {
    for (std::size_t at = 0; at < len; ++at) {
      INFO("length " << len << ", position " << at);
      for (const std::string& special : specials) {
        std::string s(len, 'a');
        s.replace(at, 1, special);
        std::string out;
        lockdb::detail::escape_json(s, out);
        REQUIRE('"' + out + '"' == json(s).dump());
      }
      std::string plain(len, 'a');
      std::string out;
      lockdb::detail::escape_json(plain, out);
      REQUIRE(out == plain);

      std::string bad = plain;
      bad[at] = '\xff';
      REQUIRE_FALSE(lockdb::detail::log_format::valid_utf8(bad));
      REQUIRE(lockdb::detail::log_format::valid_utf8(plain));
      // A complete multi-byte sequence starting at `at` is valid; cut short by the end, it is not.
      for (const std::string seq : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"}) {
        std::string with = plain.substr(0, at) + seq + plain.substr(at);
        REQUIRE(lockdb::detail::log_format::valid_utf8(with));
        REQUIRE_FALSE(lockdb::detail::log_format::valid_utf8(with.substr(0, at + seq.size() - 1)));
      }
    }
  }
}
