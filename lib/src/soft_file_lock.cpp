// SoftFileLock: the marker-file protocol.
//
// Holding. The lock is held while the marker file at the lock path exists and carries our nonce.
// Acquire creates it with O_CREAT|O_EXCL (atomic on local filesystems and on NFSv3+) and writes
// one JSON record: {"pid", "host", "start", "time", "nonce", "program"}, where "start" is the
// process-start token (boot id + start time of the pid, Linux) that tells a reused pid apart.
// Release reads the marker and removes it only if it still carries our nonce.
//
// Judging a marker stale. This host: the pid is gone, or its start token differs (pid reused).
// Another host: neither the marker's mtime (refresh() touches it) nor its "time" moved for
// stale_after. A marker that does not parse (its creator died between create and write) is
// stale after stale_after.
//
// Breaking a stale marker S (nonce N), safe against any number of racing breakers:
//   1. Create the tombstone "<path>.break-N" with O_EXCL. Only its creator may remove S; the
//      others see EEXIST and go back to waiting.
//   2. Re-read the marker: if it no longer carries N, S is already gone; drop the tombstone.
//   3. Rename the marker to a unique name, read what was moved: if it is S, unlink it (S is
//      broken); if it is not (impossible unless a lease-expired holder on another host raced us),
//      link it back. Never stat-then-unlink: the rename is what takes S away, atomically.
//   4. Remove the tombstone. A breaker that arrives late creates a fresh tombstone at step 1 and
//      stops at step 2.
// A tombstone left by a breaker that died is itself judged by the same rules.
//
// Waiting polls: 1 ms, growing by half each time up to 25 ms.
#include <lockdb/file_lock.hpp>
#include <lockdb/time.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>

#include "lock_state.hpp"
#include "os.hpp"
#include "soft_marker.hpp"
#include "util.hpp"

namespace lockdb {
namespace {

struct SoftMarker {
  long pid = 0;
  std::string host;
  std::string start;
  std::string nonce;
  std::string program;
  std::optional<std::chrono::system_clock::time_point> time;
  std::int64_t mtime_ns = 0;
  bool parsed = false;
};

std::string marker_record(const std::string& nonce) {
  nlohmann::json j = {{"pid", os::pid()},
                      {"host", os::hostname()},
                      {"start", os::process_start_token(os::pid())},
                      {"time", format_time(std::chrono::system_clock::now())},
                      {"nonce", nonce},
                      {"program", os::program_name(os::pid())}};
  return j.dump() + "\n";
}

// The marker an open descriptor reads (its mtime and, when it parses, its record).
SoftMarker read_marker_fd(int fd) {
  auto st = os::fstat(fd);
  auto text = os::read_all(fd);
  SoftMarker m;
  if (st.ok()) m.mtime_ns = st.value.mtime_ns;
  if (!text.ok()) return m;
  auto j = nlohmann::json::parse(text.value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return m;
  m.pid = j.value("pid", 0L);
  m.host = j.value("host", "");
  m.start = j.value("start", "");
  m.nonce = j.value("nonce", "");
  m.program = j.value("program", "");
  m.time = parse_time(j.value("time", ""));
  m.parsed = !m.nonce.empty();
  return m;
}

// nullopt when there is no file at `path`.
std::optional<SoftMarker> read_marker(const std::filesystem::path& path) {
  auto fd = os::open(path, O_RDONLY | O_NOFOLLOW);
  if (!fd.ok()) return std::nullopt;
  SoftMarker m = read_marker_fd(fd.value);
  os::close(fd.value);
  return m;
}

bool marker_is_stale(const SoftMarker& m, std::chrono::nanoseconds stale_after) {
  if (m.parsed && m.host == os::hostname()) {
    if (!os::pid_alive(m.pid)) return true;
    std::string now_token = os::process_start_token(m.pid);
    return !m.start.empty() && !now_token.empty() && now_token != m.start;
  }
  // Another host, or unreadable: by age of the newest heartbeat.
  auto last = std::chrono::system_clock::time_point(std::chrono::nanoseconds(m.mtime_ns));
  if (m.time && *m.time > last) last = *m.time;
  return std::chrono::system_clock::now() - last > stale_after;
}

std::optional<LockHolder> to_holder(const SoftMarker& m) {
  if (!m.parsed) return std::nullopt;
  LockHolder h;
  h.pid = m.pid;
  h.host = m.host;
  h.since = m.time;
  h.program = m.program;
  return h;
}

std::filesystem::path sibling(const std::filesystem::path& path, const std::string& suffix) {
  std::filesystem::path p = path;
  p += suffix;
  return p;
}

// Steps 1-4 of the breaking protocol (see top). True when the caller should retry at once.
bool break_stale(const std::filesystem::path& path, const SoftMarker& judged,
                 std::chrono::nanoseconds stale_after) {
  const std::string id = judged.parsed ? judged.nonce : "mtime" + std::to_string(judged.mtime_ns);
  const auto tomb = sibling(path, ".break-" + id);
  auto t = os::open(tomb, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0666);
  if (!t.ok()) {
    if (t.err == EEXIST) {  // someone else is breaking it; unless that breaker died
      if (auto other = read_marker(tomb); other && marker_is_stale(*other, stale_after)) {
        (void)os::unlink(tomb);
        return true;
      }
    }
    return false;
  }
  (void)os::write_all(t.value, marker_record(os::random_hex(8)));
  os::close(t.value);

  auto now = read_marker(path);
  bool same = now && (judged.parsed ? now->nonce == judged.nonce
                                    : !now->parsed && now->mtime_ns == judged.mtime_ns);
  if (same) {
    const auto moved_path = sibling(path, ".stale-" + os::random_hex(8));
    if (os::rename(path, moved_path).ok()) {
      auto moved = read_marker(moved_path);
      bool is_judged =
          moved && (judged.parsed ? moved->nonce == judged.nonce
                                  : !moved->parsed && moved->mtime_ns == judged.mtime_ns);
      if (!is_judged) (void)os::link(moved_path, path);  // not ours to break: put it back
      (void)os::unlink(moved_path);
    }
  }
  (void)os::unlink(tomb);
  return true;
}

}  // namespace

namespace {

class SoftLockState final : public detail::LockState {
 public:
  SoftLockState(std::filesystem::path path, const SoftLockOptions& options)
      : LockState(std::move(path), options.lock_timeout),
        mode_(options.mode),
        stale_after_(options.stale_after) {}
  ~SoftLockState() override { release_all_on_destroy(); }

  std::optional<LockHolder> holder() const {
    auto m = read_marker(path());
    return m ? to_holder(*m) : std::nullopt;
  }

  void refresh() {
    std::lock_guard lk(nonce_mu_);
    auto m = read_marker(path());
    if (nonce_.empty() || !m || m->nonce != nonce_) {
      throw Error(Errc::not_owner, "cannot refresh lock marker", path(),
                  "the marker is not this holder's (not held, or broken as stale)");
    }
    if (auto s = os::touch(path()); !s.ok()) {
      os::throw_errno("cannot refresh lock marker", path(), s.err);
    }
  }

 private:
  bool backend_acquire(bool,
                       std::optional<std::chrono::steady_clock::time_point> deadline) override {
    auto step = std::chrono::microseconds(1000);
    for (;;) {
      auto fd = os::open(path(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode_.value_or(0666));
      if (fd.err == ENOENT && path().has_parent_path()) {
        if (auto s = os::mkdirs(path().parent_path()); !s.ok()) {
          os::throw_errno("cannot create the lock's directory", path().parent_path(), s.err);
        }
        continue;
      }
      if (fd.ok()) {
        std::string nonce = os::random_hex(12);
        os::Status s = os::write_all(fd.value, marker_record(nonce));
        if (s.ok() && mode_) s = os::fchmod(fd.value, *mode_);
        os::close(fd.value);
        if (!s.ok()) {
          (void)os::unlink(path());
          os::throw_errno("cannot write the lock marker", path(), s.err);
        }
        std::lock_guard lk(nonce_mu_);
        nonce_ = std::move(nonce);
        return true;
      }
      if (fd.err != EEXIST) os::throw_errno("cannot create lock marker", path(), fd.err);
      if (auto st = os::lstat(path()); st.ok() && !S_ISREG(st.value.mode)) {
        throw Error(Errc::invalid_argument, "cannot create lock marker", path(),
                    S_ISDIR(st.value.mode) ? "it is a directory"
                                           : "it is not a regular file (refused, not followed)");
      }

      if (auto m = read_marker(path()); m && marker_is_stale(*m, stale_after_)) {
        if (break_stale(path(), *m, stale_after_)) continue;
      } else if (!m) {
        continue;  // vanished between create and read: try again at once
      }
      auto now = std::chrono::steady_clock::now();
      if (deadline && now >= *deadline) return false;
      auto wait = std::chrono::nanoseconds(step);
      if (deadline) wait = std::min<std::chrono::nanoseconds>(wait, *deadline - now);
      std::this_thread::sleep_for(wait);
      step = std::min<std::chrono::microseconds>(step * 3 / 2, std::chrono::milliseconds(25));
    }
  }

  void backend_release() noexcept override {
    std::lock_guard lk(nonce_mu_);
    try {
      if (auto m = read_marker(path()); m && m->parsed && m->nonce == nonce_) {
        (void)os::unlink(path());
      }
    } catch (...) {
    }
    nonce_.clear();
  }

  void backend_forget() noexcept override {
    std::lock_guard lk(nonce_mu_);
    nonce_.clear();
  }

  std::optional<LockHolder> backend_holder() const override { return holder(); }

  // Constant after construction.
  const std::optional<unsigned> mode_;
  const std::chrono::nanoseconds stale_after_;
  // Owned by the thread inside backend_* (LockState serialises them).
  mutable std::mutex nonce_mu_;
  std::string nonce_;  // guarded by nonce_mu_: of the marker we hold; empty when none
};

}  // namespace

SoftFileLock::SoftFileLock(std::filesystem::path path, SoftLockOptions options)
    : BasicLock(std::make_unique<SoftLockState>(std::move(path), options)) {}

void SoftFileLock::refresh() { static_cast<SoftLockState&>(state()).refresh(); }
std::optional<LockHolder> SoftFileLock::holder() const {
  return static_cast<const SoftLockState&>(state()).holder();
}

bool SoftFileLock::is_stale(const std::filesystem::path& path,
                            std::chrono::nanoseconds stale_after) {
  auto m = read_marker(path);
  return m && marker_is_stale(*m, stale_after);
}

namespace detail {

std::optional<LockHolder> stale_marker_holder(const std::filesystem::path& path,
                                              std::chrono::nanoseconds stale_after) {
  auto m = read_marker(path);
  if (!m || !m->parsed || !marker_is_stale(*m, stale_after)) return std::nullopt;
  return to_holder(*m);
}

bool clear_stale_marker(const std::filesystem::path& path, std::chrono::nanoseconds stale_after) {
  // One descriptor for the judging and the emptying: if a breaker renames the marker away and
  // creates its own meanwhile, this empties only the renamed (stale) file, never the new one.
  auto fd = os::open(path, O_RDWR | O_NOFOLLOW);
  if (!fd.ok()) {
    if (fd.err == ENOENT) return false;
    os::throw_errno("cannot open lock marker", path, fd.err);
  }
  SoftMarker m = read_marker_fd(fd.value);
  bool stale = m.parsed && marker_is_stale(m, stale_after);
  os::Status s;
  if (stale) s = os::truncate(fd.value, 0);
  os::close(fd.value);
  if (!s.ok()) os::throw_errno("cannot empty the stale lock marker", path, s.err);
  return stale;
}

}  // namespace detail
}  // namespace lockdb
