// History compaction: bounds the log without losing any key's current value.
//
// Safe while writers append and readers read, crash-safe at every step:
//   1. compact.lock exclusive: one compaction at a time (leftover temp files of a crashed one
//      are removed now).
//   2. Rotate (the log lock exclusive for that moment only): the segments below the new newest
//      one are sealed; nobody appends to them again. Writers keep appending to the new segment
//      while the rest runs.
//   3. Read the sealed segments (a reader's snapshot) and decide per key which records to keep:
//      a suffix of each key's records (so an erase is never dropped while an older put of the
//      same key is kept), always including a live key's latest record.
//   4. Write the kept lines, byte for byte, after a "compacted" header naming every segment it
//      replaces, to a temp file; fsync it (always: the originals are about to go).
//   5. Rename it over the highest sealed segment M (fsync the directory). This is the commit
//      point: from here on readers ignore the segments below M, whether or not they are gone.
//   6. Remove the segments below M (fsync the directory).
// A crash before 5 leaves the log as it was (plus a temp file, removed by the next compaction);
// after 5, a log whose leftovers below M readers skip and the next compaction removes.
//
// Readers that are following (read_from) and were in a replaced segment are moved into the
// compacted one via its header's "replaced" list (see history.hpp, read_from).
//
// Links. The log directory is opened beneath the store's directory, following no link (a
// symbolic link planted at log/, or a file there, is Error{invalid_argument} naming it), and
// every file compaction creates, renames or removes is named relative to that descriptor, so
// nothing planted in the store leads a write outside it. Segments are only read (each opened
// with O_NOFOLLOW by the reader).
#include <lockdb/file_lock.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <algorithm>
#include <unordered_map>

#include <fcntl.h>

#include "log_format.hpp"
#include "log_reader.hpp"
#include "log_writer.hpp"
#include "os.hpp"
#include "store_backend.hpp"
#include "store_format.hpp"

namespace lockdb {
namespace fmt = detail::log_format;
namespace reader = detail::log_reader;

namespace {

struct Rule {
  std::optional<std::size_t> keep_last;
  std::optional<std::chrono::system_clock::time_point> before;
  std::string text;  // for the header: "keep_last 3", "before <time>"
};

// One record of the sealed segments, as the first pass saw it.
struct Line {
  std::uint64_t offset = 0;   // of the record (after a torn fragment, if one preceded it)
  std::uint32_t segment = 0;  // index into the sealed segments
  std::uint32_t key = 0;      // index into keys
  std::uint32_t bytes = 0;    // of the record's text, without the newline
  bool erase = false;
  bool at_or_after = false;  // time >= rule.before
  bool kept = false;
};

struct KeyStats {
  std::uint64_t count = 0;
  std::uint64_t seen = 0;
  std::uint64_t first_at_or_after = UINT64_MAX;  // index among the key's records
  std::size_t last_line = 0;                     // index into lines
};

class OutFile {
 public:
  OutFile(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  void add(std::string_view text) {
    buffer_ += text;
    bytes_ += text.size();
    if (buffer_.size() >= (1u << 20)) flush();
  }
  void flush() {
    if (auto s = os::write_all(fd_, buffer_); !s.ok()) {
      os::throw_errno("cannot write the compacted log segment", path_, s.err);
    }
    buffer_.clear();
  }
  std::uint64_t bytes() const { return bytes_; }

 private:
  int fd_;
  std::filesystem::path path_;
  std::string buffer_;
  std::uint64_t bytes_ = 0;
};

// The temp file (`name` in the log directory `dir_fd`), removed unless committed.
struct TempFile {
  int dir_fd = -1;
  std::filesystem::path path;
  std::string name;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    os::close(fd);
    if (!committed && !name.empty()) (void)os::unlink_at(dir_fd, name);
  }
};

// Removes every segment numbered below `number` (superseded by the compacted segment `number`)
// from the log directory `log_fd` (whose path is `log_dir`).
void remove_below(int log_fd, const std::filesystem::path& log_dir, std::uint64_t number) {
  auto names = os::list_dir(log_fd);
  if (!names.ok()) os::throw_errno("cannot list the log directory", log_dir, names.err);
  bool removed = false;
  for (const auto& name : names.value) {
    auto n = fmt::parse_segment_name(name);
    if (!n || *n >= number) continue;
    if (auto s = os::unlink_at(log_fd, name); !s.ok() && s.err != ENOENT) {
      os::throw_errno("cannot remove a compacted log segment (readers skip it)", log_dir / name,
                      s.err);
    }
    removed = true;
  }
  if (!removed) return;
  if (auto s = os::fsync(log_fd); !s.ok()) os::throw_errno("cannot fsync", log_dir, s.err);
}

// What compaction keeps of `sealed` under `rule`. `sealed_all`: false when the last segment is
// the live one (its unfinished tail is an append in flight, not a torn line).
struct Plan {
  std::vector<std::uint64_t> sizes;
  std::vector<Line> lines;
  std::size_t torn = 0;
  std::size_t kept = 0;
};

Plan plan_compaction(const std::vector<reader::SegmentFile>& sealed, const Rule& rule,
                     bool sealed_all) {
  Plan plan;
  auto& sizes = plan.sizes;
  auto& lines = plan.lines;
  auto& torn = plan.torn;
  auto& kept = plan.kept;
  std::vector<KeyStats> stats;
  std::unordered_map<std::string, std::uint32_t> key_index;
  reader::RecordParser parser;
  for (std::uint32_t si = 0; si < sealed.size(); ++si) {
    const auto& s = sealed[si];
    sizes.push_back(s.size());
    auto r = reader::scan(
        s, s.first_record, sizes.back(), {}, [&](std::string_view text, std::uint64_t off) {
          reader::Parsed p;
          switch (parser.parse(text, p)) {
            case reader::RecordParser::Outcome::blank: return true;
            case reader::RecordParser::Outcome::torn: ++torn; return true;
            case reader::RecordParser::Outcome::fragment_record: ++torn; break;
            case reader::RecordParser::Outcome::record: break;
            // A seen marker goes with the torn lines it acknowledges (those before it, which
            // compaction drops).
            case reader::RecordParser::Outcome::fragment_seen: ++torn; return true;
            case reader::RecordParser::Outcome::seen: return true;
          }
          auto [it, fresh] =
              key_index.try_emplace(std::string(p.key), static_cast<std::uint32_t>(stats.size()));
          if (fresh) stats.emplace_back();
          KeyStats& k = stats[it->second];
          Line line;
          line.offset = off + p.offset_in_line;
          line.segment = si;
          line.bytes = static_cast<std::uint32_t>(text.size() - p.offset_in_line);
          line.key = it->second;
          line.erase = !p.has_value;
          line.at_or_after = rule.before && p.time >= *rule.before;
          if (line.at_or_after && k.first_at_or_after == UINT64_MAX) {
            k.first_at_or_after = k.count;
          }
          ++k.count;
          k.last_line = lines.size();
          lines.push_back(line);
          return true;
        });
    // A sealed segment's unfinished tail can never be finished; a live one's is in flight.
    if (!r.tail.empty() && (sealed_all || si + 1 < sealed.size())) ++torn;
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    Line& line = lines[i];
    KeyStats& k = stats[line.key];
    const std::uint64_t index = k.seen++;
    if (rule.keep_last) {
      line.kept = k.count - index <= *rule.keep_last;
    } else {
      line.kept = index >= k.first_at_or_after;
    }
    if (i == k.last_line && !line.erase) line.kept = true;  // a live key's current value
    kept += line.kept;
  }
  return plan;
}

std::size_t compact(const std::filesystem::path& store_dir, const Rule& rule) {
  const auto log_dir = store_dir / detail::store_format::kLogDir;
  auto root = os::open(store_dir, O_RDONLY | O_DIRECTORY);
  if (!root.ok()) os::throw_errno("cannot compact the log", store_dir, root.err);
  const os::Fd root_fd(root.value);
  // In a group-shared store, what the compaction creates gets the group's bits as writes' do.
  const auto root_st = os::fstat(root_fd.get());
  if (!root_st.ok()) os::throw_errno("cannot compact the log", store_dir, root_st.err);
  const os::CreateMode create = os::create_mode_of_root(root_st.value.mode);
  auto opened =
      os::open_beneath(root_fd.get(), detail::store_format::kLogDir, O_RDONLY | O_DIRECTORY);
  if (!opened.ok()) {
    if (opened.err == ENOENT) return 0;  // nothing logged yet
    os::throw_beneath("cannot compact the log", store_dir.native(), root_fd.get(),
                      detail::store_format::kLogDir, opened.err);
  }
  const os::Fd log_fd(opened.value);
  // Its lock file is opened by path (FileLock), but in the directory just checked, and never
  // followed itself.
  LockOptions lock_options;
  if (create.group_shared) lock_options.mode = create.file_mode;
  FileLock compact_lock(log_dir / fmt::kCompactLockFile, lock_options);
  auto held = compact_lock.acquire();

  // 1. Leftovers of a compaction that crashed before its rename.
  auto names = os::list_dir(log_fd.get());
  if (!names.ok()) os::throw_errno("cannot list the log directory", log_dir, names.err);
  for (const auto& name : names.value) {
    if (name.starts_with(fmt::kCompactTempPrefix) && name.ends_with(fmt::kTempSuffix)) {
      (void)os::unlink_at(log_fd.get(), name);
    }
  }
  {
    // Nothing to drop (and no torn line to clean): the log stays exactly as it is.
    const auto all = reader::snapshot(log_dir);
    if (all.empty()) return 0;
    const Plan dry = plan_compaction(all, rule, /*sealed_all=*/false);
    if (dry.kept == dry.lines.size() && dry.torn == 0) {
      // Segments an earlier compaction superseded but failed to remove still go.
      if (all.front().compacted) remove_below(log_fd.get(), log_dir, all.front().number);
      return 0;
    }
  }

  // 2. Seal everything there is.
  detail::LogWriter writer(log_dir, log_fd.get(), 0, Durability::full, create);
  const std::uint64_t newest = writer.rotate();

  // 3. Read the sealed segments and decide.
  std::vector<reader::SegmentFile> sealed;
  for (auto& s : reader::snapshot(log_dir)) {
    if (s.number < newest) sealed.push_back(std::move(s));
  }
  if (sealed.empty()) return 0;
  Plan plan = plan_compaction(sealed, rule, /*sealed_all=*/true);
  const auto& sizes = plan.sizes;
  auto& lines = plan.lines;
  const std::size_t torn = plan.torn, kept = plan.kept;
  const std::size_t dropped = lines.size() - kept;
  if (dropped == 0 && torn == 0) {
    if (sealed.front().compacted) remove_below(log_fd.get(), log_dir, sealed.front().number);
    return 0;
  }

  // 4. Write the kept lines after the header.
  TempFile temp;
  temp.dir_fd = log_fd.get();
  std::string temp_path;
  auto fd = os::create_temp_at(log_fd.get(), log_dir.native(), fmt::kCompactTempPrefix, &temp_path,
                               0666, os::TempName::random, create);
  if (!fd.ok()) os::throw_errno("cannot create the compacted log segment", log_dir, fd.err);
  temp.fd = fd.value;
  temp.name = temp_path.substr(log_dir.native().size() + 1);
  temp.path = std::move(temp_path);
  const auto& target = sealed.back();
  // Where each sealed segment's kept records begin, counted from the first record.
  std::vector<std::uint64_t> at(sealed.size() + 1, 0);
  for (const Line& line : lines) {
    if (line.kept) at[line.segment + 1] += line.bytes + 1;
  }
  for (std::size_t si = 0; si < sealed.size(); ++si) at[si + 1] += at[si];
  nlohmann::json replaced = nlohmann::json::array();
  for (std::size_t si = 0; si < sealed.size(); ++si) {
    replaced.push_back({{fmt::kReplacedSegment, sealed[si].number},
                        {fmt::kReplacedId, fmt::id_text(sealed[si].id)},
                        {fmt::kReplacedBytes, sizes[si]},
                        {fmt::kReplacedAt, at[si]}});
  }
  const auto now = std::chrono::system_clock::now();
  std::string header = fmt::render_header(target.number, fmt::new_segment_id(), now);
  header.pop_back();  // reopen the object to add "compacted"
  nlohmann::json compacted = {{fmt::kCompactedRule, rule.text},
                              {fmt::kCompactedTime, fmt::format_time(now)},
                              {fmt::kCompactedKept, kept},
                              {fmt::kCompactedDropped, dropped},
                              {fmt::kCompactedReplaced, std::move(replaced)}};
  header += ",\"" + std::string(fmt::kHeaderCompacted) + "\":" + compacted.dump() + "}\n";
  OutFile out(temp.fd, temp.path);
  out.add(header);
  std::size_t cursor = 0;
  for (std::uint32_t si = 0; si < sealed.size(); ++si) {
    const auto& s = sealed[si];
    (void)reader::scan(s, s.first_record, sizes[si], {},
                       [&](std::string_view text, std::uint64_t off) {
                         const std::uint64_t end = off + text.size();
                         while (cursor < lines.size() && lines[cursor].segment == si &&
                                lines[cursor].offset < end) {
                           const Line& line = lines[cursor++];
                           if (line.kept && line.offset >= off) {
                             out.add(text.substr(line.offset - off));
                             out.add("\n");
                           }
                         }
                         return true;
                       });
  }
  if (out.bytes() != header.size() + at.back()) {  // the sealed segments cannot change
    throw Error(Errc::io, "cannot compact the log", log_dir,
                "a sealed segment changed while it was compacted");
  }
  out.flush();
  if (auto s = os::fsync(temp.fd); !s.ok()) {
    os::throw_errno("cannot fsync the compacted log segment", temp.path, s.err);
  }

  // 5. Commit.
  if (auto s = os::rename_at(log_fd.get(), temp.name, log_fd.get(), target.path.filename());
      !s.ok()) {
    os::throw_errno("cannot rename the compacted log segment into place", target.path, s.err);
  }
  temp.committed = true;
  if (auto s = os::fsync(log_fd.get()); !s.ok()) os::throw_errno("cannot fsync", log_dir, s.err);

  // 6. Remove what it replaced, and leftovers of earlier crashed compactions.
  remove_below(log_fd.get(), log_dir, target.number);
  return dropped;
}

}  // namespace

std::size_t compact_history_keep_last(const std::filesystem::path& store, std::size_t keep_last) {
  if (auto backend = detail::open_history_backend(store)) {
    return backend->compact_keep_last(keep_last);
  }
  (void)History(store);  // Error{not_found} when there is no store
  Rule rule;
  rule.keep_last = keep_last;
  rule.text = "keep_last " + std::to_string(keep_last);
  return compact(store, rule);
}

std::size_t compact_history_before(const std::filesystem::path& store,
                                   std::chrono::system_clock::time_point before) {
  if (auto backend = detail::open_history_backend(store)) return backend->compact_before(before);
  (void)History(store);  // Error{not_found} when there is no store
  Rule rule;
  rule.before = before;
  rule.text = "before " + fmt::format_time(before);
  return compact(store, rule);
}

}  // namespace lockdb
