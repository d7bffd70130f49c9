#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "json_io.hpp"
#include "log_format.hpp"
#include "log_reader.hpp"
#include "log_writer.hpp"
#include "os.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using lockdb::History;
using lockdb::LogPosition;
using lockdb::Query;
using lockdb::Record;
using lockdb::detail::LogWriter;
using lockdb::test::Child;
using lockdb::test::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;
namespace fmt = lockdb::detail::log_format;

namespace {

using Clock = std::chrono::system_clock;
const Clock::time_point kT0 = *fmt::parse_time("2026-11-30T12:00:00.000000Z");

// A directory History accepts: the store marker and an empty log directory.
fs::path make_store(const TempDir& dir) {
  lockdb::test::write_text(dir / "lockdb-store.json", R"({"format":"lockdb-store","version":1})");
  fs::create_directories(dir / "log");
  return dir.path();
}

std::string line_for(std::string_view key, std::string_view op, const json* value,
                     Clock::time_point t, std::optional<std::string_view> prev = std::nullopt,
                     std::optional<std::string_view> version = std::nullopt) {
  lockdb::detail::RecordFields f;
  f.time = t;
  f.key = key;
  f.op = op;
  f.value = value;
  f.prev_version = prev;
  f.version = version;
  return lockdb::detail::render_record(f);
}

void put(LogWriter& log, std::string_view key, const json& value, Clock::time_point t,
         std::string_view op = "put") {
  const std::string version = "v" + value.dump();
  log.append(line_for(key, op, &value, t, std::nullopt, version));
}

void erase(LogWriter& log, std::string_view key, Clock::time_point t) {
  log.append(line_for(key, "erase", nullptr, t));
}

std::vector<std::string> keys_of(const std::vector<Record>& rs) {
  std::vector<std::string> out;
  for (const auto& r : rs) out.push_back(r.key);
  return out;
}

std::vector<json> values_of(const std::vector<Record>& rs) {
  std::vector<json> out;
  for (const auto& r : rs) out.push_back(r.value ? *r.value : json("<erased>"));
  return out;
}

std::vector<std::string> lines_of(const fs::path& file) {
  std::vector<std::string> out;
  std::istringstream in(lockdb::test::read_text(file));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<fs::path> log_files(const fs::path& store, std::string_view ending) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(store / "log")) {
    if (e.path().filename().string().ends_with(ending)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void append_raw(const fs::path& file, const std::string& bytes) {
  lockdb::test::write_text(file, lockdb::test::read_text(file) + bytes);
}

struct FaultGuard {
  ~FaultGuard() { lockdb::os::clear_faults(); }
};

// {"w": w, "i": i} records written by the helper, as (w, i).
std::pair<int, long> writer_record(const Record& r) {
  return {r.value->at("w").get<int>(), r.value->at("i").get<long>()};
}

}  // namespace

TEST_CASE("render_record writes one canonical line", "[history]") {
  const std::string pid = std::to_string(lockdb::os::pid());
  std::string host;
  lockdb::detail::json_io::append_escaped(host, lockdb::os::hostname());
  const json value = {{"n", 1}, {"s", "x\"y"}};
  const auto t = kT0 + 123456us;
  CHECK(line_for("config", "put", &value, t, "0123456789abcdef", "fedcba9876543210") ==
        R"({"time":"2026-11-30T12:00:00.123456Z","key":"config","op":"put",)"
        R"("prev":"0123456789abcdef","version":"fedcba9876543210","pid":)" +
            pid + R"(,"host":")" + host + R"(","value":{"n":1,"s":"x\"y"}})");
  CHECK(line_for("config", "erase", nullptr, t, "fedcba9876543210") ==
        R"({"time":"2026-11-30T12:00:00.123456Z","key":"config","op":"erase",)"
        R"("prev":"fedcba9876543210","version":null,"pid":)" +
            pid + R"(,"host":")" + host + R"("})");
  // A value already serialized (the key file's text) gives the same line.
  lockdb::detail::RecordFields f;
  f.time = t;
  f.key = "config";
  f.op = "put";
  f.value = &value;
  f.prev_version = "0123456789abcdef";
  f.version = "fedcba9876543210";
  const std::string text = value.dump();
  f.value_json = text;
  CHECK(lockdb::detail::render_record(f) ==
        line_for("config", "put", &value, t, "0123456789abcdef", "fedcba9876543210"));
  const std::string two_lines = "{\n}";
  f.value_json = two_lines;
  CHECK_THROWS_AS(lockdb::detail::render_record(f), lockdb::Error);
  // Escaping: quote, backslash, control characters, UTF-8 as is.
  const std::string hostile = std::string("a\"b\\c\nd\x01") + "\xd0\xba\xd0\xbb";
  const std::string line = line_for(hostile, "put", &value, t);
  CHECK_THAT(line, Catch::Contains(R"("key":"a\"b\\c\nd\u0001)"
                                   "\xd0\xba\xd0\xbb\""));
  CHECK(json::parse(line)["key"] == hostile);
  CHECK(line.find('\n') == std::string::npos);
  // Not UTF-8: refused, never written as a line readers would misread.
  try {
    (void)line_for("bad\xff", "put", &value, t);
    FAIL("render_record accepted a key that is not UTF-8");
  } catch (const lockdb::Error& e) {
    CHECK(e.code() == lockdb::Errc::invalid_argument);
    CHECK_THAT(std::string(e.what()), Catch::Contains("UTF-8"));
  }
}

TEST_CASE("History of a directory without a store marker is not_found naming it", "[history]") {
  TempDir dir;
  try {
    History h(dir / "nothing-here");
    FAIL("History opened a directory that is not a store");
  } catch (const lockdb::Error& e) {
    CHECK(e.code() == lockdb::Errc::not_found);
    CHECK(e.path() == dir / "nothing-here");
    CHECK_THAT(std::string(e.what()), Catch::Contains((dir / "nothing-here").string()));
    CHECK_THAT(std::string(e.what()), Catch::Contains("lockdb-store.json"));
  }
  // A store that never logged anything has an empty history.
  History empty(make_store(dir));
  CHECK(empty.records().empty());
  CHECK(empty.segments().empty());
  CHECK(empty.end().segment == 1);
  CHECK(empty.end().offset == 0);
}

TEST_CASE("records round-trip through the writer and the reader with every field", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
  const json v1 = {{"a", {1, 2.5, "three", nullptr, true}}, {"big", 18446744073709551615ull}};
  log.append(line_for("k", "put", &v1, kT0 + 1us, std::nullopt, "1111111111111111"));
  log.append(line_for("k", "erase", nullptr, kT0 + 2us, "1111111111111111"));
  const json v3 = -7;
  log.append(line_for("k", "increment", &v3, kT0 + 3s, std::nullopt, "3333333333333333"));

  History h(store);
  const auto rs = h.records();
  REQUIRE(rs.size() == 3);
  CHECK(rs[0].time == kT0 + 1us);
  CHECK(rs[0].key == "k");
  CHECK(rs[0].op == "put");
  CHECK(rs[0].value == v1);
  CHECK(rs[0].value->at("big").is_number_unsigned());
  CHECK_FALSE(rs[0].prev_version.has_value());
  CHECK(rs[0].version == "1111111111111111");
  CHECK(rs[0].pid == lockdb::os::pid());
  CHECK(rs[0].host == lockdb::os::hostname());
  CHECK(rs[1].op == "erase");
  CHECK_FALSE(rs[1].value.has_value());
  CHECK(rs[1].prev_version == "1111111111111111");
  CHECK_FALSE(rs[1].version.has_value());
  CHECK(rs[2].value == json(-7));
  CHECK(rs[2].time == kT0 + 3s);
  // segment/offset point at each record's line.
  const std::string text = lockdb::test::read_text(h.segments().at(0));
  for (const auto& r : rs) {
    CHECK(r.segment == 1);
    CHECK(text.compare(r.offset, 9, R"({"time":")") == 0);
    CHECK(text[r.offset - 1] == '\n');
  }
  // The segment starts with its header line.
  CHECK(text.starts_with(R"({"lockdb_log":1,"segment":1,"id":")"));
  CHECK(h.segments() == std::vector<fs::path>{store / "log" / "000001.jsonl"});
}

TEST_CASE("8 processes appending across many rotations: every record once, whole, in order",
          "[history][concurrency]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  const int procs = 8;
  const long per_proc = 400;
  const std::uint64_t segment_bytes = 4096;
  std::vector<std::unique_ptr<Child>> kids;
  for (int w = 0; w < procs; ++w) {
    kids.push_back(std::make_unique<Child>(std::vector<std::string>{
        lockdb::test::helper_path(), "history-append", (store / "log").string(),
        std::to_string(segment_bytes), std::to_string(w), std::to_string(per_proc), "7"}));
  }
  for (auto& k : kids) REQUIRE(k->expect_line("READY"));
  for (auto& k : kids) k->write_line("go");
  for (auto& k : kids) REQUIRE(k->expect_line("DONE " + std::to_string(per_proc)));
  for (auto& k : kids) REQUIRE(k->wait() == 0);

  History h(store);
  std::vector<Record> rs;
  const std::size_t torn = h.for_each({}, [&](const Record& r) {
    rs.push_back(r);
    return true;
  });
  CHECK(torn == 0);
  REQUIRE(rs.size() == procs * per_proc);
  std::map<int, long> next;  // each writer's records appear in its own order, none missing
  for (const auto& r : rs) {
    auto [w, i] = writer_record(r);
    REQUIRE(i == next[w]);
    next[w] = i + 1;
    CHECK(r.key == "w" + std::to_string(w) + "/k" + std::to_string(i % 7));
  }
  CHECK(next.size() == procs);

  // Segments: contiguous numbers, each opening with its header, each line whole, none far past
  // the limit (appenders that passed the size check together may each add one record).
  const auto segments = h.segments();
  CHECK(segments.size() > 50);
  std::size_t lines = 0;
  for (std::size_t n = 0; n < segments.size(); ++n) {
    CHECK(segments[n] == store / "log" / fmt::segment_name(n + 1));
    const auto ls = lines_of(segments[n]);
    REQUIRE_FALSE(ls.empty());
    CHECK(ls[0].starts_with(R"({"lockdb_log":1,"segment":)" + std::to_string(n + 1) + ","));
    for (std::size_t i = 1; i < ls.size(); ++i) {
      CHECK(json::parse(ls[i])["key"].is_string());
      ++lines;
    }
    CHECK(fs::file_size(segments[n]) < segment_bytes + procs * 200);
  }
  CHECK(lines == procs * per_proc);
  CHECK(log_files(store, ".tmp").empty());
}

TEST_CASE("a torn last line is skipped and counted, the next append starts a fresh line",
          "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  const fs::path segment = store / "log" / "000001.jsonl";
  {
    LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
    put(log, "a", 1, kT0);
    put(log, "b", 2, kT0 + 1s);
  }
  // A crash in the middle of an append: the record's first half, no newline.
  const json three = 3;
  const std::string whole = line_for("a", "put", &three, kT0 + 2s);
  append_raw(segment, whole.substr(0, whole.size() / 2));

  History h(store);
  std::vector<Record> rs;
  CHECK(h.for_each({}, [&](const Record& r) { return rs.push_back(r), true; }) == 1);
  CHECK(keys_of(rs) == std::vector<std::string>{"a", "b"});
  CHECK(values_of(h.records({.key = "a"})) == std::vector<json>{1});

  // A writer that opens the segment next ends the torn line before its record.
  {
    LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
    put(log, "c", 4, kT0 + 3s);
  }
  const auto ls = lines_of(segment);
  REQUIRE(ls.size() == 5);
  CHECK(ls[3] == whole.substr(0, whole.size() / 2));
  CHECK(json::parse(ls[4])["key"] == "c");
  rs.clear();
  CHECK(h.for_each({}, [&](const Record& r) { return rs.push_back(r), true; }) == 1);
  CHECK(keys_of(rs) == std::vector<std::string>{"a", "b", "c"});
  CHECK(values_of(rs) == std::vector<json>{1, 2, 4});
}

TEST_CASE("a record glued onto another process's torn fragment is still read", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  const fs::path segment = store / "log" / "000001.jsonl";
  LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
  put(log, "a", 1, kT0);
  // Another process died in the middle of its write while this writer keeps its segment open:
  // the fragment's value even holds text that looks like the start of a record.
  const json tricky = {{"time", "2026"}, {"key", "a"}};
  const std::string other = line_for("a", "put", &tricky, kT0 + 1s);
  append_raw(segment, other.substr(0, other.size() - 10));
  put(log, "a", 2, kT0 + 2s);
  put(log, "b", 3, kT0 + 3s);

  History h(store);
  std::vector<Record> rs;
  CHECK(h.for_each({}, [&](const Record& r) { return rs.push_back(r), true; }) == 1);
  CHECK(values_of(rs) == std::vector<json>{1, 2, 3});
  // The glued record's offset is where its own text starts.
  const std::string text = lockdb::test::read_text(segment);
  CHECK(
      text.substr(rs[1].offset).starts_with(R"({"time":"2026-11-30T12:00:02.000000Z","key":"a")"));
  CHECK(text[rs[1].offset - 1] != '\n');
  // Filtering by key finds it too, and counts the fragment (it holds the key's text).
  std::vector<Record> as;
  CHECK(h.for_each({.key = "a"}, [&](const Record& r) { return as.push_back(r), true; }) == 1);
  CHECK(values_of(as) == std::vector<json>{1, 2});
  // A time filter that rules out the fragment's time still finds the record after it.
  CHECK(values_of(h.records({.since = kT0 + 2s})) == std::vector<json>{2, 3});
  CHECK(values_of(h.records({.key = "a", .since = kT0 + 1s + 1us})) == std::vector<json>{2});
}

TEST_CASE("a seen marker is neither a record nor a torn line, glued onto a fragment too",
          "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  const fs::path segment = store / "log" / "000001.jsonl";
  LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
  put(log, "a", 1, kT0);
  append_raw(segment, "junk\n");
  const std::string marker = fmt::render_seen_marker(kT0 + 1s, 1, 7, 1);
  append_raw(segment, marker + "\n");
  // A fragment with a marker glued after it (an append torn while the marker was appended).
  const json two = 2;
  const std::string other = line_for("a", "put", &two, kT0 + 2s);
  append_raw(segment,
             other.substr(0, other.size() / 2) + fmt::render_seen_marker(kT0 + 3s, 1, 9, 2) + "\n");
  // Not markers: one of another op, one whose offset is not a number (both unreadable), and a
  // record that happens to hold a "seen" member (a record: the key decides).
  const std::string not_repair = R"({"time":"2026-11-30T12:00:04.000000Z","op":"put",)"
                                 R"("pid":1,"host":"h","seen":{"segment":1,"offset":7}})";
  const std::string bad_offset = R"({"time":"2026-11-30T12:00:04.000000Z","op":"repair",)"
                                 R"("pid":1,"host":"h","seen":{"segment":1,"offset":"7"}})";
  const std::string keyed = R"({"time":"2026-11-30T12:00:05.000000Z","key":"a","op":"repair",)"
                            R"("prev":null,"version":"v3","pid":1,"host":"h",)"
                            R"("seen":{"segment":1,"offset":7},"value":3})";
  append_raw(segment, not_repair + "\n" + bad_offset + "\n" + keyed + "\n");
  put(log, "b", 4, kT0 + 6s);

  History h(store);
  std::vector<Record> rs;
  // Torn: junk, the fragment, not_repair, bad_offset.
  CHECK(h.for_each({}, [&](const Record& r) { return rs.push_back(r), true; }) == 4);
  CHECK(keys_of(rs) == std::vector<std::string>{"a", "a", "b"});
  CHECK(values_of(rs) == std::vector<json>{1, 3, 4});
  CHECK(h.records({.op = "repair"}).size() == 1);
  std::vector<lockdb::detail::log_reader::Seen> seen;
  std::size_t torn = 0;
  lockdb::detail::log_reader::LineEvents events;
  events.torn = [&](std::uint64_t, std::uint64_t) { ++torn; };
  events.seen = [&](const lockdb::detail::log_reader::Seen& m) { seen.push_back(m); };
  CHECK(lockdb::detail::log_reader::for_each_record(
            store, {}, [](const Record&) { return true; }, events) == 4);
  CHECK(torn == 4);
  REQUIRE(seen.size() == 2);
  CHECK((seen[0].segment == 1 && seen[0].offset == 7 && seen[0].lines == 1));
  CHECK((seen[1].segment == 1 && seen[1].offset == 9 && seen[1].lines == 2));
}

namespace {

// `fail` must throw Error{io} naming `path` (in path() and in the message) and saying `says`.
void check_io_error(const std::function<void()>& fail, const fs::path& path,
                    std::initializer_list<const char*> says) {
  try {
    fail();
    FAIL("no error for " + path.string());
  } catch (const lockdb::Error& e) {
    CHECK(e.code() == lockdb::Errc::io);
    CHECK(e.path() == path);
    CHECK_THAT(std::string(e.what()), Catch::Contains(path.string()));
    for (const char* text : says) CHECK_THAT(std::string(e.what()), Catch::Contains(text));
  }
}

}  // namespace

TEST_CASE("a failed write or fsync throws naming the segment and misreads nothing", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  FaultGuard faults;
  History h(store);
  const fs::path first = store / "log" / "000001.jsonl";

  SECTION("a full disk on append") {
    LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
    put(log, "a", 1, kT0);
    lockdb::os::fail_nth(lockdb::os::Op::write, 1, ENOSPC);
    check_io_error([&] { put(log, "a", 2, kT0 + 1s); }, first, {"No space left on device"});
    std::vector<Record> rs;
    CHECK(h.for_each({}, [&](const Record& r) { return rs.push_back(r), true; }) == 0);
    CHECK(values_of(rs) == std::vector<json>{1});
    put(log, "a", 3, kT0 + 2s);
    CHECK(values_of(h.records()) == std::vector<json>{1, 3});
  }

  SECTION("a full disk while rotating into a new segment") {
    LogWriter log(store / "log", 300, lockdb::Durability::none);
    put(log, "a", 1, kT0);
    put(log, "a", 2, kT0 + 1s);  // segment 1 is now past 300 bytes: the next append rotates
    REQUIRE(h.segments().size() == 1);
    REQUIRE(fs::file_size(first) > 300);
    lockdb::os::fail_nth(lockdb::os::Op::write, 1, ENOSPC);  // the new segment's header
    const fs::path second = store / "log" / "000002.jsonl";
    check_io_error([&] { put(log, "a", 3, kT0 + 2s); }, second, {"No space left on device"});
    CHECK(h.segments().size() == 1);
    CHECK(log_files(store, ".tmp").empty());
    CHECK(values_of(h.records()) == std::vector<json>{1, 2});
    // Another writer (fresh state) also goes to segment 2, never back to the sealed one.
    LogWriter other(store / "log", 300, lockdb::Durability::none);
    put(other, "a", 4, kT0 + 3s);
    put(log, "a", 5, kT0 + 4s);
    CHECK(values_of(h.records()) == std::vector<json>{1, 2, 4, 5});
    CHECK(h.segments() == std::vector<fs::path>{first, second});
  }

  SECTION("a failed fsync with durability file or full, and no fsync with none") {
    LogWriter durable(store / "log", 1 << 20, lockdb::Durability::file);
    put(durable, "a", 1, kT0);
    lockdb::os::fail_nth(lockdb::os::Op::fsync, 1, EIO);
    check_io_error([&] { put(durable, "a", 2, kT0 + 1s); }, first, {"fsync", "Input/output error"});
    // The line was written before the fsync failed: it is whole, and reported as not durable.
    CHECK(h.for_each({}, [](const Record&) { return true; }) == 0);
    CHECK(values_of(h.records()) == std::vector<json>{1, 2});
    put(durable, "a", 3, kT0 + 2s);

    LogWriter fast(store / "log", 1 << 20, lockdb::Durability::none);
    lockdb::os::fail_nth(lockdb::os::Op::fsync, 1, EIO);
    put(fast, "a", 4, kT0 + 3s);  // none: no fsync to fail
    lockdb::os::clear_faults();
    CHECK(values_of(h.records()) == std::vector<json>{1, 2, 3, 4});
  }
}

TEST_CASE("queries select by key, key prefix, op, time range and limit, in log order",
          "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  {
    LogWriter log(store / "log", 700, lockdb::Durability::none);  // several segments
    put(log, "user/1", 10, kT0 + 0s);
    put(log, "user/10", 100, kT0 + 1s);
    // A value that contains another key's text must not match that key.
    put(log, "order/1", json{{"key", "user/1"}, {"note", R"("key":"user/1")"}}, kT0 + 2s);
    put(log, "user/2", 20, kT0 + 3s);
    put(log, "user/1", 11, kT0 + 4s, "increment");
    erase(log, "user/2", kT0 + 5s);
    put(log, "user/1", 12, kT0 + 6s, "update");
    put(log, "user", 0, kT0 + 7s);
  }
  History h(store);
  REQUIRE(h.segments().size() > 1);

  CHECK(values_of(h.records({.key = "user/1"})) == std::vector<json>{10, 11, 12});
  CHECK(h.records({.key = "user/3"}).empty());
  CHECK(keys_of(h.records({.key_prefix = "user/"})) ==
        std::vector<std::string>{"user/1", "user/10", "user/2", "user/1", "user/2", "user/1"});
  CHECK(keys_of(h.records({.key_prefix = "user/1"})) ==
        std::vector<std::string>{"user/1", "user/10", "user/1", "user/1"});
  CHECK(keys_of(h.records({.op = "erase"})) == std::vector<std::string>{"user/2"});
  CHECK(values_of(h.records({.op = "increment"})) == std::vector<json>{11});
  CHECK(values_of(h.records({.key = "user/1", .since = kT0 + 1s})) == std::vector<json>{11, 12});
  CHECK(values_of(h.records({.key = "user/1", .until = kT0 + 6s})) == std::vector<json>{10, 11});
  // since is inclusive, until exclusive.
  CHECK(keys_of(h.records({.since = kT0 + 3s, .until = kT0 + 5s})) ==
        std::vector<std::string>{"user/2", "user/1"});
  CHECK(keys_of(h.records({.since = kT0 + 3s + 1us, .until = kT0 + 5s + 1us})) ==
        std::vector<std::string>{"user/1", "user/2"});
  CHECK(values_of(h.records({.key_prefix = "user/", .op = "put"})) ==
        std::vector<json>{10, 100, 20});
  CHECK(values_of(h.records({.key = "user/1", .limit = 2})) == std::vector<json>{10, 11});
  CHECK(keys_of(h.records({.limit = 3})) ==
        std::vector<std::string>{"user/1", "user/10", "order/1"});
  CHECK(h.records({.limit = 0}).empty());
  CHECK(h.records().size() == 8);
  // for_each stops when fn returns false.
  int seen = 0;
  h.for_each({}, [&](const Record&) { return ++seen < 2; });
  CHECK(seen == 2);
}

TEST_CASE("hostile keys are found exactly, by key and by prefix", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  const std::vector<std::string> keys = {"quote\"d",         "back\\slash",
                                         "new\nline",        std::string("nul\0byte", 8),
                                         "tab\there",        "\xe2\x9c\x93 check",
                                         "../../etc/passwd", "plain",
                                         "plain\"",          "\x7f"};
  {
    LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
    for (std::size_t i = 0; i < keys.size(); ++i) put(log, keys[i], static_cast<int>(i), kT0);
  }
  History h(store);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    INFO("key " << i);
    const auto rs = h.records({.key = keys[i]});
    REQUIRE(rs.size() == 1);
    CHECK(rs[0].key == keys[i]);
    CHECK(rs[0].value == json(i));
  }
  CHECK(keys_of(h.records({.key_prefix = "plain"})) ==
        std::vector<std::string>{"plain", "plain\""});
  CHECK(keys_of(h.records({.key_prefix = "nul"})) ==
        std::vector<std::string>{std::string("nul\0byte", 8)});
}

TEST_CASE("value_at returns the value in force at a time", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  {
    LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
    put(log, "k", "one", kT0 + 10s);
    put(log, "other", "x", kT0 + 15s);
    put(log, "k", "two", kT0 + 20s);
    erase(log, "k", kT0 + 30s);
    put(log, "k", "three", kT0 + 40s);
  }
  History h(store);
  CHECK_FALSE(h.value_at("k", kT0).has_value());
  CHECK_FALSE(h.value_at("k", kT0 + 10s - 1us).has_value());
  CHECK(h.value_at("k", kT0 + 10s) == json("one"));
  CHECK(h.value_at("k", kT0 + 19s) == json("one"));
  CHECK(h.value_at("k", kT0 + 20s) == json("two"));
  CHECK_FALSE(h.value_at("k", kT0 + 30s).has_value());
  CHECK_FALSE(h.value_at("k", kT0 + 39s).has_value());
  CHECK(h.value_at("k", kT0 + 1h) == json("three"));
  CHECK_FALSE(h.value_at("missing", kT0 + 1h).has_value());
}

TEST_CASE("read_from follows appends across rotation and waits for unfinished lines", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  LogWriter log(store / "log", 600, lockdb::Durability::none);
  History h(store);
  // From an empty log: the default position waits for segment 1.
  std::vector<Record> got;
  auto collect = [&](const Record& r) { got.push_back(r); };
  LogPosition pos = h.read_from(LogPosition{}, {}, collect);
  CHECK(got.empty());
  put(log, "a", 0, kT0);
  pos = h.read_from(pos, {}, collect);
  CHECK(values_of(got) == std::vector<json>{0});

  got.clear();
  for (int i = 1; i <= 40; ++i) put(log, i % 2 ? "odd" : "even", i, kT0 + std::chrono::seconds(i));
  REQUIRE(h.segments().size() > 5);
  pos = h.read_from(pos, {}, collect);
  REQUIRE(got.size() == 40);
  for (int i = 1; i <= 40; ++i) CHECK(got[static_cast<std::size_t>(i - 1)].value == json(i));
  const LogPosition end = h.end();
  CHECK(pos.segment == end.segment);
  CHECK(pos.offset == end.offset);
  CHECK(pos.segment_id == end.segment_id);
  CHECK(pos.segment == h.segments().size());
  got.clear();
  CHECK(h.read_from(pos, {}, collect).offset == pos.offset);
  CHECK(got.empty());

  // With a query, and a limit that counts within one call.
  put(log, "odd", 41, kT0 + 41s);
  put(log, "even", 42, kT0 + 42s);
  put(log, "odd", 43, kT0 + 43s);
  LogPosition p2 = h.read_from(pos, {.key = "odd", .limit = 1}, collect);
  CHECK(values_of(got) == std::vector<json>{41});
  h.read_from(p2, {.key = "odd"}, collect);
  CHECK(values_of(got) == std::vector<json>{41, 43});

  // An unfinished last line (a write in flight) is left for the next call.
  pos = h.end();
  got.clear();
  const fs::path newest = h.segments().back();
  const json v = 44;
  const std::string line = line_for("odd", "put", &v, kT0 + 44s);
  append_raw(newest, line.substr(0, 30));
  CHECK(h.read_from(pos, {}, collect).offset == pos.offset);
  CHECK(got.empty());
  append_raw(newest, line.substr(30) + "\n");
  pos = h.read_from(pos, {}, collect);
  CHECK(values_of(got) == std::vector<json>{44});
  CHECK(pos.offset == fs::file_size(newest));

  // A position without an id, inside a line, moves on to the next line start.
  got.clear();
  const auto all = h.records();
  const Record& r = all[all.size() - 2];
  h.read_from(LogPosition{r.segment, r.offset + 5}, {}, collect);
  CHECK(values_of(got) == std::vector<json>{44});
}

TEST_CASE("compaction keeps exactly what the rule asks and every key's current value",
          "[history][compact]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  LogWriter log(store / "log", 500, lockdb::Durability::none);
  for (int i = 1; i <= 5; ++i) put(log, "a", i, kT0 + std::chrono::seconds(i));  // a: 1..5
  put(log, "b", 1, kT0 + 6s);
  put(log, "b", 2, kT0 + 7s);
  erase(log, "b", kT0 + 8s);   // b: erased
  put(log, "c", 1, kT0 + 1s);  // c: one old record
  History h(store);
  REQUIRE(h.segments().size() > 1);
  const auto before = h.segments();

  SECTION("keep_last") {
    CHECK(lockdb::compact_history_keep_last(store, 2) == 4);  // a: 1..3, b: 1
    CHECK(keys_of(h.records()) == std::vector<std::string>{"a", "a", "b", "b", "c"});
    CHECK(values_of(h.records()) == std::vector<json>{4, 5, 2, "<erased>", 1});
    CHECK(lockdb::compact_history_keep_last(store, 2) == 0);
    CHECK(lockdb::compact_history_keep_last(store, 0) ==
          3);  // a: 4, b: both (erased), c stays (its only record)
    CHECK(keys_of(h.records()) == std::vector<std::string>{"a", "c"});
    CHECK(values_of(h.records()) == std::vector<json>{5, 1});
  }
  SECTION("before") {
    CHECK(lockdb::compact_history_before(store, kT0 + 4s) ==
          3);  // a: 1..3; c is older but current: kept
    CHECK(values_of(h.records({.key = "a"})) == std::vector<json>{4, 5});
    CHECK(values_of(h.records({.key = "c"})) == std::vector<json>{1});
    CHECK(h.records({.key = "b"}).size() == 3);
    CHECK(lockdb::compact_history_before(store, kT0 + 1h) ==
          4);  // a: 4 (5 is current), b: all three
    CHECK(keys_of(h.records()) == std::vector<std::string>{"a", "c"});
  }
  // The compacted segment replaced the old ones; a new segment takes the next appends.
  const auto after = h.segments();
  REQUIRE(after.size() == 2);
  CHECK(after[0] != before[0]);
  CHECK(lines_of(after[0]).at(0).find(R"("compacted":)") != std::string::npos);
  CHECK(log_files(store, ".tmp").empty());
  put(log, "d", 1, kT0 + 9s);
  CHECK(h.records().back().key == "d");
  CHECK(h.records().back().segment == std::stoull(h.segments().back().stem().string()));
}

TEST_CASE("followers across a compaction: exact at the end, kept records again when behind",
          "[history][compact]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
  for (int i = 1; i <= 6; ++i) put(log, i % 2 ? "a" : "b", i, kT0 + std::chrono::seconds(i));
  History h(store);
  const LogPosition at_end = h.end();
  const auto rs = h.records();
  const LogPosition behind{rs[3].segment, rs[3].offset, at_end.segment_id};  // before record 4

  CHECK(lockdb::compact_history_keep_last(store, 1) == 4);  // keeps a=5, b=6
  put(log, "a", 7, kT0 + 7s);

  std::vector<Record> got;
  auto collect = [&](const Record& r) { got.push_back(r); };
  LogPosition pos = h.read_from(at_end, {}, collect);
  CHECK(values_of(got) == std::vector<json>{7});
  CHECK(pos.offset == h.end().offset);
  CHECK(pos.segment == h.end().segment);

  got.clear();
  h.read_from(behind, {}, collect);
  CHECK(values_of(got) == std::vector<json>{5, 6, 7});

  // A follower from the very start gets what is left.
  got.clear();
  h.read_from(LogPosition{}, {}, collect);
  CHECK(values_of(got) == std::vector<json>{5, 6, 7});
}

TEST_CASE("readers skip what a compaction that failed half-way left behind", "[history][compact]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  FaultGuard faults;
  LogWriter log(store / "log", 400, lockdb::Durability::none);
  for (int i = 1; i <= 12; ++i) put(log, "k" + std::to_string(i % 3), i, kT0);
  History h(store);
  const std::size_t segments_before = h.segments().size();
  REQUIRE(segments_before >= 3);

  SECTION("failed before its commit: nothing changed, no temp file left") {
    lockdb::os::fail_nth(lockdb::os::Op::rename, 2, EIO);  // 1: the rotation, 2: the commit
    CHECK_THROWS_AS(lockdb::compact_history_keep_last(store, 1), lockdb::Error);
    CHECK(h.records().size() == 12);
    CHECK(h.segments().size() == segments_before + 1);
    CHECK(log_files(store, ".tmp").empty());
  }
  SECTION("failed after its commit: the old segments are still there but superseded") {
    lockdb::os::fail_nth(lockdb::os::Op::unlink, 1, EIO);
    try {
      lockdb::compact_history_keep_last(store, 1);
      FAIL("compaction succeeded although removing a segment failed");
    } catch (const lockdb::Error& e) {
      CHECK(e.path() == store / "log" / "000001.jsonl");
      CHECK_THAT(std::string(e.what()), Catch::Contains("readers skip it"));
    }
    CHECK(fs::exists(store / "log" / "000001.jsonl"));
    CHECK(h.segments().size() == 2);
    CHECK(values_of(h.records()) == std::vector<json>{10, 11, 12});
    // The next compaction removes the leftovers, also when it has nothing to drop.
    CHECK(lockdb::compact_history_keep_last(store, 1) == 0);
    CHECK(fs::file_size(h.segments().at(0)) > 0);
    CHECK(log_files(store, ".jsonl") == h.segments());
    put(log, "k0", 13, kT0);
    CHECK(lockdb::compact_history_keep_last(store, 1) == 1);
    CHECK(values_of(h.records()) == std::vector<json>{10, 11, 13});
  }
}

TEST_CASE("compaction while 4 processes append loses nothing, readers see consistent logs",
          "[history][compact][concurrency]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  const int procs = 4;
  const long keys = 5;
  std::vector<std::unique_ptr<Child>> kids;
  for (int w = 0; w < procs; ++w) {
    kids.push_back(std::make_unique<Child>(std::vector<std::string>{
        lockdb::test::helper_path(), "history-append-until-stop", (store / "log").string(), "8192",
        std::to_string(w), std::to_string(keys)}));
  }
  for (auto& k : kids) REQUIRE(k->expect_line("STARTED"));

  History h(store);
  // A reader: every snapshot holds each record at most once, each key's records in order.
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::string reader_problem;
  std::thread reader([&] {
    try {
      while (!stop) {
        std::map<std::string, long> last;
        std::size_t torn = h.for_each({}, [&](const Record& r) {
          auto [w, i] = writer_record(r);
          auto [it, fresh] = last.try_emplace(r.key, i);
          if (!fresh && i <= it->second) {
            reader_problem = "record " + r.key + " " + std::to_string(i) + " after " +
                             std::to_string(it->second);
          }
          it->second = i;
          return reader_problem.empty();
        });
        if (torn != 0) reader_problem = std::to_string(torn) + " torn lines";
        if (!reader_problem.empty()) return;
        ++reads;
      }
    } catch (const std::exception& e) {
      reader_problem = e.what();
    }
  });
  // A follower: never a misread, and in the end it has seen every key's last record.
  std::map<std::string, long> followed;
  LogPosition pos;
  std::thread follower([&] {
    while (!stop) {
      pos =
          h.read_from(pos, {}, [&](const Record& r) { followed[r.key] = writer_record(r).second; });
    }
  });

  // At least 6 rounds, and on until a compaction dropped records and the reader finished a
  // pass while it ran (on a loaded machine the writers and the reader may start slowly).
  std::size_t dropped = 0;
  for (int round = 0; round < 6 || ((dropped == 0 || reads == 0) && round < 5000); ++round) {
    dropped += lockdb::compact_history_keep_last(store, 2);
  }
  std::map<int, long> appended;
  for (int w = 0; w < procs; ++w) {
    kids[static_cast<std::size_t>(w)]->write_line("stop");
    auto done = kids[static_cast<std::size_t>(w)]->read_line();
    REQUIRE(done.has_value());
    REQUIRE(done->starts_with("DONE "));
    appended[w] = std::stol(done->substr(5));
    REQUIRE(kids[static_cast<std::size_t>(w)]->wait() == 0);
  }
  stop = true;
  reader.join();
  follower.join();
  CHECK(reader_problem == "");  // the expansion shows what the reader saw
  CHECK(reads > 0);
  CHECK(dropped > 0);
  INFO("dropped " << dropped << ", reads " << reads.load());

  // Per key: the records still there are one unbroken run ending with the key's last write.
  std::map<std::string, std::vector<long>> present;
  CHECK(h.for_each({}, [&](const Record& r) {
    present[r.key].push_back(writer_record(r).second);
    return true;
  }) == 0);
  for (int w = 0; w < procs; ++w) {
    for (long j = 0; j < keys; ++j) {
      const std::string key = "w" + std::to_string(w) + "/k" + std::to_string(j);
      INFO(key);
      const auto& is = present[key];
      REQUIRE_FALSE(is.empty());
      const long n = appended[w];
      const long last = (n - 1) - ((n - 1 - j) % keys);
      CHECK(is.back() == last);
      for (std::size_t x = 1; x < is.size(); ++x) CHECK(is[x] == is[x - 1] + keys);
      CHECK(is.size() >= 2);
    }
  }
  // The follower catches up with everything.
  h.read_from(pos, {}, [&](const Record& r) { followed[r.key] = writer_record(r).second; });
  for (const auto& [key, is] : present) CHECK(followed[key] == is.back());
}

TEST_CASE("a segment of a newer format is refused naming it", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  lockdb::test::write_text(store / "log" / "000001.jsonl",
                           R"({"lockdb_log":2,"segment":1,"id":"00000000000000aa"})"
                           "\n");
  History h(store);
  try {
    h.records();
    FAIL("a segment of format 2 was read");
  } catch (const lockdb::Error& e) {
    CHECK(e.code() == lockdb::Errc::version);
    CHECK(e.path() == store / "log" / "000001.jsonl");
  }
}

TEST_CASE("a forked child appends through its parent's writer", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
  put(log, "k", 1, kT0);
  const pid_t child = fork();
  if (child == 0) {
    int code = 0;
    try {
      put(log, "k", 2, kT0 + 1s);
    } catch (...) {
      code = 1;
    }
    _exit(code);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  put(log, "k", 3, kT0 + 2s);
  History h(store);
  const auto rs = h.records();
  CHECK(values_of(rs) == std::vector<json>{1, 2, 3});
  CHECK(rs[1].pid == child);
}

TEST_CASE("rebuild makes a store equal to the live one", "[history][store]") {
  TempDir dir;
  const fs::path live_dir = dir / "live";
  lockdb::StoreOptions options;
  options.log_segment_bytes = 2048;
  lockdb::Store live(live_dir, options);
  const std::vector<std::string> keys = {"config", "Config",   "a/b",
                                         "../x",   "quote\"d", "\xe2\x9c\x93"};
  for (std::size_t i = 0; i < keys.size(); ++i) live.put(keys[i], json{{"i", i}});
  for (int i = 0; i < 20; ++i) live.increment("counter");
  live.update("config", [](json& v) { v["extra"] = true; });
  live.erase("a/b");
  live.put("gone", 1);
  live.erase("gone");

  History h(live_dir);
  REQUIRE(h.segments().size() > 1);
  lockdb::rebuild_store(live_dir, dir / "copy");
  lockdb::Store copy(dir / "copy");
  REQUIRE(copy.keys() == live.keys());
  for (const auto& key : live.keys()) {
    INFO(key);
    CHECK(copy.get(key) == live.get(key));
    CHECK(copy.entry(key)->version == live.entry(key)->version);
  }
  CHECK(copy.get("counter") == json(20));
  CHECK_FALSE(copy.contains("a/b"));
  // The copy's own log: one put per key.
  const auto copied = History(dir / "copy").records();
  CHECK(copied.size() == live.keys().size());
  for (const auto& r : copied) CHECK(r.op == "put");
  // Never into a store.
  try {
    lockdb::rebuild_store(live_dir, dir / "copy");
    FAIL("rebuild wrote into an existing store");
  } catch (const lockdb::Error& e) {
    CHECK(e.code() == lockdb::Errc::invalid_argument);
    CHECK(e.path() == dir / "copy");
  }
}

TEST_CASE("writers with different segment sizes never append to a sealed segment", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  LogWriter small(store / "log", 300, lockdb::Durability::none);
  LogWriter large(store / "log", 1 << 20, lockdb::Durability::none);
  for (int i = 0; i < 30; ++i) put(i % 2 ? large : small, "k", i, kT0 + std::chrono::seconds(i));
  History h(store);
  const auto rs = h.records();
  REQUIRE(rs.size() == 30);
  for (int i = 0; i < 30; ++i) CHECK(rs[static_cast<std::size_t>(i)].value == json(i));
  CHECK(h.segments().size() >= 10);
  for (std::size_t i = 1; i < rs.size(); ++i) CHECK(rs[i].segment >= rs[i - 1].segment);
}

TEST_CASE("a record naming a key longer than 1024 bytes is unreadable, not a record", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  const fs::path segment = store / "log" / "000001.jsonl";
  LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
  put(log, "a", 1, kT0);
  const json two = 2;
  append_raw(segment, line_for(std::string(1025, 'a'), "put", &two, kT0 + 1s) + "\n");
  append_raw(segment, line_for(std::string(1024, 'b'), "put", &two, kT0 + 2s) + "\n");
  History h(store);
  std::vector<Record> rs;
  CHECK(h.for_each({}, [&](const Record& r) { return rs.push_back(r), true; }) == 1);
  CHECK(keys_of(rs) == std::vector<std::string>{"a", std::string(1024, 'b')});
}

TEST_CASE("a line with a NUL byte after a whole record is torn, not read", "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  const fs::path segment = store / "log" / "000001.jsonl";
  LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
  put(log, "a", 1, kT0);
  const json two = 2;
  append_raw(segment, line_for("a", "put", &two, kT0 + 1s) + std::string(1, '\0') + "}\n");
  put(log, "a", 3, kT0 + 2s);
  History h(store);
  std::vector<Record> rs;
  CHECK(h.for_each({}, [&](const Record& r) { return rs.push_back(r), true; }) == 1);
  CHECK(values_of(rs) == std::vector<json>{1, 3});
}

TEST_CASE("a read-only log is Error{permission} naming the lock file, the writer recovers",
          "[history]") {
  TempDir dir;
  const fs::path store = make_store(dir);
  FaultGuard faults;
  LogWriter log(store / "log", 1 << 20, lockdb::Durability::none);
  lockdb::os::fail_nth(lockdb::os::Op::open, 1, EROFS);
  try {
    put(log, "a", 1, kT0);
    FAIL("append succeeded on a read-only filesystem");
  } catch (const lockdb::Error& e) {
    CHECK(e.code() == lockdb::Errc::permission);
    CHECK(e.path() == store / "log" / "log.lock");
    CHECK_THAT(std::string(e.what()), Catch::Contains("Read-only file system"));
  }
  CHECK(History(store).records().empty());
  put(log, "a", 2, kT0 + 1s);
  CHECK(values_of(History(store).records()) == std::vector<json>{2});
  CHECK(log.lock_file() == store / "log" / "log.lock");
}
