// The history log's on-disk format (private): the constants, and the small codecs the writer and
// the reader share. docs/FORMAT.md ("History log") has the long form; change both together, and
// bump kLogFormatVersion when an old reader would misread the new layout.
//
//   <store>/log/000001.jsonl        segment 1: a header line, then one record per line
//   <store>/log/000002.jsonl        ... numbered from 1, at least kSegmentDigits digits
//   <store>/log/log.lock            appenders hold it shared, rotation exclusive; its first
//                                   page caches the writers' shared state (SharedState below)
//   <store>/log/compact.lock        serializes compactions
//   <store>/log/.segment-<hex>.tmp  a segment being created (rotation)
//   <store>/log/.compact-<hex>.tmp  a compacted segment being written
//
// Header line (first line of every segment):
//   {"lockdb_log":1,"segment":3,"id":"<16 hex>","created":"<time>"}
// and, in a segment written by compaction, also
//   "compacted":{"rule":"keep_last 3","time":"<time>","kept":K,"dropped":D,
//                "replaced":[{"segment":1,"id":"<16 hex>","bytes":B,"at":A},...]}
// A compacted segment supersedes every segment with a lower number: readers ignore those (they
// are leftovers of a compaction that crashed before removing them). "at" is where the kept
// records of that replaced segment begin, counted from the first byte after the header line.
//
// Record line (fields in this order; readers accept any order and ignore unknown fields):
//   {"time":"2026-11-30T18:00:00.123456Z","key":"k","op":"put","prev":"<ver>"|null,
//    "version":"<ver>"|null,"pid":123,"host":"h","value":<json>}
// "value" is absent on erase. The records of one update_many also carry "txn":"<16 hex>" (after
// "version") and are appended in one write. Strings use nlohmann's escaping
// (json_io::append_escaped; the reader looks for a key's exact escaped text in the raw bytes), time
// is UTC with microseconds.
//
// Seen marker (appended by a repair that logged no record, to acknowledge unreadable lines):
//   {"time":"<time>","op":"repair","pid":123,"host":"h",
//    "seen":{"segment":S,"offset":O,"lines":N}}
// It names no key, so it is no record: readers skip it without counting it as torn (readers from
// before it existed count it as one more unreadable line). It acknowledges the unreadable lines
// at or before line offset O of segment S (the last one the repair saw; N of them since the last
// repair record): verify() no longer reports them. Compaction drops it with those lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <lockdb/time.hpp>

namespace lockdb::detail::log_format {

inline constexpr int kLogFormatVersion = 1;

// ---- files ----
inline constexpr std::string_view kSegmentSuffix = ".jsonl";
inline constexpr int kSegmentDigits = 6;  // "000001.jsonl": names sort up to 999999 segments
inline constexpr std::string_view kLockFile = "log.lock";
inline constexpr std::string_view kCompactLockFile = "compact.lock";
inline constexpr std::string_view kSegmentTempPrefix = ".segment-";
inline constexpr std::string_view kCompactTempPrefix = ".compact-";
inline constexpr std::string_view kTempSuffix = ".tmp";

// ---- header fields ----
inline constexpr std::string_view kHeaderStart = "{\"lockdb_log\":";  // how a header line begins
inline constexpr const char* kHeaderFormat = "lockdb_log";            // format version
inline constexpr const char* kHeaderSegment = "segment";
inline constexpr const char* kHeaderId = "id";
inline constexpr const char* kHeaderCreated = "created";
inline constexpr const char* kHeaderCompacted = "compacted";
inline constexpr const char* kCompactedRule = "rule";
inline constexpr const char* kCompactedTime = "time";
inline constexpr const char* kCompactedKept = "kept";
inline constexpr const char* kCompactedDropped = "dropped";
inline constexpr const char* kCompactedReplaced = "replaced";
inline constexpr const char* kReplacedSegment = "segment";
inline constexpr const char* kReplacedId = "id";
inline constexpr const char* kReplacedBytes = "bytes";
inline constexpr const char* kReplacedAt = "at";

// ---- record fields ----
inline constexpr const char* kFieldTime = "time";
inline constexpr const char* kFieldKey = "key";
inline constexpr const char* kFieldOp = "op";
inline constexpr const char* kFieldPrev = "prev";
inline constexpr const char* kFieldVersion = "version";
inline constexpr const char* kFieldPid = "pid";
inline constexpr const char* kFieldHost = "host";
inline constexpr const char* kFieldValue = "value";
inline constexpr const char* kFieldTxn = "txn";  // update_many's records only
// The seen marker's field (an object) and its members.
inline constexpr std::string_view kSeenOp = "repair";  // the marker's op
inline constexpr const char* kFieldSeen = "seen";
inline constexpr const char* kSeenSegment = "segment";
inline constexpr const char* kSeenOffset = "offset";
inline constexpr const char* kSeenLines = "lines";
// Every record line begins with this; a reader resynchronizes on it after a torn fragment.
inline constexpr std::string_view kRecordStart = "{\"time\":\"";

// ---- the writers' shared state: the first bytes of log.lock, mapped shared by every writer ----
// Native-endian 64-bit words. A cache of the directory that writers can check without a system
// call: `newest` and `generation` change only under the exclusive lock (rotation), and whenever
// the segment appenders must use changes. `appended` is the newest segment's size as counted by
// the appenders (approximate: it decides when to rotate). A page that does not start with
// kStateMagic is rebuilt from the directory under the exclusive lock.
inline constexpr std::size_t kStateBytes = 4096;
inline constexpr std::uint64_t kStateMagic = 0x31534c4244b0c66cULL;
inline constexpr std::size_t kStateWordMagic = 0;
inline constexpr std::size_t kStateWordLayout = 1;  // kLogFormatVersion
inline constexpr std::size_t kStateWordGeneration = 2;
inline constexpr std::size_t kStateWordNewest = 3;       // newest segment number
inline constexpr std::size_t kStateWordAppended = 4;     // bytes in the newest segment
inline constexpr std::size_t kStateWordFirstRecord = 5;  // header bytes of the newest segment

// "000042.jsonl".
std::string segment_name(std::uint64_t number);
// 42 for "000042.jsonl" (any number of digits); nullopt for any other name.
std::optional<std::uint64_t> parse_segment_name(std::string_view name);

// A random segment id (never 0) and its 16-hex-digit text.
std::uint64_t new_segment_id();
std::string id_text(std::uint64_t id);
std::optional<std::uint64_t> parse_id(std::string_view text);

// The header line of a fresh (not compacted) segment, without the newline.
std::string render_header(std::uint64_t number, std::uint64_t id,
                          std::chrono::system_clock::time_point created);

// Appends `,"pid":<this process>,"host":"<host name>"` (a host name that is not UTF-8 is written
// "localhost"): who wrote a record or a seen marker.
void append_origin(std::string& out);

// A seen marker line (without the newline) acknowledging `lines` unreadable lines, the last at
// line offset `offset` of segment `segment`; adds pid and host.
std::string render_seen_marker(std::chrono::system_clock::time_point time, std::uint64_t segment,
                               std::uint64_t offset, std::uint64_t lines);

// Times are written by append_time/format_time ("2026-11-30T18:00:00.123456Z", 27 characters)
// and read by parse_time, all from <lockdb/time.hpp>.
inline constexpr std::size_t kTimeChars = 27;
using lockdb::append_time;
using lockdb::format_time;
using lockdb::parse_time;

}  // namespace lockdb::detail::log_format
