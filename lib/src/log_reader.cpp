#include "log_reader.hpp"

#include <lockdb/error.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <map>
#include <thread>
#include <utility>

#include <fcntl.h>

#include "json_io.hpp"
#include "log_format.hpp"
#include "os.hpp"
#include "rapidjson.hpp"
#include "store_format.hpp"
#include "util.hpp"

namespace lockdb::detail::log_reader {
namespace fmt = log_format;
namespace {

constexpr std::size_t kChunkBytes = 1 << 20;  // one read(2): measured as fast as mmap here
constexpr std::size_t kSimdPadding = 16;      // NUL bytes after a line parsed in situ

// Reads the header line at the start of `s` (if any) into s.id, s.first_record, s.compacted.
void read_header(SegmentFile& s) {
  const std::uint64_t size = s.size();
  std::string head;
  std::size_t nl = std::string::npos;
  while (nl == std::string::npos && head.size() < size) {
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(size - head.size(), 64 * 1024));
    const std::size_t old = head.size();
    head.resize(old + want);
    auto r = os::pread_into(s.fd, head.data() + old, want, static_cast<off_t>(old));
    if (!r.ok()) os::throw_errno("cannot read log segment", s.path, r.err);
    head.resize(old + r.value);
    if (r.value == 0) break;
    if (head.size() >= fmt::kHeaderStart.size() && !head.starts_with(fmt::kHeaderStart)) {
      return;  // no header: records from byte 0
    }
    nl = head.find('\n', old);
  }
  if (!head.starts_with(fmt::kHeaderStart) || nl == std::string::npos) {
    return;  // no header, or one cut short (never written so: segments are renamed into place)
  }
  s.first_record = nl + 1;
  nlohmann::json j;
  try {
    j = json_io::parse(std::string_view(head).substr(0, nl));
  } catch (const nlohmann::json::parse_error&) {
    return;  // a garbled header: skipped, like a torn line
  }
  if (!j.is_object()) return;
  const auto version = j.value(fmt::kHeaderFormat, nlohmann::json()).is_number_integer()
                           ? j[fmt::kHeaderFormat].get<std::int64_t>()
                           : -1;
  if (version > fmt::kLogFormatVersion) {
    throw Error(Errc::version, "cannot read log segment", s.path,
                "it has format version " + std::to_string(version) +
                    "; this lockdb reads up to version " + std::to_string(fmt::kLogFormatVersion));
  }
  if (auto id = j.find(fmt::kHeaderId); id != j.end() && id->is_string()) {
    s.id = fmt::parse_id(id->get<std::string>()).value_or(0);
  }
  auto c = j.find(fmt::kHeaderCompacted);
  if (c == j.end() || !c->is_object()) return;
  s.compacted = true;
  auto list = c->find(fmt::kCompactedReplaced);
  if (list == c->end() || !list->is_array()) return;
  for (const auto& e : *list) {
    if (!e.is_object()) continue;
    Replaced r;
    r.segment = e.value(fmt::kReplacedSegment, std::uint64_t{0});
    if (auto id = e.find(fmt::kReplacedId); id != e.end() && id->is_string()) {
      r.id = fmt::parse_id(id->get<std::string>()).value_or(0);
    }
    r.bytes = e.value(fmt::kReplacedBytes, std::uint64_t{0});
    r.at = e.value(fmt::kReplacedAt, std::uint64_t{0});
    s.replaced.push_back(r);
  }
}

// Calls fn for the complete lines in b[0, n) (which ends with '\n') holding `needle`.
// Returns false when fn stopped; *end is then just past that line.
bool scan_region(const char* b, std::size_t n, std::uint64_t base, std::string_view needle,
                 const LineFn& fn, std::uint64_t* end) {
  std::size_t p = 0;
  while (p < n) {
    const char* line;
    const char* nl;
    if (needle.empty()) {
      line = b + p;
      nl = static_cast<const char*>(std::memchr(line, '\n', n - p));
    } else {
      const void* hit = ::memmem(b + p, n - p, needle.data(), needle.size());
      if (hit == nullptr) return true;
      const char* h = static_cast<const char*>(hit);
      const void* before = ::memrchr(b + p, '\n', static_cast<std::size_t>(h - (b + p)));
      line = before ? static_cast<const char*>(before) + 1 : b + p;
      nl = static_cast<const char*>(std::memchr(h, '\n', static_cast<std::size_t>(b + n - h)));
    }
    const auto line_off = static_cast<std::size_t>(line - b);
    const auto next = static_cast<std::size_t>(nl - b) + 1;
    if (!fn(std::string_view(line, static_cast<std::size_t>(nl - line)), base + line_off)) {
      *end = base + next;
      return false;
    }
    p = next;
  }
  return true;
}

// ---- RapidJSON ----
using Allocator = rapidjson::MemoryPoolAllocator<rapidjson::CrtAllocator>;
using Document = rapidjson::GenericDocument<rapidjson::UTF8<>, Allocator, rapidjson::CrtAllocator>;
using Value = rapidjson::GenericValue<rapidjson::UTF8<>, Allocator>;

std::string_view view(const Value& v) { return {v.GetString(), v.GetStringLength()}; }

// Hands RapidJSON's reader events to the document, and stops the parse (a line that is not a
// record) at an array or object nested deeper than a record holding a value of
// json_io::kMaxDepth levels: the reader, to_json() and everything after them recurse once per
// level. It stops it too at a string (or member name) that is not UTF-8, which RapidJSON's
// reader lets through unless asked to check every byte (which turns off its SIMD scanning):
// JSON text is UTF-8, such a line was not written by a store, and a value holding one could be
// read but not written again (rebuild, lockdb log).
// Numbers come as text (kParseNumbersAsStringsFlag) and are converted here as nlohmann's parser
// converts them: RapidJSON 1.1.0's full-precision conversion reads a zero with a large exponent
// (0E220) as 3.5e219. An integer is unsigned when it fits 64 bits, signed when negative and it
// fits, else (like any number with a fraction or exponent) the nearest double; a number beyond a
// double's range stops the parse, as RapidJSON's own conversion did.
class DepthLimit {
  static constexpr int kMaxLineDepth = json_io::kMaxDepth + 1;  // the record's object, then
                                                                // its value

 public:
  explicit DepthLimit(Document& doc) : doc_(doc) {}
  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(std::int64_t i) { return doc_.Int64(i); }
  bool Uint64(std::uint64_t u) { return doc_.Uint64(u); }
  bool Double(double d) { return doc_.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool /*copy*/) {
    const char* end = s + n;
    if (std::string_view(s, n).find_first_of(".eE") == std::string_view::npos) {
      if (*s == '-') {
        std::int64_t i = 0;
        if (auto r = std::from_chars(s, end, i); r.ec == std::errc{} && r.ptr == end) {
          return doc_.Int64(i);
        }
      } else {
        std::uint64_t u = 0;
        if (auto r = std::from_chars(s, end, u); r.ec == std::errc{} && r.ptr == end) {
          return doc_.Uint64(u);
        }
      }
    }
    double d = 0;
    const auto r = std::from_chars(s, end, d);
    return r.ec == std::errc{} && r.ptr == end && doc_.Double(d);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    return util::valid_utf8({s, n}) && doc_.String(s, n, copy);
  }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    return util::valid_utf8({s, n}) && doc_.Key(s, n, copy);
  }
  bool StartObject() { return ++depth_ <= kMaxLineDepth && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType members) {
    --depth_;
    return doc_.EndObject(members);
  }
  bool StartArray() { return ++depth_ <= kMaxLineDepth && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType elements) {
    --depth_;
    return doc_.EndArray(elements);
  }

 private:
  Document& doc_;
  int depth_ = 0;
};

nlohmann::json to_json(const Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType: return nullptr;
    case rapidjson::kFalseType: return false;
    case rapidjson::kTrueType: return true;
    case rapidjson::kStringType: return std::string(view(v));
    case rapidjson::kNumberType:
      // As nlohmann parses: non-negative integers unsigned, negative ones signed.
      if (v.IsUint64()) return v.GetUint64();
      if (v.IsInt64()) return v.GetInt64();
      return v.GetDouble();
    case rapidjson::kArrayType: {
      nlohmann::json a = nlohmann::json::array();
      a.get_ref<nlohmann::json::array_t&>().reserve(v.Size());
      for (const auto& e : v.GetArray()) a.push_back(to_json(e));
      return a;
    }
    case rapidjson::kObjectType: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& m : v.GetObject()) o[std::string(view(m.name))] = to_json(m.value);
      return o;
    }
  }
  return nullptr;
}

}  // namespace

// ---- SegmentFile ----
SegmentFile::SegmentFile(SegmentFile&& o) noexcept
    : number(o.number),
      path(std::move(o.path)),
      fd(std::exchange(o.fd, -1)),
      id(o.id),
      first_record(o.first_record),
      compacted(o.compacted),
      replaced(std::move(o.replaced)) {}

SegmentFile& SegmentFile::operator=(SegmentFile&& o) noexcept {
  if (this != &o) {
    os::close(fd);
    number = o.number;
    path = std::move(o.path);
    fd = std::exchange(o.fd, -1);
    id = o.id;
    first_record = o.first_record;
    compacted = o.compacted;
    replaced = std::move(o.replaced);
  }
  return *this;
}

SegmentFile::~SegmentFile() { os::close(fd); }

std::uint64_t SegmentFile::size() const {
  auto st = os::fstat(fd);
  if (!st.ok()) os::throw_errno("cannot stat log segment", path, st.err);
  return static_cast<std::uint64_t>(st.value.size);
}

std::vector<SegmentFile> snapshot(const std::filesystem::path& log_dir, Segments which,
                                  std::uint64_t from) {
  auto pause = std::chrono::microseconds(50);
  for (int attempt = 0;; ++attempt) {
    auto names = os::list_dir(log_dir);
    if (!names.ok()) {
      if (names.err == ENOENT) return {};
      os::throw_errno("cannot list the log directory", log_dir, names.err);
    }
    std::map<std::uint64_t, std::string> listed;
    for (auto& name : names.value) {
      if (auto n = fmt::parse_segment_name(name)) {
        auto [it, fresh] = listed.emplace(*n, name);
        if (!fresh) {
          throw Error(Errc::corrupt, "cannot read the log", log_dir,
                      "two segment files have number " + std::to_string(*n) + ": " + it->second +
                          " and " + name);
        }
      }
    }
    if (which == Segments::newest && !listed.empty()) {
      listed.erase(listed.begin(), std::prev(listed.end()));
    }
    listed.erase(listed.begin(), listed.lower_bound(from));
    std::vector<SegmentFile> segs;
    std::uint64_t highest_missing = 0;
    for (const auto& [n, name] : listed) {
      SegmentFile s;
      s.number = n;
      s.path = log_dir / name;
      // A link planted at a segment is not followed, a FIFO does not block the open.
      auto fd = os::open(s.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      if (!fd.ok()) {
        if (fd.err == ENOENT) {  // removed by a compaction since the listing
          highest_missing = n;
          continue;
        }
        if (fd.err == ELOOP) {
          throw Error(Errc::invalid_argument, "cannot open log segment", s.path,
                      "it is a symbolic link (refused, not followed)");
        }
        os::throw_errno("cannot open log segment", s.path, fd.err);
      }
      s.fd = fd.value;
      os::require_plain_file(s.fd, "cannot read log segment", s.path, /*one_link=*/false);
      read_header(s);
      segs.push_back(std::move(s));
    }
    auto newest_compacted =
        std::find_if(segs.rbegin(), segs.rend(), [](const SegmentFile& s) { return s.compacted; });
    if (newest_compacted != segs.rend()) {
      segs.erase(segs.begin(), std::prev(newest_compacted.base()));
    }
    // A segment that vanished is fine only if an opened compacted segment covers it.
    if (highest_missing == 0 ||
        (!segs.empty() && segs.front().compacted && segs.front().number > highest_missing)) {
      return segs;
    }
    if (attempt >= 2000) {
      throw Error(Errc::io, "cannot read a consistent view of the log", log_dir,
                  "segments kept disappearing while it was read");
    }
    std::this_thread::sleep_for(pause);  // a compaction is removing segments: let it finish
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
  }
}

ScanResult scan(const SegmentFile& seg, std::uint64_t start, std::uint64_t limit,
                std::string_view needle, const LineFn& fn) {
  ScanResult res;
  res.end = start;
  if (start >= limit) return res;
  std::size_t cap = static_cast<std::size_t>(std::min<std::uint64_t>(kChunkBytes, limit - start));
  std::unique_ptr<char[]> buf(new char[cap]);
  std::uint64_t base = start;  // file offset of buf[0]
  std::size_t have = 0;
  for (;;) {
    if (have < cap && base + have < limit) {
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(cap - have, limit - base - have));
      auto r = os::pread_into(seg.fd, buf.get() + have, want, static_cast<off_t>(base + have));
      if (!r.ok()) os::throw_errno("cannot read log segment", seg.path, r.err);
      if (r.value == 0) limit = base + have;  // shorter than when we looked: read what is there
      have += r.value;
    }
    const bool at_limit = base + have >= limit;
    const void* last_nl = have ? ::memrchr(buf.get(), '\n', have) : nullptr;
    if (last_nl == nullptr) {
      if (at_limit) {
        res.tail.assign(buf.get(), have);
        return res;
      }
      if (have == cap) {  // a line longer than the buffer
        std::unique_ptr<char[]> bigger(new char[cap * 2]);
        std::memcpy(bigger.get(), buf.get(), have);
        buf = std::move(bigger);
        cap *= 2;
      }
      continue;
    }
    const std::size_t region =
        static_cast<std::size_t>(static_cast<const char*>(last_nl) - buf.get()) + 1;
    if (at_limit || have == cap) {  // scan full buffers only: fewer, larger memmem calls
      if (!scan_region(buf.get(), region, base, needle, fn, &res.end)) {
        res.stopped = true;
        return res;
      }
      res.end = base + region;
      std::memmove(buf.get(), buf.get() + region, have - region);
      base += region;
      have -= region;
      if (at_limit && have == 0) return res;
    }
  }
}

bool wait_for_appends(const std::filesystem::path& log_dir) noexcept {
  try {
    auto fd = os::open(log_dir / fmt::kLockFile, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (!fd.ok()) return false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    const bool had = os::flock_until(fd.value, /*shared=*/false, deadline).ok();
    if (had) (void)os::flock_unlock(fd.value);
    os::close(fd.value);
    return had;
  } catch (...) {
    return false;
  }
}

std::uint64_t last_line_end(const SegmentFile& seg, std::uint64_t size) {
  char buf[64 * 1024];
  std::uint64_t hi = size;
  while (hi > seg.first_record) {
    const std::uint64_t lo = hi > sizeof buf
                                 ? std::max<std::uint64_t>(seg.first_record, hi - sizeof buf)
                                 : seg.first_record;
    const auto n = static_cast<std::size_t>(hi - lo);
    auto r = os::pread_into(seg.fd, buf, n, static_cast<off_t>(lo));
    if (!r.ok()) os::throw_errno("cannot read log segment", seg.path, r.err);
    if (r.value < n) return lo;  // shorter than when we looked
    if (const void* nl = ::memrchr(buf, '\n', n)) {
      return lo + static_cast<std::uint64_t>(static_cast<const char*>(nl) - buf) + 1;
    }
    hi = lo;
  }
  return std::min(seg.first_record, size);
}

// ---- RecordParser ----
struct RecordParser::Impl {
  alignas(8) char pool_buffer[64 * 1024];
  Allocator pool{pool_buffer, sizeof pool_buffer};
  Document doc{&pool};
  rapidjson::Reader reader;
  const Value* value = nullptr;
  std::string text;  // the line being parsed, in situ: strings in `doc` point into it

  // Parses `line` as one whole record or seen marker.
  enum class Whole { none, record, seen };
  Whole parse_exact(std::string_view line, Parsed& out) {
    bool has_seen = false;
    if (!parse_fields(line, out, has_seen)) return Whole::none;
    return has_seen ? Whole::seen : Whole::record;
  }

  // A seen marker's object: segment and offset (unsigned integers), lines (optional).
  static bool parse_seen(const Value& v, Seen& out) {
    if (!v.IsObject()) return false;
    bool has_segment = false, has_offset = false;
    for (const auto& m : v.GetObject()) {
      const std::string_view name = view(m.name);
      if (!m.value.IsUint64()) {
        if (name == fmt::kSeenSegment || name == fmt::kSeenOffset || name == fmt::kSeenLines) {
          return false;
        }
        continue;
      }
      if (name == fmt::kSeenSegment) {
        out.segment = m.value.GetUint64();
        has_segment = true;
      } else if (name == fmt::kSeenOffset) {
        out.offset = m.value.GetUint64();
        has_offset = true;
      } else if (name == fmt::kSeenLines) {
        out.lines = m.value.GetUint64();
      }
    }
    return has_segment && has_offset;
  }

  // A record: time, key and op. A seen marker (`has_seen`): time, op "repair", a valid "seen"
  // and no key.
  bool parse_fields(std::string_view line, Parsed& out, bool& has_seen) {
    doc.SetNull();  // the pool owns the old tree (MemoryPoolAllocator frees nothing itself)
    pool.Clear();
    value = nullptr;
    // In situ on a NUL-terminated copy: no per-string copies, and RapidJSON's SIMD scanning.
    // A NUL byte inside the line ends the text early, so the line cannot parse whole: torn.
    if (line.find('\0') != std::string_view::npos) return false;
    text.assign(line);
    text.append(kSimdPadding, '\0');  // RapidJSON's SSE2 scanning reads whole aligned 16 bytes
    rapidjson::InsituStringStream in(text.data());
    bool parsed = false;
    auto generate = [&](Document& d) {
      DepthLimit limited(d);
      parsed = !reader
                    .Parse<rapidjson::kParseInsituFlag | rapidjson::kParseNumbersAsStringsFlag>(
                        in, limited)
                    .IsError();
      return parsed;
    };
    doc.Populate(generate);
    if (!parsed || !doc.IsObject()) return false;
    bool has_time = false, has_key = false, has_op = false;
    out = Parsed{};
    for (const auto& m : doc.GetObject()) {
      const std::string_view name = view(m.name);
      const Value& v = m.value;
      if (name == fmt::kFieldTime) {
        if (!v.IsString()) return false;
        auto t = fmt::parse_time(view(v));
        if (!t) return false;
        out.time = *t;
        has_time = true;
      } else if (name == fmt::kFieldKey) {
        // A key no store could have written (its UTF-8 is checked as every string's): such a
        // line is not a record, or every reader that uses the key (verify, rebuild) would fail.
        if (!v.IsString() || v.GetStringLength() == 0 ||
            v.GetStringLength() > store_format::kMaxKeyBytes) {
          return false;
        }
        out.key = view(v);
        has_key = true;
      } else if (name == fmt::kFieldOp) {
        if (!v.IsString()) return false;
        out.op = view(v);
        has_op = true;
      } else if (name == fmt::kFieldPrev || name == fmt::kFieldVersion) {
        std::optional<std::string_view> token;
        if (v.IsString()) {
          token = view(v);
        } else if (!v.IsNull()) {
          return false;
        }
        (name == fmt::kFieldPrev ? out.prev : out.version) = token;
      } else if (name == fmt::kFieldPid) {
        if (!v.IsInt64()) return false;
        out.pid = static_cast<long>(v.GetInt64());
      } else if (name == fmt::kFieldHost) {
        if (!v.IsString()) return false;
        out.host = view(v);
      } else if (name == fmt::kFieldValue) {
        value = &v;
        out.has_value = true;
      } else if (name == fmt::kFieldSeen) {
        has_seen = parse_seen(v, out.seen);
      }
    }
    if (has_key) {
      has_seen = false;  // a record: any "seen" member is not ours to read
      return has_time && has_op;
    }
    return has_time && has_seen && out.op == fmt::kSeenOp;
  }
};

RecordParser::RecordParser() : impl_(std::make_unique<Impl>()) {}
RecordParser::~RecordParser() = default;

RecordParser::Outcome RecordParser::parse(std::string_view line, Parsed& out) {
  using Whole = Impl::Whole;
  if (line.empty()) return Outcome::blank;
  switch (impl_->parse_exact(line, out)) {
    case Whole::record: return Outcome::record;
    case Whole::seen: return Outcome::seen;
    case Whole::none: break;
  }
  // A torn fragment, perhaps with another writer's whole record glued after it: a record starts
  // with kRecordStart, and only the suffix starting at a real record's first byte parses as one
  // whole object to the end of the line.
  for (std::size_t at = line.find(fmt::kRecordStart, 1); at != std::string_view::npos;
       at = line.find(fmt::kRecordStart, at + 1)) {
    const Whole whole = impl_->parse_exact(line.substr(at), out);
    if (whole == Whole::none) continue;
    out.offset_in_line = at;
    return whole == Whole::record ? Outcome::fragment_record : Outcome::fragment_seen;
  }
  return Outcome::torn;
}

nlohmann::json RecordParser::value() const { return to_json(*impl_->value); }

Record RecordParser::to_record(const Parsed& p, std::uint64_t segment,
                               std::uint64_t line_offset) const {
  Record r;
  r.time = p.time;
  r.key.assign(p.key);
  r.op.assign(p.op);
  if (p.has_value) r.value = value();
  if (p.prev) r.prev_version.emplace(*p.prev);
  if (p.version) r.version.emplace(*p.version);
  r.pid = p.pid;
  r.host.assign(p.host);
  r.segment = segment;
  r.offset = line_offset + p.offset_in_line;
  return r;
}

std::string key_needle(std::string_view key, bool closed) {
  std::string s = "\"";
  s += fmt::kFieldKey;
  s += "\":\"";
  json_io::append_escaped(s, key);
  if (closed) s += '"';
  return s;
}

}  // namespace lockdb::detail::log_reader
