// Reading the history log (private): a consistent snapshot of the segments, a chunked line
// scanner that filters on raw bytes before anything is parsed, and the record parser
// (RapidJSON, hidden behind RecordParser). Used by History (history.cpp) and by compaction
// (history_compact.cpp). Format: log_format.hpp and docs/FORMAT.md.
#pragma once

#include <lockdb/history.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lockdb::detail::log_reader {

// A segment that a compacted segment replaced: its number, id, size, and where its kept records
// begin in the compacted segment (counted from the compacted segment's first record).
struct Replaced {
  std::uint64_t segment = 0;
  std::uint64_t id = 0;
  std::uint64_t bytes = 0;
  std::uint64_t at = 0;
};

// One open segment of a snapshot. The descriptor keeps the file readable even if compaction
// replaces or removes it meanwhile. Move-only.
struct SegmentFile {
  std::uint64_t number = 0;
  std::filesystem::path path;
  int fd = -1;
  std::uint64_t id = 0;            // 0: the segment has no header
  std::uint64_t first_record = 0;  // bytes of the header line (where records begin)
  bool compacted = false;
  std::vector<Replaced> replaced;  // when compacted

  SegmentFile() = default;
  SegmentFile(SegmentFile&& other) noexcept;
  SegmentFile& operator=(SegmentFile&& other) noexcept;
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;
  ~SegmentFile();

  // The file's size now. THROWS Error naming the segment.
  std::uint64_t size() const;
};

// The segments to read, oldest first, all open. Consistent while compaction runs: a compacted
// segment supersedes every lower-numbered one (those are dropped), and a segment that vanished
// between listing and opening must be covered by a compacted segment that was opened, or the
// listing is taken again. Empty when there is no log directory. With `newest`, only the newest
// segment (compaction never replaces it); with `from`, only segments numbered from `from` on.
// THROWS Error{io|permission} naming the file, Error{version} for a segment of a newer format.
enum class Segments { all, newest };
std::vector<SegmentFile> snapshot(const std::filesystem::path& log_dir,
                                  Segments which = Segments::all, std::uint64_t from = 0);

// ---- lines ----
// fn(line without its '\n', file offset of the line) returns false to stop.
using LineFn = std::function<bool(std::string_view line, std::uint64_t offset)>;

struct ScanResult {
  std::uint64_t end = 0;  // just past the last complete line scanned (where to resume)
  bool stopped = false;   // fn returned false
  std::string tail;       // bytes after the last '\n' up to `limit`: a line not yet complete
};

// Scans seg's bytes [start, limit) in large reads and calls fn for each complete line that
// contains `needle` (memmem over the raw bytes; every line when needle is empty).
// THROWS Error{io} naming the segment.
ScanResult scan(const SegmentFile& seg, std::uint64_t start, std::uint64_t limit,
                std::string_view needle, const LineFn& fn);

// Waits until no append is in flight in the log in `log_dir`: appenders write while holding
// log.lock shared, so once the lock has been had exclusive (and given back at once), every
// append that was under way has finished. Blocks new appends only for that moment. False where
// that cannot be known: no lock file, no permission, or not within a second (a thread of this
// process holding the log lock, a long compaction). Never throws.
bool wait_for_appends(const std::filesystem::path& log_dir) noexcept;

// The offset just past the last '\n' in seg's bytes [seg.first_record, size).
std::uint64_t last_line_end(const SegmentFile& seg, std::uint64_t size);

// ---- records ----
// What a seen marker acknowledges (log_format.hpp): the unreadable lines at or before `offset`
// in segment `segment`, `lines` of them.
struct Seen {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
  std::uint64_t lines = 0;
};

// A parsed record line. The views point into the parser and stay valid until its next parse().
struct Parsed {
  std::chrono::system_clock::time_point time;
  std::string_view key;
  std::string_view op;
  std::optional<std::string_view> prev;
  std::optional<std::string_view> version;
  long pid = 0;
  std::string_view host;
  bool has_value = false;
  std::size_t offset_in_line = 0;  // > 0 when a torn fragment preceded the record
  Seen seen;                       // a seen marker's (only `time`, `op`, `pid`, `host` else)
};

class RecordParser {
 public:
  RecordParser();
  ~RecordParser();
  RecordParser(const RecordParser&) = delete;
  RecordParser& operator=(const RecordParser&) = delete;

  enum class Outcome {
    record,           // the line is one record
    fragment_record,  // a torn fragment with a whole record glued after it (both counted)
    seen,             // a seen marker: no record, not torn
    fragment_seen,    // a torn fragment with a whole seen marker glued after it
    torn,             // no record in the line
    blank,            // an empty line (a fragment's newline): nothing
  };
  Outcome parse(std::string_view line, Parsed& out);

  // The last parsed record's value. REQUIRES: parse() found a record with a value.
  nlohmann::json value() const;
  // The whole Record. REQUIRES: parse() found a record.
  Record to_record(const Parsed& p, std::uint64_t segment, std::uint64_t line_offset) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The canonical needle for a key: "key":"<escaped>" (with `closed`, its closing quote).
std::string key_needle(std::string_view key, bool closed);

// What for_each_record reports besides records, in log order among them (each may be unset).
struct LineEvents {
  // A torn or unreadable line: its segment and the offset of its line.
  std::function<void(std::uint64_t segment, std::uint64_t offset)> torn;
  // A seen marker. Only with an empty query (a filtered read skips lines that name no key).
  std::function<void(const Seen&)> seen;
};

// History::for_each over the log of the store in `store_dir`, also reporting `events`.
// Defined in history.cpp.
std::size_t for_each_record(const std::filesystem::path& store_dir, const Query& query,
                            const std::function<bool(const Record&)>& fn, const LineEvents& events);

}  // namespace lockdb::detail::log_reader
