// The history log's writer (private): used by Store to append one record per change while the
// key is still locked. The reader side is public (history.hpp). On-disk layout and record
// fields: log_format.hpp and docs/FORMAT.md; the append protocol: log_writer.cpp.
#pragma once

#include <lockdb/durability.hpp>
#include <lockdb/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "os.hpp"

namespace lockdb::detail {

// What one record says. Rendered to one JSON line by render_record().
struct RecordFields {
  std::chrono::system_clock::time_point time;
  std::string_view key;
  std::string_view op;
  const nlohmann::json* value = nullptr;  // nullptr: absent (erase)
  // Optional: `value` already serialized as compact one-line JSON text (e.g. the key file's
  // bytes). When set (non-empty), it is written as is instead of serializing `value` again,
  // which saves about half of render_record's cost. REQUIRES: the same value as `value`, no '\n'.
  std::string_view value_json;
  std::optional<std::string_view> prev_version;  // nullopt: the key did not exist before
  std::optional<std::string_view> version;       // nullopt: the key does not exist after
  // update_many's transaction id (16 hex digits), empty for a single-key write: every record
  // of one update_many carries it, and they are appended together (LogWriter::append_lines).
  std::string_view txn;
};

// One JSON object on one line, no trailing newline; adds pid and host.
std::string render_record(const RecordFields& fields);

// The record was appended whole, but the fsync that followed failed (Durability file or full):
// the record is in the log and readers see it; it may not survive power loss.
class LogSyncError : public Error {
 public:
  using Error::Error;
};

// Appends records to `<store>/log/`. Thread-safe. Many processes may append at once: each
// record lands whole, on its own line, exactly once, in the order the appends happen, also
// across segment rotation. With Durability::full (or file) the segment is fsynced before
// append() returns. THROWS Error{io|permission} naming the segment; a failed append leaves at
// most a torn last line, which readers skip and the next append does not glue onto. A failed
// fsync after a whole append THROWS LogSyncError instead: the record is in the log.
class LogWriter {
 public:
  // `log_dir` is made when missing and opened by its path. `create`: how what the writer creates
  // (the directory, the lock file, segments) gets its mode (a group-shared store's).
  LogWriter(std::filesystem::path log_dir, std::uint64_t segment_bytes, Durability durability,
            os::CreateMode create = {});
  // The log directory open at `log_dir_fd` (a descriptor of its own is kept), whose path is
  // `log_dir`: every file in it is opened by name, following no link. THROWS Error{io}.
  LogWriter(std::filesystem::path log_dir, int log_dir_fd, std::uint64_t segment_bytes,
            Durability durability, os::CreateMode create = {});
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // REQUIRES: record_line is one line (no '\n'). Blocks only while a rotation or the start of
  // a compaction (or another program) holds the log lock exclusive (microseconds to
  // milliseconds), or another thread of this process appends, and never past `deadline`
  // (nullopt: no limit): then THROWS Timeout naming the log lock and its holder, with nothing
  // appended.
  void append(std::string_view record_line,
              std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  // append() of several records in one write, so that they land together, one after another:
  // `record_lines` joined by '\n' (no trailing newline). REQUIRES: each is one record line.
  void append_lines(std::string_view record_lines,
                    std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  // Starts a new segment now when the newest one holds any record (compaction does this first,
  // so that every older segment is final). Returns the newest segment's number.
  std::uint64_t rotate();
  // The lock file that coordinates appenders and rotation.
  std::filesystem::path lock_file() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockdb::detail
