// The history log's writer.
//
// The append protocol. Many processes append to the newest segment at once; each record is one
// write(2) of "<json>\n" on an O_APPEND descriptor, so the kernel places every record whole,
// after the previous ones, never interleaved. What needs coordination is the choice of segment:
// once a newer segment exists, nobody may append to an older one (a reader that moved on would
// miss the record, and the log would no longer be in commit order). So:
//
//   appenders   hold log.lock SHARED around "check the segment, write the record"
//   rotation    holds log.lock EXCLUSIVE: with no appender in the middle of a write, it moves the
//               shared state to segment N+1 first, then creates N+1 (temp file + rename, so a
//               segment always starts with its whole header)
//
// The check has to be cheap: the common path is flock(SH), write, flock(UN) plus a few loads
// from memory. The first page of log.lock is mapped shared by every writer and holds the state
// (log_format.hpp): the newest segment's number, a generation that changes whenever the segment
// to append to changes, and the newest segment's size as counted by the appenders. A writer
// whose descriptor belongs to the generation it sees appends; any other writer (first append,
// after a rotation or a compaction, after fork, a page that is not initialized) takes the lock
// exclusive and re-derives everything from the directory: the newest segment on disk wins, and
// the state is corrected before anybody appends again. Measured on the reference VM: stat-ing
// the segment and its successor on every append cost ~5 us more per record than the mapped
// state (~4 us for the whole append).
//
// Rotation: an appender that finds the newest segment at segment_bytes or more (and holding at
// least one record) releases its shared lock, takes it exclusive, re-checks, and rotates. The
// order (state first, file second) means a crash in between leaves a state naming a segment that
// does not exist yet; the next writer creates it. Nobody appends to segment N once N+1 exists.
//
// Torn lines. A crash (or a full disk) can leave a line without its newline at the end of a
// segment. A writer that opens a segment (under the exclusive lock) ends such a line with "\n",
// so the next record starts on a fresh line; a writer whose own write failed ends its fragment
// the same way (best effort) and, if that failed too, checks the tail before its next append.
// Readers skip torn lines and resynchronize on the start of a record within a line
// (docs/FORMAT.md), so even a fragment that another process's record got glued onto loses nothing
// but itself.
//
// Waiting: append() waits for its turn at the writer (another thread of this process appending) and
// for the log lock (a rotation, the start of a compaction, or another program holding it) until
// the caller's deadline at most, then throws Timeout naming log.lock and its holder, having
// written nothing: a store write's lock_timeout bounds the whole write, the log included.
//
// Durability: with file or full, the segment is fsynced before append() returns; a failed fsync
// throws and is not retried. Creating a segment fsyncs it, and with full also the directory.
//
// Fork: a child re-opens the lock file (flock locks belong to the open file description, which
// parent and child would otherwise share) and re-derives its segment.
#include "log_writer.hpp"

#include <lockdb/error.hpp>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <utility>

#include <fcntl.h>

#include "json_io.hpp"
#include "log_format.hpp"
#include "os.hpp"
#include "replace.hpp"
#include "util.hpp"

namespace lockdb::detail {
namespace fmt = log_format;
namespace {

// One open segment. Shared so that an fsync after the writer's turn keeps it open.
struct Segment {
  int fd = -1;
  std::uint64_t number = 0;
  std::filesystem::path path;
  Segment() = default;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment() { os::close(fd); }
};

// Bytes at the start of the segment that are its header line (0: no header).
std::uint64_t header_bytes(int fd, std::uint64_t size) {
  char buf[4096];
  const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size, sizeof buf));
  auto r = os::pread_into(fd, buf, want, 0);
  if (!r.ok() || r.value < fmt::kHeaderStart.size()) return 0;
  std::string_view head(buf, r.value);
  if (head.substr(0, fmt::kHeaderStart.size()) != fmt::kHeaderStart) return 0;
  auto nl = head.find('\n');
  return nl == std::string_view::npos ? size : nl + 1;
}

}  // namespace

struct LogWriter::Impl {
  // Constant after construction (dir_fd: once opened). Everything in the log directory is opened
  // by name from dir_fd, following no link: a link, FIFO or hard link planted at log.lock or a
  // segment is refused (Error{invalid_argument}), never written through.
  std::filesystem::path dir;
  os::Fd dir_fd;
  std::filesystem::path lock_path;
  std::uint64_t segment_bytes = 0;
  Durability durability = Durability::none;
  os::CreateMode create;

  // This process's appends and rotations take turns: `busy` under `turn_mu`, waited for on
  // `turn_over` (a condition variable, so that an append waits no longer than its deadline).
  std::mutex turn_mu;
  std::condition_variable turn_over;
  bool busy = false;  // guarded by turn_mu
  // Used only by the thread whose turn it is (setting and clearing `busy` under turn_mu orders
  // the accesses).
  unsigned fork_generation = 0;
  int lock_fd = -1;
  std::uint64_t* state = nullptr;  // the mapped first page of log.lock
  std::shared_ptr<Segment> segment;
  std::uint64_t generation_seen = 0;  // the state's generation `segment` belongs to
  bool check_tail = false;            // our last write failed: the segment may end in a fragment
  bool can_reserve = true;            // the filesystem supports reserve_room()
  std::uint64_t block = 0;            // allocation_block() of the log's filesystem; 0: not asked
  std::string buffer;

  ~Impl() { close_all(); }

  std::atomic_ref<std::uint64_t> word(std::size_t i) const { return std::atomic_ref(state[i]); }

  bool state_valid() const {
    return word(fmt::kStateWordMagic).load(std::memory_order_acquire) == fmt::kStateMagic &&
           word(fmt::kStateWordLayout).load(std::memory_order_relaxed) ==
               static_cast<std::uint64_t>(fmt::kLogFormatVersion);
  }

  void close_all() noexcept {
    segment.reset();
    os::unmap(state, fmt::kStateBytes);
    state = nullptr;
    os::close(lock_fd);
    lock_fd = -1;
  }

  // Opens (once per process) the lock file and maps its state page.
  void prepare() {
    const unsigned gen = os::fork_generation();
    if (state != nullptr && gen == fork_generation) return;
    close_all();  // a forked child: none of this is ours to unlock
    fork_generation = gen;
    if (dir_fd.get() < 0) {  // made from a path alone
      if (auto s = os::mkdirs(dir, 0777, create); !s.ok()) {
        os::throw_errno("cannot create the log directory", dir, s.err);
      }
      auto d = os::open(dir, O_RDONLY | O_DIRECTORY);
      if (!d.ok()) os::throw_errno("cannot open the log directory", dir, d.err);
      dir_fd.reset(d.value);
    }
    // O_NONBLOCK: a FIFO planted here must not block the open (it is refused below).
    auto fd =
        os::open_beneath(dir_fd.get(), fmt::kLockFile, O_RDWR | O_CREAT | O_NONBLOCK, 0666, create);
    if (!fd.ok()) {
      os::throw_beneath("cannot open the log lock file", dir.native(), dir_fd.get(), fmt::kLockFile,
                        fd.err);
    }
    lock_fd = fd.value;  // closed again below unless the state page gets mapped
    auto fail = [this](const char* what, int err) {
      os::close(lock_fd);
      lock_fd = -1;
      os::throw_errno(what, lock_path, err);
    };
    try {  // written in place (its state page): one name only
      os::require_plain_file(lock_fd, "cannot use the log lock file", lock_path, true);
    } catch (...) {
      os::close(lock_fd);
      lock_fd = -1;
      throw;
    }
    auto st = os::fstat(lock_fd);
    if (!st.ok()) fail("cannot stat the log lock file", st.err);
    if (st.value.size < static_cast<std::int64_t>(fmt::kStateBytes)) {  // grow, never shrink
      if (auto s = os::truncate(lock_fd, static_cast<off_t>(fmt::kStateBytes)); !s.ok()) {
        fail("cannot size the log lock file", s.err);
      }
    }
    auto m = os::map_shared(lock_fd, fmt::kStateBytes);
    if (!m.ok()) fail("cannot map the log lock file", m.err);
    state = static_cast<std::uint64_t*>(m.value);
    generation_seen = 0;
  }

  using Deadline = std::optional<std::chrono::steady_clock::time_point>;

  // This thread's turn to use the writer (see `busy`), until destroyed. Waits for it until
  // `deadline` at most, then THROWS Timeout (`start`: when the append began).
  class Turn {
   public:
    Turn(Impl& impl, Deadline deadline, std::chrono::steady_clock::time_point start) : impl_(impl) {
      std::unique_lock lk(impl_.turn_mu);
      auto free = [this] { return !impl_.busy; };
      if (!deadline) {
        impl_.turn_over.wait(lk, free);
      } else if (!impl_.turn_over.wait_until(lk, *deadline, free)) {
        lk.unlock();
        impl_.throw_timeout(start, -1);  // another thread of this process appends or waits
      }
      impl_.busy = true;
    }
    ~Turn() {
      {
        std::lock_guard lk(impl_.turn_mu);
        impl_.busy = false;
      }
      impl_.turn_over.notify_one();
    }
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;

   private:
    Impl& impl_;
  };

  // The Timeout of an append that began at `start` and could not have the log lock (or the
  // writer's turn) by its deadline: names the log lock and whoever holds it now. `fd`: the lock
  // file's descriptor when it is the caller's turn (else -1: the file is looked up by its path).
  [[noreturn]] void throw_timeout(std::chrono::steady_clock::time_point start, int fd) const {
    auto st = fd >= 0 ? os::fstat(fd) : os::stat(lock_path);
    std::optional<LockHolder> holder;
    if (st.ok()) holder = os::flock_holder(st.value.dev, st.value.ino);
    throw Timeout("cannot append to the log", lock_path,
                  std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - start),
                  std::move(holder));
  }

  // The log lock, released on scope exit. Waits until `deadline` at most, then THROWS Timeout.
  class Held {
   public:
    Held(Impl& impl, bool shared, Deadline deadline = std::nullopt,
         std::chrono::steady_clock::time_point start = {})
        : impl_(impl) {
      if (auto s = os::flock_until(impl_.lock_fd, shared, deadline); !s.ok()) {
        if (s.err == EWOULDBLOCK) impl_.throw_timeout(start, impl_.lock_fd);
        os::throw_errno("cannot lock the log", impl_.lock_path, s.err);
      }
    }
    ~Held() { release(); }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;
    void release() noexcept {
      if (held_) (void)os::flock_unlock(impl_.lock_fd);
      held_ = false;
    }

   private:
    Impl& impl_;
    bool held_ = true;
  };

  std::filesystem::path segment_path(std::uint64_t n) const { return dir / fmt::segment_name(n); }

  // Creates segment `n` whole: header written to a temp file, (fsynced,) renamed into place.
  // REQUIRES: the lock held exclusive; `n` does not exist.
  void create_segment(std::uint64_t n) {
    const std::filesystem::path target = segment_path(n);
    const std::string name = fmt::segment_name(n);
    std::string temp;
    auto fd = os::create_temp_at(dir_fd.get(), dir.native(), fmt::kSegmentTempPrefix, &temp, 0666,
                                 os::TempName::random, create);
    if (!fd.ok()) os::throw_errno("cannot create log segment", target, fd.err);
    const std::string temp_name = temp.substr(temp.rfind('/') + 1);
    const std::string header =
        fmt::render_header(n, fmt::new_segment_id(), std::chrono::system_clock::now()) + "\n";
    os::Status s = os::write_all(fd.value, header);
    const char* step = "cannot write log segment";
    if (s.ok() && fsyncs_files(durability)) {
      s = os::fsync(fd.value);
      step = "cannot fsync log segment";
    }
    if (os::Status c = os::close_written(fd.value); s.ok() && !c.ok()) {
      s = c;
      step = "cannot close log segment";
    }
    if (s.ok()) {
      s = os::rename_at(dir_fd.get(), temp_name, dir_fd.get(), name);
      step = "cannot rename log segment into place";
    }
    if (!s.ok()) {
      (void)os::unlink_at(dir_fd.get(), temp_name);
      os::throw_errno(step, target, s.err);
    }
    if (durability == Durability::full) {
      if (auto d = os::fsync(dir_fd.get()); !d.ok()) os::throw_errno("cannot fsync", dir, d.err);
    }
  }

  std::shared_ptr<Segment> open_segment(std::uint64_t n) const {
    auto seg = std::make_shared<Segment>();
    seg->number = n;
    seg->path = segment_path(n);
    const std::string name = fmt::segment_name(n);
    // read: the tail check. O_NONBLOCK: a planted FIFO must not block the open.
    auto fd = os::open_beneath(dir_fd.get(), name, O_RDWR | O_APPEND | O_NONBLOCK);
    if (!fd.ok()) {
      os::throw_beneath("cannot open log segment", dir.native(), dir_fd.get(), name, fd.err);
    }
    seg->fd = fd.value;  // appended to in place: one name only
    os::require_plain_file(seg->fd, "cannot use log segment", seg->path, /*one_link=*/true);
    return seg;
  }

  // The size of the open segment; a last line without its newline gets one, so that the next
  // record starts on a fresh line. REQUIRES: the lock held exclusive.
  std::uint64_t end_torn_tail(const Segment& seg) {
    auto st = os::fstat(seg.fd);
    if (!st.ok()) os::throw_errno("cannot stat log segment", seg.path, st.err);
    auto size = static_cast<std::uint64_t>(st.value.size);
    if (size == 0) return 0;
    char last = 0;
    auto r = os::pread_into(seg.fd, &last, 1, static_cast<off_t>(size - 1));
    if (!r.ok()) os::throw_errno("cannot read log segment", seg.path, r.err);
    if (last == '\n') return size;
    auto w = os::write_once(seg.fd, "\n");
    if (!w.ok() || w.value != 1) {
      os::throw_errno("cannot end the torn last line of log segment", seg.path,
                      w.ok() ? EIO : w.err);
    }
    return size + 1;
  }

  enum class Rotate { if_full, if_not_empty };

  // Brings the shared state and this writer's segment in line with the directory, rotating when
  // asked. Returns the newest segment's number. REQUIRES: the lock held exclusive.
  std::uint64_t sync_with_directory(Rotate rotate) {
    auto names = os::list_dir(dir_fd.get());
    if (!names.ok()) os::throw_errno("cannot list the log directory", dir, names.err);
    std::uint64_t newest_on_disk = 0;
    for (const auto& name : names.value) {
      if (auto n = fmt::parse_segment_name(name)) {
        newest_on_disk = std::max(newest_on_disk, *n);
      } else if (name.starts_with(fmt::kSegmentTempPrefix) && name.ends_with(fmt::kTempSuffix)) {
        // Left by a rotation that crashed: nobody else makes them.
        (void)os::unlink_at(dir_fd.get(), name);
      }
    }
    const bool valid = state_valid();
    const std::uint64_t newest_in_state =
        valid ? word(fmt::kStateWordNewest).load(std::memory_order_relaxed) : 0;
    std::uint64_t newest = std::max<std::uint64_t>({newest_on_disk, newest_in_state, 1});
    if (!valid || newest_in_state != newest) publish(newest);
    if (newest > newest_on_disk) create_segment(newest);

    std::shared_ptr<Segment> seg = open_segment(newest);
    std::uint64_t size = end_torn_tail(*seg);
    std::uint64_t first_record = header_bytes(seg->fd, size);
    const bool has_records = size > first_record;
    const bool full = segment_bytes != 0 && size >= segment_bytes;
    if (has_records && (rotate == Rotate::if_not_empty || full)) {
      ++newest;
      publish(newest);
      create_segment(newest);
      seg = open_segment(newest);
      size = end_torn_tail(*seg);
      first_record = header_bytes(seg->fd, size);
    }
    word(fmt::kStateWordAppended).store(size, std::memory_order_relaxed);
    word(fmt::kStateWordFirstRecord).store(first_record, std::memory_order_relaxed);
    segment = std::move(seg);
    generation_seen = word(fmt::kStateWordGeneration).load(std::memory_order_acquire);
    check_tail = false;
    return newest;
  }

  // Points the state at segment `newest` and starts a new generation, so that every appender
  // re-derives its segment before its next write. REQUIRES: the lock held exclusive.
  void publish(std::uint64_t newest) {
    if (!state_valid()) {
      word(fmt::kStateWordLayout).store(fmt::kLogFormatVersion, std::memory_order_relaxed);
      word(fmt::kStateWordMagic).store(fmt::kStateMagic, std::memory_order_relaxed);
    }
    word(fmt::kStateWordNewest).store(newest, std::memory_order_relaxed);
    word(fmt::kStateWordAppended).store(0, std::memory_order_relaxed);
    word(fmt::kStateWordFirstRecord).store(0, std::memory_order_relaxed);
    word(fmt::kStateWordGeneration).fetch_add(1, std::memory_order_release);
  }

  // True when the open segment ends with a newline (or is empty). Shared lock: a concurrent
  // append may land right after; readers resynchronize then.
  bool tail_ends_line() const {
    auto st = os::fstat(segment->fd);
    if (!st.ok() || st.value.size == 0) return st.ok();
    char last = 0;
    auto r = os::pread_into(segment->fd, &last, 1, static_cast<off_t>(st.value.size - 1));
    return r.ok() && r.value == 1 && last == '\n';
  }

  // Reserves the blocks of `len` more bytes at the open segment's end (fallocate KEEP_SIZE), so
  // that on a full disk the append fails whole, before writing, instead of leaving a fragment.
  // Another process appending meanwhile may use up the room: then a fragment can still be left
  // (and is ended as below). Filesystems that cannot reserve are not asked again.
  // `offset`: where the record lands as the appenders count it (kNoOffset: unknown); a record
  // that stays within the allocation block the segment's last byte is in needs no reservation
  // (no system call on most appends).
  os::Status reserve_room(std::size_t len, std::uint64_t offset) {
    if (!can_reserve) return {};
    if (block == 0) block = allocation_block(os::fs_magic(segment->fd));
    if (offset != kNoOffset && offset % block != 0 && offset % block + len <= block) return {};
    auto st = os::fstat(segment->fd);
    if (!st.ok()) return {st.err};
    os::Status r =
        os::reserve(segment->fd, static_cast<off_t>(st.value.size), static_cast<off_t>(len));
    if (r.err == EOPNOTSUPP || r.err == ENOSYS) {
      can_reserve = false;
      return {};
    }
    return r;
  }

  static constexpr std::uint64_t kNoOffset = UINT64_MAX;

  // A size that every allocation block of the filesystem is a whole multiple of: the page on
  // tmpfs, the smallest block ext4 (1 KiB) or any other filesystem (512 bytes) may have.
  static std::uint64_t allocation_block(long fs_magic) {
    constexpr long kTmpfs = 0x01021994;  // TMPFS_MAGIC
    constexpr long kExt4 = 0xEF53;       // EXT2/3/4_SUPER_MAGIC
    if (fs_magic == kTmpfs) return 4096;
    if (fs_magic == kExt4) return 1024;
    return 512;
  }

  // Appends buffer (the record and its newline). Returns the segment written to. Waits for the
  // log lock until `deadline` at most (`start`: when the append began, for the Timeout).
  std::shared_ptr<Segment> append_locked(Deadline deadline,
                                         std::chrono::steady_clock::time_point start) {
    const std::uint64_t len = buffer.size();
    for (;;) {
      Held lock(*this, /*shared=*/true, deadline, start);
      bool ours =
          segment && state_valid() &&
          word(fmt::kStateWordGeneration).load(std::memory_order_acquire) == generation_seen;
      std::uint64_t offset = kNoOffset;
      if (ours && segment_bytes != 0) {
        const std::uint64_t before =
            word(fmt::kStateWordAppended).fetch_add(len, std::memory_order_relaxed);
        offset = before;
        const std::uint64_t first =
            word(fmt::kStateWordFirstRecord).load(std::memory_order_relaxed);
        ours = before < segment_bytes || before <= first;  // full only once it holds a record
      }
      if (!ours) {
        lock.release();
        Held exclusive(*this, /*shared=*/false, deadline, start);
        sync_with_directory(Rotate::if_full);
        continue;
      }
      std::string_view data = buffer;
      std::string fresh_line;
      if (check_tail && !tail_ends_line()) {
        fresh_line = "\n" + buffer;
        data = fresh_line;
      }
      if (auto r = reserve_room(data.size(), check_tail ? kNoOffset : offset); !r.ok()) {
        // Nothing was written: the count goes back to the segment's size.
        if (offset != kNoOffset) {
          word(fmt::kStateWordAppended).fetch_sub(len, std::memory_order_relaxed);
        }
        os::throw_errno("cannot append to log segment (no room for the record, nothing written)",
                        segment->path, r.err);
      }
      auto w = os::write_once(segment->fd, data);
      if (w.ok() && w.value == data.size()) {
        check_tail = false;
        return segment;
      }
      // A failed write wrote nothing or a fragment. End the fragment so that the next record
      // starts on a fresh line; if even that fails, look at the tail before the next append.
      check_tail = true;
      if (!w.ok()) os::throw_errno("cannot append to log segment", segment->path, w.err);
      std::string cause =
          "wrote " + std::to_string(w.value) + " of " + std::to_string(data.size()) + " bytes";
      if (w.value > 0) {
        auto nl = os::write_once(segment->fd, "\n");
        if (nl.ok() && nl.value == 1) {
          check_tail = false;
        } else if (!nl.ok()) {
          cause += " (" + os::error_text(nl.err) + ")";
        }
      }
      throw Error(Errc::io, "cannot append to log segment", segment->path, cause);
    }
  }
};

std::string render_record(const RecordFields& f) {
  auto check = [](std::string_view what, std::string_view text) {
    if (!util::valid_utf8(text)) {
      throw Error(Errc::invalid_argument, "cannot log a record", {},
                  std::string(what) + " is not valid UTF-8");
    }
  };
  check("the key", f.key);
  check("the op", f.op);
  if (f.prev_version) check("the previous version", *f.prev_version);
  if (f.version) check("the version", *f.version);
  std::string out;
  out.reserve(192 + f.key.size() + f.value_json.size());
  out += fmt::kRecordStart;
  fmt::append_time(out, f.time);
  out += "\",\"";
  out += fmt::kFieldKey;
  out += "\":\"";
  json_io::append_escaped(out, f.key);
  out += "\",\"";
  out += fmt::kFieldOp;
  out += "\":\"";
  json_io::append_escaped(out, f.op);
  out += '"';
  auto string_or_null = [&out](const char* name, const std::optional<std::string_view>& v) {
    out += ",\"";
    out += name;
    out += "\":";
    if (v) {
      out += '"';
      json_io::append_escaped(out, *v);
      out += '"';
    } else {
      out += "null";
    }
  };
  string_or_null(fmt::kFieldPrev, f.prev_version);
  string_or_null(fmt::kFieldVersion, f.version);
  if (!f.txn.empty()) {
    out += ",\"";
    out += fmt::kFieldTxn;
    out += "\":\"";
    json_io::append_escaped(out, f.txn);
    out += '"';
  }
  fmt::append_origin(out);
  if (f.value != nullptr) {
    out += ",\"";
    out += fmt::kFieldValue;
    out += "\":";
    if (!f.value_json.empty()) {
      if (f.value_json.find('\n') != std::string_view::npos) {
        throw Error(Errc::invalid_argument, "cannot log a record", {},
                    "the value's JSON text spans several lines");
      }
      out += f.value_json;
    } else {
      try {
        json_io::append(out, *f.value, -1);
      } catch (const json_io::ValueError& e) {
        throw Error(Errc::invalid_argument, "cannot log a record", {},
                    std::string("the value is not valid JSON text: ") + e.what());
      }
    }
  }
  out += '}';
  return out;
}

LogWriter::LogWriter(std::filesystem::path log_dir, std::uint64_t segment_bytes,
                     Durability durability, os::CreateMode create)
    : LogWriter(std::move(log_dir), -1, segment_bytes, durability, create) {}

LogWriter::LogWriter(std::filesystem::path log_dir, int log_dir_fd, std::uint64_t segment_bytes,
                     Durability durability, os::CreateMode create)
    : impl_(std::make_unique<Impl>()) {
  if (log_dir_fd >= 0) {
    auto d = os::dup(log_dir_fd);
    if (!d.ok()) os::throw_errno("cannot open the log directory", log_dir, d.err);
    impl_->dir_fd.reset(d.value);
  } else if (auto d = os::open(log_dir, O_RDONLY | O_DIRECTORY); d.ok()) {
    impl_->dir_fd.reset(d.value);  // else made and opened by the first append
  }
  impl_->dir = std::move(log_dir);
  impl_->lock_path = impl_->dir / fmt::kLockFile;
  impl_->segment_bytes = segment_bytes;
  impl_->durability = durability;
  impl_->create = create;
}

LogWriter::~LogWriter() = default;

void LogWriter::append(std::string_view record_line,
                       std::optional<std::chrono::steady_clock::time_point> deadline) {
  if (record_line.find('\n') != std::string_view::npos) {
    throw Error(Errc::invalid_argument, "cannot log a record", impl_->dir,
                "the record spans several lines");
  }
  append_lines(record_line, deadline);
}

void LogWriter::append_lines(std::string_view record_line,
                             std::optional<std::chrono::steady_clock::time_point> deadline) {
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<Segment> written;
  {
    Impl::Turn turn(*impl_, deadline, start);
    impl_->prepare();
    impl_->buffer.assign(record_line);
    impl_->buffer += '\n';
    written = impl_->append_locked(deadline, start);
  }
  if (fsyncs_files(impl_->durability)) {
    if (auto s = os::fsync(written->fd); !s.ok()) {
      throw LogSyncError(os::errc_for_errno(s.err),
                         "cannot fsync log segment (the record is in the log but may not "
                         "survive power loss)",
                         written->path, s.err);
    }
  }
}

std::uint64_t LogWriter::rotate() {
  Impl::Turn turn(*impl_, std::nullopt, {});  // waits as long as it takes: no deadline here
  impl_->prepare();
  Impl::Held exclusive(*impl_, /*shared=*/false);
  return impl_->sync_with_directory(Impl::Rotate::if_not_empty);
}

std::filesystem::path LogWriter::lock_file() const { return impl_->lock_path; }

}  // namespace lockdb::detail
