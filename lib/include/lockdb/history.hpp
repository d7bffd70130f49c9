// History: the store's append-only change log.
//
// Every change to a store is one JSON line (a record) in the log directory `<store>/log/`,
// appended while the key is still locked, so a key's records are in its commit order. The log
// is split into segments ("<n>.jsonl", numbered from 1); the writer starts a new segment when
// the current one reaches StoreOptions::log_segment_bytes, without losing or duplicating a
// record while many processes append. Readers see all segments, in order, as one history.
//
// Record fields (docs/FORMAT.md has the long form):
//   "time"    UTC, RFC 3339 with microseconds        "key"     the key
//   "op"      put | update | increment | erase | cas | update_many | repair
//   "value"   the new value (absent on erase)        "prev"    previous version (null: absent)
//   "version" new version (null: erased)             "pid", "host"  who wrote it
// A crash can leave a torn last line; readers skip it (and count it), never misread it, and the
// next writer starts a fresh line.
//
// Reading is safe while writers run and takes no lock, except that a reader which meets an
// unfinished last line waits (up to 1 s) for the log's lock, so that appends in flight finish
// before it tells them from a torn line. Filtering by key first looks for the
// key's exact text in the raw bytes and parses (RapidJSON) only the lines that contain it.
// A History object is thread-safe for reading. It only reads: bounding the log and making a store
// from it are store maintenance (compact_history_*, rebuild_store: store.hpp).
#pragma once

#include <lockdb/config.hpp>
#include <lockdb/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lockdb {

namespace detail {
class HistoryBackend;
}  // namespace detail

struct Record {
  std::chrono::system_clock::time_point time{};
  std::string key{};
  std::string op{};
  std::optional<nlohmann::json> value{};      // absent on erase
  std::optional<std::string> prev_version{};  // absent: the key did not exist before
  std::optional<std::string> version{};       // absent: the key does not exist after (erase)
  long pid = 0;
  std::string host{};
  // Where the record is: segment number and byte offset of its line.
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
};

// Which records to read. Unset fields match everything. `until` is exclusive.
struct Query {
  std::optional<std::string> key{};
  std::optional<std::string> key_prefix{};
  std::optional<std::chrono::system_clock::time_point> since{};
  std::optional<std::chrono::system_clock::time_point> until{};
  std::optional<std::string> op{};
  std::optional<std::size_t> limit{};  // at most this many (the first ones in log order)
};

// A position in the log: the next byte to read. Positions come from end() and read_from();
// {segment, offset} without an id is accepted too (an offset inside a line moves on to the next
// line start).
struct LogPosition {
  std::uint64_t segment = 1;
  std::uint64_t offset = 0;
  // The segment's id (from its header; 0: unknown). A compaction replaces segments by new files
  // with new ids, which lets read_from() tell a position in a replaced segment from one in its
  // replacement.
  std::uint64_t segment_id = 0;
};

class History {
 public:
  // Reads the log of the store in `store_dir`. THROWS Error{not_found} when there is no store.
  // `store_dir` may be an etcd location ("etcd://...", store.hpp): the same queries over the
  // store's audit records in etcd. There a Record's `segment` is the etcd revision that wrote
  // it (offset 0), a LogPosition's `segment` is the revision to read from, read_from() waits up
  // to a second on an etcd watch when nothing is new, and segments() is empty.
  explicit History(std::filesystem::path store_dir);

  // Calls fn for each matching record in log order until fn returns false. Returns the number
  // of torn (unparseable) lines skipped. THROWS Error{io|permission} naming the segment.
  std::size_t for_each(const Query& query, const std::function<bool(const Record&)>& fn) const;
  std::vector<Record> records(const Query& query = {}) const;

  // The key's value at time t (the last record at or before t); nullopt when absent then.
  std::optional<nlohmann::json> value_at(const std::string& key,
                                         std::chrono::system_clock::time_point t) const;

  // Segment files in order, and the position just past the last complete line.
  std::vector<std::filesystem::path> segments() const;
  LogPosition end() const;
  // Reads the complete records appended at or after `from`, in order, following rotation into
  // later segments; returns the position to continue from (a torn or unfinished last line is
  // left for the next call). For `lockdb log --follow`. query.limit counts within this call.
  // Compaction while following: a follower that had read its segment to the end continues
  // exactly (no record twice, none missed); one that was behind inside a segment that compaction
  // replaced gets that segment's kept records from their start (some again, none missed). A
  // follower that slept through two compactions starts over at the compacted segment.
  LogPosition read_from(LogPosition from, const Query& query,
                        const std::function<void(const Record&)>& fn) const;

 private:
  std::filesystem::path dir_;                        // constant after construction
  std::shared_ptr<detail::HistoryBackend> backend_;  // set for an etcd location, else null
};

}  // namespace lockdb
