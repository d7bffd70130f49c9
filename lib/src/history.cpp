// History: reading the log (queries, value_at, end, read_from). Compaction lives in
// history_compact.cpp, rebuild in history_rebuild.cpp: both sit above History, beside the
// store's verify and repair.
//
// Reading takes no lock. A query works on a snapshot (log_reader.hpp): the segments listed and
// opened at its start, each read up to its size at the moment it is reached, so records appended
// later to the newest segment may or may not be seen, and records in segments created later are
// not. Filtering by key (or key prefix, or op) first looks for the exact text the writer
// produces ("key":"<escaped key>") in the raw bytes with memmem, over 1 MB reads; only lines that
// contain it are parsed (RapidJSON), and the parsed key is compared exactly, so a value that
// happens to contain the text does not match. Time filters compare the canonical time at the
// start of each line before parsing it.
#include <lockdb/history.hpp>

#include <algorithm>

#include "json_io.hpp"
#include "log_format.hpp"
#include "log_reader.hpp"
#include "os.hpp"
#include "store_backend.hpp"
#include "store_format.hpp"

namespace lockdb {
namespace fmt = detail::log_format;
namespace reader = detail::log_reader;

namespace {

constexpr std::string_view kMarkerFile = detail::store_format::kMarkerFile;
constexpr std::string_view kLogDir = detail::store_format::kLogDir;

// What a query selects, with its raw-bytes prefilter.
class Matcher {
 public:
  explicit Matcher(const Query& q) : q_(q) {
    if (q.key) {
      needle_ = reader::key_needle(*q.key, /*closed=*/true);
    } else if (q.key_prefix && !q.key_prefix->empty()) {
      needle_ = reader::key_needle(*q.key_prefix, /*closed=*/false);
    } else if (q.op) {
      needle_.append("\"").append(fmt::kFieldOp).append("\":\"");
      detail::json_io::append_escaped(needle_, *q.op);
      needle_ += '"';
    }
  }

  const std::string& needle() const { return needle_; }

  // False when the line's canonical time prefix already rules it out.
  bool time_may_match(std::string_view line) const {
    if (!q_.since && !q_.until) return true;
    const std::size_t at = fmt::kRecordStart.size();
    if (line.size() < at + fmt::kTimeChars + 1 || line.substr(0, at) != fmt::kRecordStart ||
        line[at + fmt::kTimeChars] != '"') {
      return true;
    }
    auto t = fmt::parse_time(line.substr(at, fmt::kTimeChars));
    if (!t || time_matches(*t)) return true;
    // Out of range, unless a torn fragment hides another record further on the line.
    return line.find(fmt::kRecordStart, 1) != std::string_view::npos;
  }

  bool matches(const reader::Parsed& p) const {
    if (q_.key && p.key != *q_.key) return false;
    if (q_.key_prefix && !p.key.starts_with(*q_.key_prefix)) return false;
    if (q_.op && p.op != *q_.op) return false;
    return time_matches(p.time);
  }

 private:
  bool time_matches(std::chrono::system_clock::time_point t) const {
    return (!q_.since || t >= *q_.since) && (!q_.until || t < *q_.until);
  }

  const Query& q_;
  std::string needle_;
};

// Parses the lines a scan hands over and passes on matching records. Counts torn lines; seen
// markers are neither records nor torn (events.seen hears of them).
class LineHandler {
 public:
  LineHandler(const Matcher& m, const Query& q, const std::function<bool(const Record&)>& fn,
              const reader::LineEvents& events)
      : matcher_(m), query_(q), fn_(fn), events_(events) {}

  // False to stop (limit reached or fn said so).
  bool line(std::string_view text, std::uint64_t segment, std::uint64_t offset) {
    if (!matcher_.time_may_match(text)) return true;
    reader::Parsed p;
    switch (parser_.parse(text, p)) {
      case reader::RecordParser::Outcome::blank: return true;
      case reader::RecordParser::Outcome::torn: count_torn(segment, offset); return true;
      case reader::RecordParser::Outcome::fragment_record: count_torn(segment, offset); break;
      case reader::RecordParser::Outcome::record: break;
      case reader::RecordParser::Outcome::fragment_seen:
        count_torn(segment, offset);
        [[fallthrough]];
      case reader::RecordParser::Outcome::seen:
        if (events_.seen) events_.seen(p.seen);
        return true;
    }
    if (!matcher_.matches(p)) return true;
    ++delivered_;
    if (!fn_(parser_.to_record(p, segment, offset))) return false;
    return !query_.limit || delivered_ < *query_.limit;
  }

  // A last line without its newline that parses (a record or a seen marker): its newline is
  // simply not visible yet.
  bool is_whole(std::string_view text) {
    reader::Parsed p;
    const auto outcome = parser_.parse(text, p);
    return outcome == reader::RecordParser::Outcome::record ||
           outcome == reader::RecordParser::Outcome::seen;
  }
  // A last line without its newline, at `offset` of `segment`: a write still in flight, or a
  // torn line. Counted as torn unless it parses.
  void tail(std::string_view text, std::uint64_t segment, std::uint64_t offset) {
    if (!is_whole(text)) count_torn(segment, offset);
  }

  std::size_t torn() const { return torn_; }

 private:
  void count_torn(std::uint64_t segment, std::uint64_t offset) {
    ++torn_;
    if (events_.torn) events_.torn(segment, offset);
  }

  const Matcher& matcher_;
  const Query& query_;
  const std::function<bool(const Record&)>& fn_;
  const reader::LineEvents events_;  // a copy: callers may pass a temporary
  reader::RecordParser parser_;
  std::size_t torn_ = 0;
  std::size_t delivered_ = 0;
};

LogPosition position_of(const reader::SegmentFile& s, std::uint64_t offset) {
  LogPosition p;
  p.segment = s.number;
  p.offset = offset;
  p.segment_id = s.id;
  return p;
}

// Where a read_from(`from`) starts in the snapshot: the index of a segment and an offset in it.
// nullopt: `from` is past the newest segment (nothing to read yet).
std::optional<std::pair<std::size_t, std::uint64_t>> resolve(
    const std::vector<reader::SegmentFile>& segs, const LogPosition& from) {
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const auto& s = segs[i];
    if (s.number != from.segment) continue;
    if (from.segment_id != 0 && s.id != 0 && s.id != from.segment_id) break;  // replaced
    const std::uint64_t size = s.size();
    if (from.offset > size) break;  // not this file's position
    std::uint64_t off = std::max(from.offset, s.first_record);
    if (from.segment_id == 0 && off > s.first_record) {
      // A position without an id: make sure it is at a line start, else skip to the next one.
      char prev = '\n';
      auto r = os::pread_into(s.fd, &prev, 1, static_cast<off_t>(off - 1));
      if (!r.ok()) os::throw_errno("cannot read log segment", s.path, r.err);
      if (prev != '\n') {
        reader::ScanResult skip =
            reader::scan(s, off, size, {}, [](std::string_view, std::uint64_t) { return false; });
        off = skip.stopped ? skip.end : size;
      }
    }
    return std::pair{i, off};
  }
  if (segs.empty()) return std::nullopt;
  // The segment was replaced by a compaction: continue where its kept records are. Exact when
  // `from` was at its end; otherwise its kept records are delivered again (never lost).
  const auto& c = segs.front();
  if (c.compacted) {
    for (std::size_t k = 0; k < c.replaced.size(); ++k) {
      const auto& e = c.replaced[k];
      if (e.segment != from.segment || (from.segment_id != 0 && e.id != from.segment_id)) continue;
      std::uint64_t at = e.at;
      if (from.offset >= e.bytes && from.offset > 0) {
        at = k + 1 < c.replaced.size() ? c.replaced[k + 1].at : c.size() - c.first_record;
      }
      return std::pair{std::size_t{0}, c.first_record + at};
    }
  }
  if (from.segment > segs.back().number) return std::nullopt;
  // Older than anything the snapshot knows: from the start of the oldest segment (a compacted
  // one holds all that is left of the older ones). Not found in a gap: the next segment.
  std::size_t i = 0;
  if (!segs.front().compacted) {
    while (segs[i].number < from.segment) ++i;
  }
  return std::pair{i, segs[i].first_record};
}

}  // namespace

History::History(std::filesystem::path store_dir)
    : dir_(std::move(store_dir)), backend_(detail::open_history_backend(dir_)) {
  if (backend_) return;
  const auto marker = dir_ / kMarkerFile;
  if (auto st = os::stat(marker); !st.ok()) {
    if (st.err == ENOENT || st.err == ENOTDIR) {
      throw Error(Errc::not_found, "not a lockdb store", dir_,
                  "it has no " + std::string(kMarkerFile));
    }
    os::throw_errno("cannot open store", marker, st.err);
  }
}

std::size_t History::for_each(const Query& query,
                              const std::function<bool(const Record&)>& fn) const {
  if (backend_) return backend_->for_each(query, fn);
  return reader::for_each_record(dir_, query, fn, {});
}

std::size_t reader::for_each_record(const std::filesystem::path& store_dir, const Query& query,
                                    const std::function<bool(const Record&)>& fn,
                                    const LineEvents& events) {
  if (query.limit && *query.limit == 0) return 0;
  const Matcher matcher(query);
  LineHandler handler(matcher, query, fn, events);
  const auto log_dir = store_dir / kLogDir;
  const auto segs = reader::snapshot(log_dir);
  for (const auto& s : segs) {
    reader::ScanResult r = reader::scan(s, s.first_record, s.size(), matcher.needle(),
                                        [&](std::string_view line, std::uint64_t off) {
                                          return handler.line(line, s.number, off);
                                        });
    if (r.stopped) break;
    if (r.tail.empty() || handler.is_whole(r.tail)) continue;
    // A last line that is not a record: a torn line, or an append caught in flight (a record
    // that crosses a page boundary becomes visible in two steps). Once the appends in flight
    // have finished, that line is read again: now whole, or still torn.
    if (!reader::wait_for_appends(log_dir)) {
      handler.tail(r.tail, s.number, r.end);
      continue;
    }
    bool more = true;
    reader::ScanResult again =
        reader::scan(s, r.end, s.size(), {}, [&](std::string_view line, std::uint64_t off) {
          more = handler.line(line, s.number, off);
          return false;  // only that line: what follows it came after this snapshot
        });
    if (!more) break;
    if (!again.stopped) handler.tail(again.tail, s.number, r.end);  // still no newline: torn
  }
  return handler.torn();
}

std::vector<Record> History::records(const Query& query) const {
  std::vector<Record> out;
  for_each(query, [&](const Record& r) {
    out.push_back(r);
    return true;
  });
  return out;
}

std::optional<nlohmann::json> History::value_at(const std::string& key,
                                                std::chrono::system_clock::time_point t) const {
  Query q;
  q.key = key;
  std::optional<nlohmann::json> value;
  for_each(q, [&](const Record& r) {
    if (r.time <= t) value = r.value;
    return true;
  });
  return value;
}

std::vector<std::filesystem::path> History::segments() const {
  std::vector<std::filesystem::path> out;
  if (backend_) return out;
  for (const auto& s : reader::snapshot(dir_ / kLogDir)) out.push_back(s.path);
  return out;
}

LogPosition History::end() const {
  if (backend_) return backend_->end();
  const auto segs = reader::snapshot(dir_ / kLogDir, reader::Segments::newest);
  if (segs.empty()) return LogPosition{};
  const auto& s = segs.back();
  return position_of(s, reader::last_line_end(s, s.size()));
}

LogPosition History::read_from(LogPosition from, const Query& query,
                               const std::function<void(const Record&)>& fn) const {
  if (query.limit && *query.limit == 0) return from;
  if (backend_) return backend_->read_from(from, query, fn);
  // Only the segments from `from` on: a compacted segment that replaced `from`'s has a number at
  // least as high, so it is among them.
  const auto segs = reader::snapshot(dir_ / kLogDir, reader::Segments::all, from.segment);
  const auto start = resolve(segs, from);
  if (!start) return from;
  const Matcher matcher(query);
  const std::function<bool(const Record&)> deliver = [&fn](const Record& r) {
    fn(r);
    return true;
  };
  LineHandler handler(matcher, query, deliver, {});
  auto [index, offset] = *start;
  LogPosition pos = position_of(segs[index], offset);
  for (std::size_t i = index; i < segs.size(); ++i) {
    const auto& s = segs[i];
    const std::uint64_t begin = i == index ? offset : s.first_record;
    reader::ScanResult r = reader::scan(s, begin, s.size(), matcher.needle(),
                                        [&](std::string_view line, std::uint64_t off) {
                                          return handler.line(line, s.number, off);
                                        });
    pos = position_of(s, r.end);
    if (r.stopped) return pos;
    // An unfinished last line waits for the next call; in a sealed segment (a later one exists)
    // it can never be finished: a torn line, skipped.
    if (!r.tail.empty() && i + 1 == segs.size()) return pos;
  }
  return pos;
}

}  // namespace lockdb
