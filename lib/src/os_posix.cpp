// The OS seam (os.hpp) for POSIX systems, as built and tested: Linux. Every call that reaches the
// operating system is here; the rest of the library and the `lockdb` command go through os.hpp.
//
// Linux only (a macOS or BSD seam replaces these, a Windows one replaces the whole file):
//   - openat2(2) RESOLVE_BENEATH in open_beneath (a per-component O_NOFOLLOW walk is the portable
//     fallback, already used on kernels before 5.6);
//   - renameat2(2) RENAME_EXCHANGE / RENAME_NOREPLACE (rename_exchange*, rename_noreplace_at);
//   - fallocate(2) FALLOC_FL_KEEP_SIZE (reserve), statfs f_type (fs_magic, short_reads_end);
//   - timer_create with SIGEV_THREAD_ID for timed flock waits (below);
//   - /proc: /proc/locks (flock holders), /proc/<pid>/stat and comm, the boot id, the pid
//     namespace (pid_alive, process_start_token, program_name, temp name tags).
// Each is marked "Linux only" where it is defined.
//
// Timed waits on flock(2). flock has no timeout argument, and polling with LOCK_NB either burns
// a core or hands the lock over late (Python filelock sleeps 50 ms between tries). lockdb blocks
// in flock(2) like flock(1) does and cuts the wait off with a timer: a POSIX timer
// (timer_create, SIGEV_THREAD_ID) sends signal kWakeSignal to the waiting thread only, whose
// handler does nothing and is installed without SA_RESTART, so flock returns EINTR. The timer
// first fires at the deadline and then every millisecond, so a signal that lands just before the
// thread enters flock is followed by another one. While waiting, the thread unblocks the signal;
// afterwards the timer is disarmed, and any signal it generated has been handled (or, where the
// caller had the signal blocked, is drained), so no stray signal interrupts the caller's own
// system calls later. Each thread keeps its timer between waits: a contended wait costs four
// system calls around the blocking flock (the failed non-blocking try, the mask, arm, disarm),
// one of them (disarm) after the lock is had. If the application already owns kWakeSignal (a
// handler other than ours or SIG_IGN), timed waits fall back to LOCK_NB tries with a backoff of 50
// us growing to 2 ms. Untimed waits (timeout < 0) simply block in flock(2).
#include "os.hpp"

#include "util.hpp"

#include <lockdb/error.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace lockdb::os {
namespace {

// ---- fault injection ----
struct Fault {
  std::atomic<int> countdown{0};  // 0: disarmed; n: the nth call fails
  std::atomic<int> err{0};
};
std::array<Fault, static_cast<std::size_t>(Op::count)> g_faults;
std::atomic<bool> g_faults_armed{false};

// ---- recording (tests) ----
std::atomic<Recorder*> g_recorder{nullptr};
Recorder* recording() noexcept { return g_recorder.load(std::memory_order_relaxed); }

// A directory made (mkdir -p of dir_fd + path), recorded: success.
Status made_dir(int dir_fd, std::string_view path) noexcept {
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::mkdir, .dir_fd = dir_fd, .path = path});
  }
  return {};
}

// An open that may have created or emptied a file, recorded; returns `r`.
Result<int> opened(Result<int> r, int flags) noexcept {
  if (Recorder* rec = recording(); rec != nullptr && r.ok() && (flags & (O_CREAT | O_TRUNC)) != 0)
      [[unlikely]] {
    rec->record({.kind = Mutation::Kind::open, .fd = r.value, .flags = flags});
  }
  return r;
}

// True (with errno set) when the current call of `op` is to fail.
bool injected(Op op) noexcept {
  if (!g_faults_armed.load(std::memory_order_relaxed)) return false;
  Fault& f = g_faults[static_cast<std::size_t>(op)];
  int n = f.countdown.load();
  while (n > 0) {
    if (f.countdown.compare_exchange_weak(n, n - 1)) {
      if (n == 1) {
        errno = f.err.load();
        return true;
      }
      return false;
    }
  }
  return false;
}

int last_error() noexcept { return errno != 0 ? errno : EIO; }

// ---- CreateMode: what is created in a group-shared store ----
// (os::fchmod gives a file or directory just created its shared mode.)

// The same for a directory just made by name in `at`; nothing for the default CreateMode. It is
// opened following no link (fchmodat would follow one, and a member of the group may have put one
// there meanwhile, to a file outside the store) and must be a directory.
Status share_dir_at(int at, const char* name, const CreateMode& create) noexcept {
  if (!create.group_shared) return {};
  int fd;
  do {
    fd = ::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return {last_error()};
  const Status s = fchmod(fd, create.dir_mode);
  ::close(fd);
  return s;
}

// ---- fork generation ----
std::atomic<unsigned> g_fork_generation{0};
std::atomic<long> g_pid{0};  // this process's pid once asked (cached_pid); 0: not yet
void on_fork_child() noexcept {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
  g_pid.store(0, std::memory_order_relaxed);  // the child asks again
}
std::once_flag g_atfork_once;

// ---- timed flock ----
const int kWakeSignal = SIGRTMAX - 2;
void wake_handler(int) {}
std::once_flag g_wake_once;
bool g_wake_usable = false;

void install_wake_handler() noexcept {
  struct sigaction current {};
  if (sigaction(kWakeSignal, nullptr, &current) != 0) return;
  bool is_default = !(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_DFL;
  bool is_ours = !(current.sa_flags & SA_SIGINFO) && current.sa_handler == wake_handler;
  if (!is_default && !is_ours) return;  // the application owns it: fall back to polling
  struct sigaction sa {};
  sa.sa_handler = wake_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: flock must return EINTR
  g_wake_usable = sigaction(kWakeSignal, &sa, nullptr) == 0;
}

timespec to_timespec(std::chrono::steady_clock::time_point t) noexcept {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ns / 1000000000);
  ts.tv_nsec = static_cast<long>(ns % 1000000000);
  return ts;
}

Status flock_polling(int fd, int op, std::chrono::steady_clock::time_point deadline) noexcept {
  auto step = std::chrono::microseconds(50);
  for (;;) {
    if (::flock(fd, op | LOCK_NB) == 0) return {};
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) return {last_error()};
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return {EWOULDBLOCK};
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(step, deadline - now));
    step = std::min<std::chrono::microseconds>(step * 2, std::chrono::milliseconds(2));
  }
}

// This thread's wake timer, made on its first timed wait and kept (disarmed) between waits: a
// wait arms it and disarms it, two system calls, instead of creating and deleting one. Timers
// are not inherited by fork, so a child makes its own.
class WakeTimer {
 public:
  WakeTimer() = default;
  WakeTimer(const WakeTimer&) = delete;
  WakeTimer& operator=(const WakeTimer&) = delete;
  ~WakeTimer() { forget(); }

  // The timer, made if needed; nullptr when the system refuses one.
  timer_t* get() noexcept {
    if (made_ && generation_ != fork_generation()) made_ = false;  // the parent's, not ours
    if (!made_) {
      sigevent sev{};
      sev.sigev_notify = SIGEV_THREAD_ID;
      sev.sigev_signo = kWakeSignal;
      sev._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
      if (timer_create(CLOCK_MONOTONIC, &sev, &timer_) != 0) return nullptr;
      made_ = true;
      generation_ = fork_generation();
    }
    return &timer_;
  }

 private:
  void forget() noexcept {
    if (made_ && generation_ == fork_generation()) timer_delete(timer_);
    made_ = false;
  }

  timer_t timer_{};
  bool made_ = false;
  unsigned generation_ = 0;
};

// Linux only: SIGEV_THREAD_ID.
Status flock_timed(int fd, int op, std::chrono::steady_clock::time_point deadline) noexcept {
  std::call_once(g_wake_once, install_wake_handler);
  if (!g_wake_usable) return flock_polling(fd, op, deadline);
  thread_local WakeTimer wake_timer;
  timer_t* timer = wake_timer.get();
  if (timer == nullptr) return flock_polling(fd, op, deadline);

  sigset_t wake_set, old_set;
  sigemptyset(&wake_set);
  sigaddset(&wake_set, kWakeSignal);
  pthread_sigmask(SIG_UNBLOCK, &wake_set, &old_set);
  itimerspec spec{};
  spec.it_value = to_timespec(deadline);
  spec.it_interval.tv_nsec = 1000000;  // re-fire every 1 ms past the deadline (see top)
  Status result;
  if (timer_settime(*timer, TIMER_ABSTIME, &spec, nullptr) != 0) {
    result = flock_polling(fd, op, deadline);
  } else {
    for (;;) {
      if (::flock(fd, op) == 0) break;
      if (errno != EINTR) {
        result.err = last_error();
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        result.err = EWOULDBLOCK;
        break;
      }
    }
    const itimerspec disarm{};
    timer_settime(*timer, 0, &disarm, nullptr);
  }
  // The timer generates nothing more. With the signal unblocked throughout (the usual mask), a
  // signal it generated was delivered to the empty handler by the time the disarm returned: none
  // is pending. Only where the caller had it blocked is there one to drain before the old mask
  // comes back.
  if (sigismember(&old_set, kWakeSignal) == 1) {
    pthread_sigmask(SIG_BLOCK, &wake_set, nullptr);
    timespec zero{};
    while (sigtimedwait(&wake_set, nullptr, &zero) == kWakeSignal) {
    }
    pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  }
  return result;
}

std::string read_small_file(const char* path) noexcept {
  try {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
  } catch (...) {
    return {};
  }
}

FileId to_file_id(const struct stat& st) noexcept {
  FileId id;
  id.dev = st.st_dev;
  id.ino = st.st_ino;
  id.nlink = st.st_nlink;
  id.mode = st.st_mode;
  id.size = st.st_size;
  id.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

}  // namespace

void fail_nth(Op op, int nth, int err) noexcept {
  Fault& f = g_faults[static_cast<std::size_t>(op)];
  f.err.store(err);
  f.countdown.store(nth);
  g_faults_armed.store(true);
}

void clear_faults() noexcept {
  for (Fault& f : g_faults) f.countdown.store(0);
  g_faults_armed.store(false);
}

void set_recorder(Recorder* recorder) noexcept { g_recorder.store(recorder); }

Result<int> open(PathRef path, int flags, unsigned mode) noexcept {
  if (injected(Op::open)) return {-1, errno};
  for (;;) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, static_cast<mode_t>(mode));
    if (fd >= 0) return opened({fd, 0}, flags);
    if (errno != EINTR) return {-1, last_error()};
  }
}

Result<int> dup(int fd) noexcept {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return {-1, last_error()};
  return {copy, 0};
}

void close(int fd) noexcept {
  if (fd >= 0) ::close(fd);
}

Status close_written(int fd) noexcept {
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::close_written, .fd = fd});
  }
  if (injected(Op::close)) {
    const int err = errno;
    ::close(fd);
    return {err};
  }
  if (::close(fd) != 0 && errno != EINTR) return {last_error()};
  return {};
}

// Linux only: fallocate(2).
Status reserve(int fd, off_t offset, off_t len) noexcept {
  if (injected(Op::fallocate)) return {errno};
  for (;;) {
    if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, len) == 0) {
      if (Recorder* r = recording()) [[unlikely]] {
        r->record({.kind = Mutation::Kind::fallocate, .fd = fd, .offset = offset, .length = len});
      }
      return {};
    }
    if (errno != EINTR) return {last_error()};
  }
}

Status write_all(int fd, std::string_view data) noexcept {
  const std::string_view all = data;
  while (!data.empty()) {
    if (injected(Op::write)) return {errno};
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return {last_error()};
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::write, .fd = fd, .data = all, .offset = -1});
  }
  return {};
}

Status pwrite_all(int fd, std::string_view data, off_t offset) noexcept {
  const std::string_view all = data;
  const off_t start = offset;
  while (!data.empty()) {
    if (injected(Op::write)) return {errno};
    ssize_t n = ::pwrite(fd, data.data(), data.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return {last_error()};
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += n;
  }
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::write, .fd = fd, .data = all, .offset = start});
  }
  return {};
}

Status truncate(int fd, off_t size) noexcept {
  for (;;) {
    if (::ftruncate(fd, size) == 0) {
      if (Recorder* r = recording()) [[unlikely]] {
        r->record({.kind = Mutation::Kind::truncate, .fd = fd, .length = size});
      }
      return {};
    }
    if (errno != EINTR) return {last_error()};
  }
}

namespace {

// One read(2) into buf[0, n), EINTR retried; faults: Op::read. 0 at the end of the file.
Result<std::size_t> read_once(int fd, char* buf, std::size_t n) noexcept {
  if (injected(Op::read)) return {0, errno};
  for (;;) {
    ssize_t k = ::read(fd, buf, n);
    if (k >= 0) return {static_cast<std::size_t>(k), 0};
    if (errno != EINTR) return {0, last_error()};
  }
}

// Reads to the end of the file into a buffer of `capacity` bytes, doubled when full. With
// `expected` (the size fstat gave a regular file), a read that brings the total to exactly that
// with room left over has reached the end: no second read(2) to see 0.
Status read_to_end(int fd, std::size_t capacity, std::optional<std::size_t> expected,
                   std::string& out) noexcept {
  try {
    out.resize(capacity);
    std::size_t got = 0;
    for (;;) {
      auto n = read_once(fd, out.data() + got, out.size() - got);
      if (!n.ok()) {
        out.clear();
        return {n.err};
      }
      if (n.value == 0) break;
      got += n.value;
      if (expected && got == *expected && got < out.size()) break;
      if (got == out.size()) out.resize(out.size() * 2);
    }
    out.resize(got);
  } catch (...) {
    out.clear();
    return {ENOMEM};
  }
  return {};
}

Result<std::string> read_to_end(int fd, std::size_t capacity,
                                std::optional<std::size_t> expected) noexcept {
  Result<std::string> r;
  r.err = read_to_end(fd, capacity, expected, r.value).err;
  return r;
}

}  // namespace

// The size unknown: the first bytes go to a buffer on the stack, so a small file (a store's key
// file) costs one string of its own size, not a zero-filled 16 KiB one.
Result<std::string> read_all(int fd, bool short_read_ends) noexcept {
  char head[4096];
  std::size_t got = 0;
  while (got < sizeof head) {
    const std::size_t want = sizeof head - got;
    auto n = read_once(fd, head + got, want);
    if (!n.ok()) return {{}, n.err};
    if (n.value == 0) break;
    got += n.value;
    if (short_read_ends && n.value < want) break;
  }
  Result<std::string> r;
  try {
    r.value.assign(head, got);
    if (got == sizeof head) {  // the buffer is full: more may follow
      auto rest = read_to_end(fd, 16384, std::nullopt);
      if (!rest.ok()) return rest;
      r.value += rest.value;
    }
  } catch (...) {
    return {{}, ENOMEM};
  }
  return r;
}

Result<std::string> read_all(int fd, std::size_t size) noexcept {
  return read_to_end(fd, size + 1, size);
}

Status read_all(int fd, std::size_t size, std::string& out) noexcept {
  return read_to_end(fd, size + 1, size, out);
}

Result<std::string> pread(int fd, std::size_t n, off_t offset) noexcept {
  Result<std::string> r;
  try {
    r.value.resize(n);
  } catch (...) {
    return {{}, ENOMEM};
  }
  std::size_t got = 0;
  while (got < n) {
    if (injected(Op::read)) return {{}, errno};
    ssize_t k = ::pread(fd, r.value.data() + got, n - got, offset + static_cast<off_t>(got));
    if (k < 0) {
      if (errno == EINTR) continue;
      return {{}, last_error()};
    }
    if (k == 0) break;
    got += static_cast<std::size_t>(k);
  }
  r.value.resize(got);
  return r;
}

Result<std::string> read_file(const std::filesystem::path& path) noexcept {
  auto fd = open(path, O_RDONLY);
  if (!fd.ok()) return {{}, fd.err};
  auto r = read_all(fd.value);
  close(fd.value);
  return r;
}

Status fsync(int fd) noexcept {
  if (injected(Op::fsync)) return {errno};
  for (;;) {
    if (::fsync(fd) == 0) {
      if (Recorder* r = recording()) [[unlikely]]
        r->record({.kind = Mutation::Kind::fsync, .fd = fd});
      return {};
    }
    if (errno != EINTR) return {last_error()};
  }
}

Status fsync_dir(PathRef dir) noexcept {
  auto fd = open(*dir.c_str() == '\0' ? PathRef(".") : dir, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) return {fd.err};
  Status s = fsync(fd.value);
  close(fd.value);
  return s;
}

// Linux only: statfs f_type (and the magic numbers of short_reads_end).
long fs_magic(int fd) noexcept {
  struct statfs st {};
  return ::fstatfs(fd, &st) == 0 ? static_cast<long>(st.f_type) : 0;
}

long fs_magic(PathRef path) noexcept {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 ? static_cast<long>(st.f_type) : 0;
}

bool short_reads_end(long fs_magic) noexcept {
  constexpr long kTmpfs = 0x01021994;  // TMPFS_MAGIC
  constexpr long kExt4 = 0xEF53;       // EXT2/3/4_SUPER_MAGIC
  constexpr long kXfs = 0x58465342;    // XFS_SUPER_MAGIC
  constexpr long kBtrfs = 0x9123683E;  // BTRFS_SUPER_MAGIC
  return fs_magic == kTmpfs || fs_magic == kExt4 || fs_magic == kXfs || fs_magic == kBtrfs;
}

namespace {

// The mount options (both the per-mount and the superblock ones) of the filesystem on device
// `dev`, from /proc/self/mountinfo: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext4 /dev/root
// rw,errors=continue". Empty when it is not listed.
std::string mount_options_of(dev_t dev) {
  std::ifstream in("/proc/self/mountinfo");
  const std::string id = std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string mount_id, parent, device, root, point, options;
    if (!(fields >> mount_id >> parent >> device >> root >> point >> options) || device != id) {
      continue;
    }
    std::string word;
    while (fields >> word && word != "-") {
    }
    std::string type, source, super_options;
    fields >> type >> source >> super_options;
    return options + "," + super_options;
  }
  return {};
}

bool has_option(std::string_view options, std::string_view option) {
  while (!options.empty()) {
    const auto comma = options.find(',');
    if (options.substr(0, comma) == option) return true;
    if (comma == std::string_view::npos) break;
    options.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool rename_flushes_data(int fd) noexcept {
  constexpr long kExt4 = 0xEF53;  // EXT2/3/4_SUPER_MAGIC
  if (fs_magic(fd) != kExt4) return false;
  auto st = fstat(fd);
  if (!st.ok()) return false;
  static std::mutex mu;
  static std::vector<std::pair<dev_t, bool>> known;  // guarded by mu; one entry per device
  std::lock_guard<std::mutex> guard(mu);
  for (const auto& [dev, flushes] : known) {
    if (dev == st.value.dev) return flushes;
  }
  bool flushes = false;
  try {
    const std::string options = mount_options_of(st.value.dev);
    flushes = !options.empty() && !has_option(options, "noauto_da_alloc") &&
              !has_option(options, "data=writeback");
    known.emplace_back(st.value.dev, flushes);
  } catch (...) {  // out of memory: not known, so not assumed
  }
  return flushes;
}

Status rename(PathRef from, PathRef to) noexcept {
  if (injected(Op::rename)) return {errno};
  if (::rename(from.c_str(), to.c_str()) != 0) return {last_error()};
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::rename, .path = from.c_str(), .to_path = to.c_str()});
  }
  return {};
}

// Linux only: renameat2(2).
Status rename_exchange(PathRef a, PathRef b) noexcept {
  if (injected(Op::rename)) return {errno};
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) != 0) {
    return {last_error()};
  }
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::rename_exchange, .path = a.c_str(), .to_path = b.c_str()});
  }
  return {};
}

Status link(PathRef from, PathRef to) noexcept {
  if (injected(Op::link)) return {errno};
  if (::link(from.c_str(), to.c_str()) != 0) return {last_error()};
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::link, .path = from.c_str(), .to_path = to.c_str()});
  }
  return {};
}

Status link_at(int dir_fd, PathRef from, PathRef to) noexcept {
  if (injected(Op::link)) return {errno};
  return {::linkat(dir_fd, from.c_str(), dir_fd, to.c_str(), 0) == 0 ? 0 : last_error()};
}

Status unlink(PathRef path) noexcept {
  if (injected(Op::unlink)) return {errno};
  if (::unlink(path.c_str()) != 0) return {last_error()};
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::unlink, .path = path.c_str()});
  }
  return {};
}

Status mkdirs(const std::filesystem::path& dir, unsigned mode, CreateMode create) noexcept {
  if (dir.empty()) return {};
  if (injected(Op::mkdir)) return {errno};
  auto made = [&]() noexcept -> Status {
    if (Status s = share_dir_at(AT_FDCWD, dir.c_str(), create); !s.ok()) return s;
    return made_dir(AT_FDCWD, dir.native());
  };
  if (::mkdir(dir.c_str(), static_cast<mode_t>(mode)) == 0) return made();
  int err = errno;
  if (err == EEXIST) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return {last_error()};
    return {S_ISDIR(st.st_mode) ? 0 : ENOTDIR};
  }
  if (err != ENOENT) return {err};
  std::filesystem::path parent = dir.parent_path();
  if (parent == dir || parent.empty()) return {err};
  if (Status s = mkdirs(parent, mode, create); !s.ok()) return s;
  if (::mkdir(dir.c_str(), static_cast<mode_t>(mode)) == 0) return made();
  if (errno == EEXIST) return {};
  return {last_error()};
}

namespace {

// Of this host's name and pid namespace (the low half of the store's FNV-1a-64): processes whose
// pids this process can judge.
// Linux only: /proc/self/ns/pid.
std::uint32_t pid_space_tag() noexcept {
  static const std::uint32_t tag = [] {
    std::string space = hostname();
    char ns[64] = {};
    const ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    space += ':';
    if (n > 0) space.append(ns, static_cast<std::size_t>(n));
    return static_cast<std::uint32_t>(util::fnv1a64(space));
  }();
  return tag;
}

}  // namespace

std::string temp_owner_digits() {
  std::string out;
  util::append_hex(out, pid_space_tag(), 8);
  util::append_hex(out, static_cast<std::uint32_t>(cached_pid()), 8);
  return out;
}

std::optional<long> temp_writer_pid(std::string_view hex) noexcept {
  if (hex.size() != kTempOwnerDigits && hex.size() != kTempOwnerDigits + 12) return std::nullopt;
  std::uint32_t space = 0, pid = 0;
  if (std::from_chars(hex.data(), hex.data() + 8, space, 16).ptr != hex.data() + 8 ||
      std::from_chars(hex.data() + 8, hex.data() + 16, pid, 16).ptr != hex.data() + 16) {
    return std::nullopt;
  }
  if (space != pid_space_tag() || pid == 0) return std::nullopt;
  return static_cast<long>(pid);
}

Result<int> create_temp_at(int dir_fd, std::string_view dir, std::string_view prefix,
                           std::string* out_path, unsigned mode, TempName naming,
                           CreateMode create) noexcept {
  try {
    std::string& p = *out_path;  // built in place: a caller's buffer keeps its room
    p.clear();
    p.reserve(dir.size() + 1 + prefix.size() + 32);
    p.append(dir);
    if (!p.empty() && p.back() != '/') p += '/';
    // Relative to dir_fd: the name alone; relative to the working directory: the whole path.
    const std::size_t name_at = dir_fd == AT_FDCWD ? 0 : p.size();
    p.append(prefix);
    const std::size_t stem = p.size();
    for (int attempt = 0; attempt < 100; ++attempt) {
      p.resize(stem);
      // Who writes it first (temp_writer_pid), so that a crashed writer's leftover can be told.
      util::append_hex(p, pid_space_tag(), 8);
      util::append_hex(p, static_cast<std::uint32_t>(cached_pid()), 8);
      if (attempt > 0 || naming != TempName::process_id) append_random_hex(p, 6);
      p += ".tmp";
      Result<int> fd{-1, 0};
      if (injected(Op::open)) {
        fd.err = errno;
      } else {
        for (;;) {
          fd.value = ::openat(dir_fd, p.c_str() + name_at,
                              O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                              static_cast<mode_t>(mode));
          if (fd.value >= 0 || errno != EINTR) break;
        }
        if (fd.value < 0) fd.err = last_error();
      }
      if (fd.ok() && create.group_shared) {
        if (Status s = fchmod(fd.value, create.file_mode); !s.ok()) {
          ::close(fd.value);
          (void)::unlinkat(dir_fd, p.c_str() + name_at, 0);  // ours, just made (not recorded)
          p.clear();
          return {-1, s.err};
        }
      }
      if (fd.ok()) {
        if (Recorder* r = recording()) [[unlikely]] {
          r->record({.kind = Mutation::Kind::create_temp, .fd = fd.value});
        }
        return fd;
      }
      if (fd.err != EEXIST) {
        p.clear();
        return fd;
      }
    }
    p.clear();
  } catch (...) {
    out_path->clear();
    return {-1, ENOMEM};
  }
  return {-1, EEXIST};
}

Result<int> create_temp(std::string_view dir, std::string_view prefix, std::string* out_path,
                        unsigned mode, TempName naming) noexcept {
  return create_temp_at(AT_FDCWD, dir, prefix, out_path, mode, naming);
}

Result<int> create_temp(const std::filesystem::path& dir, std::string_view prefix,
                        std::filesystem::path* out_path, unsigned mode) noexcept {
  std::string p;
  auto fd = create_temp(dir.native(), prefix, &p, mode);
  if (!fd.ok()) return fd;
  try {
    *out_path = p;
  } catch (...) {
    (void)unlink(p);
    close(fd.value);
    return {-1, ENOMEM};
  }
  return fd;
}

Result<std::size_t> write_once(int fd, std::string_view data) noexcept {
  if (injected(Op::write)) return {0, errno};
  for (;;) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n >= 0) {
      if (Recorder* r = recording()) [[unlikely]] {
        r->record({.kind = Mutation::Kind::write,
                   .fd = fd,
                   .data = data.substr(0, static_cast<std::size_t>(n)),
                   .offset = -1});
      }
      return {static_cast<std::size_t>(n), 0};
    }
    if (errno != EINTR) return {0, last_error()};
  }
}

Result<std::size_t> pread_into(int fd, char* buf, std::size_t n, off_t offset) noexcept {
  if (injected(Op::read)) return {0, errno};
  for (;;) {
    ssize_t k = ::pread(fd, buf, n, offset);
    if (k >= 0) return {static_cast<std::size_t>(k), 0};
    if (errno != EINTR) return {0, last_error()};
  }
}

namespace {

DirEntry::Type type_of(DIR* d, const dirent* e) noexcept {
  unsigned char t = e->d_type;
  if (t == DT_UNKNOWN) {  // some filesystems do not say: ask
    struct stat st {};
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      return DirEntry::Type::other;
    t = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : DT_LNK;
  }
  return t == DT_REG   ? DirEntry::Type::regular
         : t == DT_DIR ? DirEntry::Type::directory
                       : DirEntry::Type::other;
}

// The entries of an open directory stream but "." and "..", in the order readdir gives them, as
// `add(dir, entry)` appends them to out.value; closes the stream.
template <class T, class Add>
Result<std::vector<T>> read_and_close_dir(DIR* d, Add add) noexcept {
  Result<std::vector<T>> r;
  try {
    for (;;) {
      errno = 0;
      const dirent* e = ::readdir(d);
      if (e == nullptr) {
        if (errno != 0) r.err = errno;
        break;
      }
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      add(r.value, d, e);
    }
  } catch (...) {
    r.err = ENOMEM;
  }
  ::closedir(d);
  if (!r.ok()) r.value.clear();
  return r;
}

Result<std::vector<std::string>> read_and_close_dir(DIR* d) noexcept {
  return read_and_close_dir<std::string>(
      d, [](std::vector<std::string>& out, DIR*, const dirent* e) { out.emplace_back(e->d_name); });
}

}  // namespace

Result<std::vector<std::string>> list_dir(const std::filesystem::path& dir) noexcept {
  if (injected(Op::open)) return {{}, errno};
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return {{}, last_error()};
  return read_and_close_dir(d);
}

Result<std::vector<DirEntry>> list_dir_entries(const std::filesystem::path& dir) noexcept {
  if (injected(Op::open)) return {{}, errno};
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return {{}, last_error()};
  return read_and_close_dir<DirEntry>(d, [](std::vector<DirEntry>& out, DIR* in, const dirent* e) {
    out.push_back(DirEntry{e->d_name, type_of(in, e)});
  });
}

std::filesystem::path absolute(const std::filesystem::path& path) noexcept {
  try {
    std::error_code ec;
    auto out = std::filesystem::absolute(path, ec);  // getcwd(3) for a relative path
    return ec ? path : out;
  } catch (...) {
    return path;
  }
}

std::filesystem::path temp_dir() noexcept {
  try {
    std::error_code ec;
    auto tmp = std::filesystem::temp_directory_path(ec);  // $TMPDIR (checked), else /tmp
    return ec ? std::filesystem::path("/tmp") : tmp;
  } catch (...) {
    return "/tmp";
  }
}

Result<void*> map_shared(int fd, std::size_t length) noexcept {
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return {nullptr, last_error()};
  return {p, 0};
}

void unmap(void* addr, std::size_t length) noexcept {
  if (addr != nullptr) ::munmap(addr, length);
}

Result<FileId> fstat(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {{}, last_error()};
  return {to_file_id(st), 0};
}

Result<FileId> stat(PathRef path) noexcept {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {{}, last_error()};
  return {to_file_id(st), 0};
}

Result<FileId> lstat(PathRef path) noexcept {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return {{}, last_error()};
  return {to_file_id(st), 0};
}

CreateMode create_mode_of_root(unsigned root_mode) noexcept {
  if ((root_mode & S_ISGID) == 0 || (root_mode & S_IWGRP) == 0) return {};
  return {.group_shared = true,
          .file_mode = 0660u | (root_mode & S_IROTH),
          .dir_mode = S_ISGID | 0770u | (root_mode & (S_IROTH | S_IXOTH))};
}

Status fchmod(int fd, unsigned mode) noexcept {
  return {::fchmod(fd, static_cast<mode_t>(mode)) == 0 ? 0 : last_error()};
}

Status touch(const std::filesystem::path& path) noexcept {
  return {::utimensat(AT_FDCWD, path.c_str(), nullptr, AT_SYMLINK_NOFOLLOW) == 0 ? 0
                                                                                 : last_error()};
}

// ---- a store's files, relative to a directory descriptor ----

namespace {

// The openat(2) fallback of open_beneath: one component at a time, none followed.
Result<int> open_components(int dir_fd, std::string_view rel, int flags, unsigned mode) noexcept {
  std::string name;
  int at = dir_fd;
  int owned = -1;  // the directory descriptor opened for the current component, if any
  Result<int> r{-1, 0};
  try {
    for (;;) {
      const auto slash = rel.find('/');
      const bool last = slash == std::string_view::npos;
      name.assign(rel.substr(0, last ? rel.size() : slash));
      if (name.empty() || name == "." || name == "..") {
        r = {-1, EXDEV};  // not a plain name: could lead out of dir_fd
        break;
      }
      const int f =
          last ? flags | O_NOFOLLOW | O_CLOEXEC : O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
      int fd;
      do {
        fd = ::openat(at, name.c_str(), f, static_cast<mode_t>(mode));
      } while (fd < 0 && errno == EINTR);
      // O_DIRECTORY|O_NOFOLLOW on a symbolic link says ENOTDIR: call it what it is.
      if (fd < 0 && !last && errno == ENOTDIR) {
        struct stat st {};
        errno = ::fstatat(at, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)
                    ? ELOOP
                    : ENOTDIR;
      }
      if (fd < 0) {
        r = {-1, last_error()};
        break;
      }
      if (last) {
        r = {fd, 0};
        break;
      }
      if (owned >= 0) ::close(owned);
      owned = at = fd;
      rel.remove_prefix(slash + 1);
    }
  } catch (...) {
    r = {-1, ENOMEM};
  }
  if (owned >= 0) ::close(owned);
  return r;
}

std::atomic<bool> g_no_openat2{false};  // the kernel said ENOSYS once

// Linux only: openat2(2).
Result<int> open_beneath_once(int dir_fd, std::string_view rel, int flags, unsigned mode) noexcept {
  if (injected(Op::open)) return {-1, errno};
  if (!g_no_openat2.load(std::memory_order_relaxed)) {
    char buf[PATH_MAX];
    if (rel.size() < sizeof buf) {
      std::memcpy(buf, rel.data(), rel.size());
      buf[rel.size()] = '\0';
      open_how how{};
      how.flags = static_cast<unsigned>(flags | O_NOFOLLOW | O_CLOEXEC);
      // A mode only with O_CREAT or O_TMPFILE (whose bits include O_DIRECTORY's): else EINVAL.
      if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) how.mode = mode & 07777;
      how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
      for (;;) {
        const long fd = ::syscall(SYS_openat2, dir_fd, buf, &how, sizeof how);
        if (fd >= 0) return opened({static_cast<int>(fd), 0}, flags);
        if (errno == EINTR || errno == EAGAIN) continue;  // EAGAIN: a rename raced the lookup
        if (errno != ENOSYS && errno != E2BIG) return {-1, last_error()};
        g_no_openat2.store(true, std::memory_order_relaxed);
        break;
      }
    }
  }
  return opened(open_components(dir_fd, rel, flags, mode), flags);
}

}  // namespace

Result<int> open_beneath(int dir_fd, std::string_view rel, int flags, unsigned mode,
                         CreateMode create) noexcept {
  if (!create.group_shared || (flags & O_CREAT) == 0) {
    return open_beneath_once(dir_fd, rel, flags, mode);
  }
  // Only a file this call creates gets the shared mode: O_EXCL tells. A file that exists is opened
  // as it is; one removed between the two opens is created again (a lock file, the only caller
  // without O_EXCL, is removed only when its key is erased, under its lock: a retry is rare, and
  // bounded).
  for (int attempt = 0;; ++attempt) {
    auto r = open_beneath_once(dir_fd, rel, flags | O_EXCL, mode);
    if (r.ok()) {
      if (Status s = fchmod(r.value, create.file_mode); !s.ok()) {
        ::close(r.value);
        return {-1, s.err};
      }
      return r;
    }
    if (r.err != EEXIST || (flags & O_EXCL) != 0) return r;
    r = open_beneath_once(dir_fd, rel, flags & ~O_CREAT, mode);
    if (r.err != ENOENT || attempt == 100) return r;
  }
}

std::string first_non_directory(int dir_fd, std::string_view rel) noexcept {
  try {
    std::size_t end = 0;
    for (;;) {
      const auto slash = rel.find('/', end);
      const bool last = slash == std::string_view::npos;
      end = last ? rel.size() : slash;
      const std::string prefix(rel.substr(0, end));
      struct stat st {};
      if (::fstatat(dir_fd, prefix.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
      if (S_ISLNK(st.st_mode) || (!last && !S_ISDIR(st.st_mode))) return prefix;
      if (last) return {};
      ++end;
    }
  } catch (...) {
    return {};
  }
}

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Status mkdirs_beneath(int dir_fd, std::string_view rel, unsigned mode, CreateMode create) noexcept {
  if (injected(Op::mkdir)) return {errno};
  const std::string_view whole = rel;
  Fd parent;  // the directory made or found for the previous component
  try {
    std::string name;
    while (!rel.empty()) {
      const auto slash = rel.find('/');
      name.assign(rel.substr(0, slash));
      rel.remove_prefix(slash == std::string_view::npos ? rel.size() : slash + 1);
      if (name.empty()) continue;
      if (name == "." || name == "..") return {EXDEV};
      const int at = parent.get() >= 0 ? parent.get() : dir_fd;
      const bool made = ::mkdirat(at, name.c_str(), static_cast<mode_t>(mode)) == 0;
      if (!made && errno != EEXIST) return {last_error()};
      auto next = open_components(at, name, O_RDONLY | O_DIRECTORY, 0);
      if (!next.ok()) {
        if (next.err != ENOTDIR) return {next.err};
        auto st = lstat_at(at, name.c_str());
        return {st.ok() && S_ISLNK(st.value.mode) ? ELOOP : ENOTDIR};
      }
      parent.reset(next.value);
      if (made && create.group_shared) {
        if (Status s = fchmod(parent.get(), create.dir_mode); !s.ok()) return s;
      }
    }
  } catch (...) {
    return {ENOMEM};
  }
  return made_dir(dir_fd, whole);
}

Status mkdir_at(int dir_fd, PathRef name, unsigned mode, CreateMode create) noexcept {
  if (injected(Op::mkdir)) return {errno};
  if (::mkdirat(dir_fd, name.c_str(), static_cast<mode_t>(mode)) != 0) return {last_error()};
  if (Status s = share_dir_at(dir_fd, name.c_str(), create); !s.ok()) {
    (void)::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR);  // just made, still empty
    return s;
  }
  return made_dir(dir_fd, name.c_str());
}

Status rename_at(int from_dir, PathRef from, int to_dir, PathRef to) noexcept {
  if (injected(Op::rename)) return {errno};
  if (::renameat(from_dir, from.c_str(), to_dir, to.c_str()) != 0) return {last_error()};
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = Mutation::Kind::rename,
               .dir_fd = from_dir,
               .path = from.c_str(),
               .to_dir_fd = to_dir,
               .to_path = to.c_str()});
  }
  return {};
}

namespace {

// Linux only: renameat2(2) with `flags` within one directory, recorded as `kind`.
Status renameat2_in(int dir_fd, PathRef from, PathRef to, unsigned flags,
                    Mutation::Kind kind) noexcept {
  if (injected(Op::rename)) return {errno};
  if (::renameat2(dir_fd, from.c_str(), dir_fd, to.c_str(), flags) != 0) return {last_error()};
  if (Recorder* r = recording()) [[unlikely]] {
    r->record({.kind = kind,
               .dir_fd = dir_fd,
               .path = from.c_str(),
               .to_dir_fd = dir_fd,
               .to_path = to.c_str()});
  }
  return {};
}

}  // namespace

Status rename_exchange_at(int dir_fd, PathRef a, PathRef b) noexcept {
  return renameat2_in(dir_fd, a, b, RENAME_EXCHANGE, Mutation::Kind::rename_exchange);
}

Status rename_noreplace_at(int dir_fd, PathRef from, PathRef to) noexcept {
  return renameat2_in(dir_fd, from, to, RENAME_NOREPLACE, Mutation::Kind::rename_noreplace);
}

Status unlink_at(int dir_fd, PathRef name, int flags) noexcept {
  if (injected(Op::unlink)) return {errno};
  if (::unlinkat(dir_fd, name.c_str(), flags) != 0) return {last_error()};
  if (Recorder* r = recording()) [[unlikely]] {
    r->record(
        {.kind = Mutation::Kind::unlink, .flags = flags, .dir_fd = dir_fd, .path = name.c_str()});
  }
  return {};
}

Result<FileId> lstat_at(int dir_fd, PathRef name) noexcept {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return {{}, last_error()};
  return {to_file_id(st), 0};
}

Result<std::vector<std::string>> list_dir(int dir_fd) noexcept {
  if (injected(Op::open)) return {{}, errno};
  const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return {{}, last_error()};
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    const int err = last_error();
    ::close(fd);
    return {{}, err};
  }
  return read_and_close_dir(d);
}

namespace {

const char* file_kind(unsigned mode) noexcept {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symbolic link";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
  }
  return "of an unknown type";
}

}  // namespace

[[noreturn]] void throw_beneath(const std::string& context, std::string_view dir, int dir_fd,
                                std::string_view rel, int err) {
  std::string where(dir);
  if (!where.empty() && where.back() != '/') where += '/';
  if (err == ELOOP || err == ENOTDIR || err == EACCES || err == EXDEV) {
    if (std::string planted = first_non_directory(dir_fd, rel); !planted.empty()) {
      auto st = lstat_at(dir_fd, planted);
      where += planted;
      if (st.ok() && !S_ISLNK(st.value.mode)) {
        throw Error(Errc::invalid_argument, context, where,
                    std::string("it is not a directory (it is ") + file_kind(st.value.mode) + ")");
      }
      throw Error(Errc::invalid_argument, context, where,
                  "it is a symbolic link (refused, not followed)");
    }
  }
  where += rel;
  throw_errno(context, where, err);
}

std::string planted_problem(const FileId& id, bool one_link) {
  const unsigned type = id.mode & S_IFMT;
  if (type == S_IFLNK) return "it is a symbolic link (refused, not followed)";
  if (type != S_IFREG)
    return std::string("it is not a regular file (it is ") + file_kind(type) + ")";
  if (one_link && id.nlink != 1) {
    return "it has " + std::to_string(id.nlink) +
           " hard links (refused: writing it would change the file under its other names)";
  }
  return {};
}

void require_plain_file(int fd, const std::string& context, const std::filesystem::path& path,
                        bool one_link) {
  auto st = fstat(fd);
  if (!st.ok()) throw_errno(context + ": cannot stat", path, st.err);
  if (std::string problem = planted_problem(st.value, one_link); !problem.empty()) {
    throw Error(Errc::invalid_argument, context, path, problem);
  }
}

Status flock_until(int fd, bool shared,
                   std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
  if (injected(Op::flock)) return {errno};
  const int op = shared ? LOCK_SH : LOCK_EX;
  for (;;) {  // first a non-blocking try: the uncontended path is one system call
    if (::flock(fd, op | LOCK_NB) == 0) return {};
    if (errno != EINTR) break;
  }
  if (errno != EWOULDBLOCK) return {last_error()};
  if (!deadline) {
    for (;;) {
      if (::flock(fd, op) == 0) return {};
      if (errno != EINTR) return {last_error()};
    }
  }
  if (std::chrono::steady_clock::now() >= *deadline) return {EWOULDBLOCK};
  return flock_timed(fd, op, *deadline);
}

Status flock_unlock(int fd) noexcept {
  for (;;) {
    if (::flock(fd, LOCK_UN) == 0) return {};
    if (errno != EINTR) return {last_error()};
  }
}

long pid() noexcept { return static_cast<long>(::getpid()); }

unsigned fork_generation() noexcept {
  std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, on_fork_child); });
  return g_fork_generation.load(std::memory_order_relaxed);
}

long cached_pid() noexcept {
  (void)fork_generation();  // installs the fork handler that forgets the pid in a child
  long cached = g_pid.load(std::memory_order_relaxed);
  if (cached == 0) {
    cached = pid();
    g_pid.store(cached, std::memory_order_relaxed);
  }
  return cached;
}

// Linux only, down to lock_holder_pid: /proc.
bool pid_alive(long pid) noexcept {
  if (pid <= 0 || pid > INT_MAX) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  // A zombie (exited, not yet reaped by its parent) still has its pid but holds nothing: its
  // state, the field after the ")" that closes comm in /proc/<pid>/stat, is 'Z'.
  const std::string stat = read_small_file(("/proc/" + std::to_string(pid) + "/stat").c_str());
  const auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'Z';
}

const std::string& boot_id() noexcept {
  static const std::string boot = read_small_file("/proc/sys/kernel/random/boot_id");
  return boot;
}

std::string process_start_token(long pid) noexcept {
  try {
    const std::string& boot = boot_id();
    std::string stat = read_small_file(("/proc/" + std::to_string(pid) + "/stat").c_str());
    // Field 22 (starttime) counts from the field after the ")" that closes comm.
    auto close = stat.rfind(')');
    if (close == std::string::npos || boot.empty()) return {};
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    for (int i = 3; i <= 22 && (in >> field); ++i) {
      if (i == 22) return boot + ":" + field;
    }
  } catch (...) {
  }
  return {};
}

std::string program_name(long pid) noexcept {
  return read_small_file(("/proc/" + std::to_string(pid) + "/comm").c_str());
}

const std::string& hostname() noexcept {
  static const std::string name = [] {
    char buf[HOST_NAME_MAX + 1] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::string("localhost");
    return std::string(buf);
  }();
  return name;
}

void append_random_hex(std::string& out, std::size_t bytes) {
  thread_local std::mt19937_64 rng = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), static_cast<unsigned>(::getpid())};
    return std::mt19937_64(seq);
  }();
  thread_local unsigned seen_generation = g_fork_generation.load();
  if (seen_generation != g_fork_generation.load()) {  // a forked child must not repeat its parent
    seen_generation = g_fork_generation.load();
    std::random_device rd;
    rng.seed((static_cast<std::uint64_t>(rd()) << 32) ^ static_cast<std::uint64_t>(::getpid()));
  }
  const char* digits = util::kHexDigits;
  char hex[16];
  for (std::size_t done = 0; done < bytes;) {  // eight bytes from each draw
    std::uint64_t bits = rng();
    const std::size_t n = std::min<std::size_t>(8, bytes - done);
    for (std::size_t i = 0; i < n; ++i, bits >>= 8) {
      hex[2 * i] = digits[(bits >> 4) & 0xf];
      hex[2 * i + 1] = digits[bits & 0xf];
    }
    out.append(hex, 2 * n);
    done += n;
  }
}

std::string random_hex(std::size_t bytes) noexcept {
  std::string out;
  out.reserve(bytes * 2);  // within the small-string buffer for up to 7 bytes
  append_random_hex(out, bytes);
  return out;
}

std::optional<LockHolder> flock_holder(dev_t dev, ino_t ino) {
  auto pid = lock_holder_pid(dev, ino);
  if (!pid) return std::nullopt;
  LockHolder h;
  h.pid = *pid;
  h.host = hostname();
  h.program = program_name(*pid);
  return h;
}

std::optional<long> lock_holder_pid(dev_t dev, ino_t ino) noexcept {
  try {
    // Lines: "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; blocked waiters carry "->".
    std::ifstream in("/proc/locks");
    std::string line;
    char want[64];
    std::snprintf(want, sizeof want, "%02x:%02x:%lu", major(dev), minor(dev),
                  static_cast<unsigned long>(ino));
    while (std::getline(in, line)) {
      if (line.find("->") != std::string::npos) continue;
      std::istringstream fields(line);
      std::string n, kind, advisory, access, pid_text, id;
      if (!(fields >> n >> kind >> advisory >> access >> pid_text >> id)) continue;
      if (id == want) return std::stol(pid_text);
    }
  } catch (...) {
  }
  return std::nullopt;
}

std::string error_text(int err) { return std::generic_category().message(err); }

Errc errc_for_errno(int err) noexcept {
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS: return Errc::permission;
    case ENOENT: return Errc::not_found;
    case ENOLCK:
    case EOPNOTSUPP: return Errc::lock_unsupported;
    case EISDIR:
    case ENOTDIR:
    case ELOOP:
    case ENAMETOOLONG:
    case EINVAL: return Errc::invalid_argument;
    default: return Errc::io;
  }
}

[[noreturn]] void throw_errno(std::string context, const std::filesystem::path& path, int err) {
  throw Error(errc_for_errno(err), std::move(context), path, err);
}

}  // namespace lockdb::os
