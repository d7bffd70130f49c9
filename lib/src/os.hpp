// The OS seam: every system call lockdb makes goes through here, and nothing else in lib/ or
// tools/ touches the disk or the process table (no std::filesystem call that reaches the OS).
// os_posix.cpp implements it for Linux and marks what is Linux only; a port adds a second file
// (os_windows.cpp, os_macos.cpp) implementing this header, and nothing above it changes. The
// wrappers never throw; they return a small [[nodiscard]] result carrying errno, so cleanup paths
// (close, temp removal, destructors) cannot throw. They retry on EINTR, except close(). Tests can
// make the Nth call of an operation fail (fail_nth) to prove that a failure in the middle of a
// write loses nothing.
#pragma once

#include <lockdb/error.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace lockdb::os {

struct [[nodiscard]] Status {
  int err = 0;
  bool ok() const noexcept { return err == 0; }
};

template <class T>
struct [[nodiscard]] Result {
  T value{};
  int err = 0;
  bool ok() const noexcept { return err == 0; }
};

// ---- fault injection (tests) ----
enum class Op : std::uint8_t {
  open,
  read,
  write,
  fsync,
  rename,
  unlink,
  mkdir,
  flock,
  link,
  close,  // close_written() only
  fallocate,
  count
};
// The nth call of `op` from now (1 = the next one) fails with `err` instead of running.
void fail_nth(Op op, int nth, int err) noexcept;
void clear_faults() noexcept;

// ---- recording (tests) ----
// A crash-state test (tests/test_crash_states.cpp) records every call that changes a file or a
// directory, after it succeeded, to rebuild what a power cut could leave. Paths are as the call
// took them (relative to dir_fd, AT_FDCWD for the working directory); descriptors are still open
// when the recorder sees them, so it can name their files (/proc/self/fd).
struct Mutation {
  enum class Kind : std::uint8_t {
    open,           // open or open_beneath with O_CREAT or O_TRUNC: fd, flags
    create_temp,    // fd
    write,          // fd, data at offset (-1: at the file position, now just past the data)
    truncate,       // fd, to length
    fallocate,      // fd, [offset, offset + length), size kept
    fsync,          // fd (a file or a directory)
    close_written,  // fd, about to be closed
    mkdir,          // dir_fd + path, missing parents included
    rename,         // dir_fd + path -> to_dir_fd + to_path (over an existing one)
    rename_exchange,
    rename_noreplace,
    link,
    unlink,  // dir_fd + path; flags: AT_REMOVEDIR for a directory
  };
  Kind kind;
  int fd = -1;
  int flags = 0;
  int dir_fd = -100;  // AT_FDCWD
  std::string_view path;
  int to_dir_fd = -100;
  std::string_view to_path;
  std::string_view data;
  std::int64_t offset = 0;
  std::int64_t length = 0;
};
class Recorder {
 public:
  virtual void record(const Mutation& m) noexcept = 0;

 protected:
  ~Recorder() = default;
};
// Every successful mutating call is passed to `recorder` from now on; nullptr stops it. Not
// synchronised with calls in flight: set it while no other thread uses the seam.
void set_recorder(Recorder* recorder) noexcept;

// ---- permissions of what lockdb creates ----
// How a file or directory lockdb creates in a store gets its permission bits. The default: the
// mode asked for less the process umask, as open(2) and mkdir(2) give them, and nothing more.
// group_shared (a store whose root directory is setgid and group-writable: docs/store.md,
// "Sharing a store between OS users"): each creation is followed by one fchmod(2) to file_mode or
// dir_mode whatever the umask, so that every member of the store's group can write what any of
// them made (the group itself comes from the setgid directory, which new directories inherit).
// Only what the call creates is changed, never a file or directory that was there. The
// wrappers below that create take one (default: nothing more is done, not one call).
struct CreateMode {
  bool group_shared = false;
  unsigned file_mode = 0;  // group_shared: 0660, and o+r where the root grants it
  unsigned dir_mode = 0;   // group_shared: 02770 (setgid), and the root's o+r and o+x
};
// The CreateMode of a store whose root directory has `root_mode` (FileId::mode): group_shared
// when it has the setgid bit and group write permission, else the default.
CreateMode create_mode_of_root(unsigned root_mode) noexcept;

// ---- files ----
// A path as the system calls take it, from a std::filesystem::path, a std::string or a C string,
// without building a std::filesystem::path (which splits the whole path into components): the
// write path of the store and the helpers names files by strings. Holds a pointer only: valid
// for the full-expression of the call it is passed to.
class PathRef {
 public:
  PathRef(const std::filesystem::path& p) noexcept : p_(p.c_str()) {}  // NOLINT: implicit
  PathRef(const std::string& s) noexcept : p_(s.c_str()) {}            // NOLINT: implicit
  PathRef(const char* s) noexcept : p_(s) {}                           // NOLINT: implicit
  const char* c_str() const noexcept { return p_; }

 private:
  const char* p_;
};

// open(2) with EINTR retry; O_CLOEXEC is always added.
Result<int> open(PathRef path, int flags, unsigned mode = 0666) noexcept;
// fcntl(F_DUPFD_CLOEXEC): a second descriptor of the same open file.
Result<int> dup(int fd) noexcept;
// close(2), not retried (the descriptor is gone either way).
void close(int fd) noexcept;
// close(2) of a file just written, whose error fails the write (NFS and others report a deferred
// write's EIO or ENOSPC only here). Not retried; the descriptor is gone either way.
Status close_written(int fd) noexcept;
// Reserves [offset, offset + len) of a file's blocks without changing its size (fallocate(2)
// with FALLOC_FL_KEEP_SIZE), so that a later write there cannot fail for lack of space.
// EOPNOTSUPP where the filesystem cannot.
Status reserve(int fd, off_t offset, off_t len) noexcept;
Status write_all(int fd, std::string_view data) noexcept;
Status pwrite_all(int fd, std::string_view data, off_t offset) noexcept;
Status truncate(int fd, off_t size) noexcept;
// `short_read_ends`: the file is on a filesystem where read(2) of a regular file returns fewer
// bytes than asked for only at the end (short_reads_end), so that is taken as the end: one read(2)
// for a small file instead of a second one to see 0.
Result<std::string> read_all(int fd, bool short_read_ends = false) noexcept;
// The same for a regular file fstat said holds `size` bytes: one read(2) when it still does (a
// read that returns exactly `size` of `size + 1` bytes asked for has reached the end).
Result<std::string> read_all(int fd, std::size_t size) noexcept;
// The same into `out`, whose room is kept (a caller's buffer for repeated reads); empty on error.
Status read_all(int fd, std::size_t size, std::string& out) noexcept;
// pread(2) of up to `n` bytes at `offset` (fewer at the end of the file).
Result<std::string> pread(int fd, std::size_t n, off_t offset) noexcept;
// ENOENT when missing.
Result<std::string> read_file(const std::filesystem::path& path) noexcept;
Status fsync(int fd) noexcept;
// fsync of a directory, so a rename or create in it survives power loss.
Status fsync_dir(PathRef dir) noexcept;  // an empty path is "."
// The filesystem type (statfs f_type, e.g. EXT4_SUPER_MAGIC) of an open file or a path; 0 when
// it cannot be had.
long fs_magic(int fd) noexcept;
long fs_magic(PathRef path) noexcept;
// Whether read(2) of a regular file on this filesystem (fs_magic) returns fewer bytes than asked
// for only at the end of the file: the local filesystems whose reads loop until the request is
// filled (tmpfs, ext2/3/4, xfs, btrfs). Not network or FUSE filesystems, where a read may be short.
bool short_reads_end(long fs_magic) noexcept;
// Whether a rename over an existing file on the filesystem of `fd` writes the new file's data
// before the rename itself can reach the disk, so that after a power cut the target holds the
// old or the new content, never an empty file: ext2/3/4 mounted without `noauto_da_alloc` and
// without `data=writeback` (its options from /proc/self/mountinfo, matched by device, learnt
// once per device). False elsewhere and when it cannot be known (a new file, created by the
// rename, never has that guarantee).
bool rename_flushes_data(int fd) noexcept;
Status rename(PathRef from, PathRef to) noexcept;
// Swaps two existing paths atomically (renameat2 RENAME_EXCHANGE); faults: Op::rename. ENOENT
// when either is missing; EINVAL, ENOSYS or EOPNOTSUPP where the filesystem cannot.
Status rename_exchange(PathRef a, PathRef b) noexcept;
Status link(PathRef from, PathRef to) noexcept;
// linkat(2) of two names in the directory `dir_fd` (AT_FDCWD: paths); faults: Op::link.
Status link_at(int dir_fd, PathRef from, PathRef to) noexcept;
// ENOENT when missing.
Status unlink(PathRef path) noexcept;
// mkdir -p. Existing directories are fine; an existing non-directory is ENOTDIR. `create` is
// applied to each directory made.
Status mkdirs(const std::filesystem::path& dir, unsigned mode = 0777,
              CreateMode create = {}) noexcept;
// How create_temp names the file after `prefix`: always 16 hex digits that name the writer (a
// tag of this host and pid namespace, then the pid: see temp_writer_pid), then
enum class TempName {
  random,  // 12 random hex digits
  // Nothing more: the same name on every call of this process, so the kernel finds it in its
  // dentry cache instead of looking up and allocating an entry for a new name each time (~1 µs
  // of a tmpfs update). O_EXCL makes it safe: if the name exists (another thread's temp file, a
  // crashed process's leftover, something planted), random names follow.
  process_id,
};
inline constexpr std::size_t kTempOwnerDigits = 16;
// The pid of the process that made a temp file whose name holds `hex` (the hex digits before
// ".tmp"), when it was a process of this host and pid namespace, so pid_alive() can judge it;
// nullopt for any other name.
std::optional<long> temp_writer_pid(std::string_view hex) noexcept;
// The kTempOwnerDigits hex digits create_temp starts this process's temp names with.
std::string temp_owner_digits();
// Creates `dir/prefix<name>.tmp` with O_CREAT|O_EXCL|O_NOFOLLOW|O_RDWR and `mode` (before umask).
Result<int> create_temp(const std::filesystem::path& dir, std::string_view prefix,
                        std::filesystem::path* out_path, unsigned mode = 0666) noexcept;
// The same with the directory and the temp file's path as strings: the path is built in
// *out_path, which keeps its room (a caller's buffer for repeated calls); empty on failure.
Result<int> create_temp(std::string_view dir, std::string_view prefix, std::string* out_path,
                        unsigned mode = 0666, TempName naming = TempName::random) noexcept;
// One write(2) (EINTR retried): the bytes written, which may be fewer than data.size() (a full
// disk). For O_APPEND writers that must never split a record over two writes.
Result<std::size_t> write_once(int fd, std::string_view data) noexcept;
// One pread(2) into `buf` (EINTR retried): the bytes read, 0 at the end of the file.
Result<std::size_t> pread_into(int fd, char* buf, std::size_t n, off_t offset) noexcept;
// The names in `dir`, without "." and "..". ENOENT when missing. (Faults: Op::open.)
Result<std::vector<std::string>> list_dir(const std::filesystem::path& dir) noexcept;
// An entry of a directory: its name, and what it is (a symbolic link is `other`, never followed).
struct DirEntry {
  enum class Type : std::uint8_t { regular, directory, other };
  std::string name;
  Type type = Type::other;
};
// list_dir with each entry's type (readdir's d_type, else lstat). ENOENT when missing.
Result<std::vector<DirEntry>> list_dir_entries(const std::filesystem::path& dir) noexcept;
// `path` made absolute against the working directory (as given when that cannot be had).
std::filesystem::path absolute(const std::filesystem::path& path) noexcept;
// The directory for temporary files: $TMPDIR when it names a directory, else /tmp.
std::filesystem::path temp_dir() noexcept;
// mmap(2) of the first `length` bytes of `fd`, shared and writable; unmap() undoes it.
Result<void*> map_shared(int fd, std::size_t length) noexcept;
void unmap(void* addr, std::size_t length) noexcept;

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  nlink_t nlink = 0;
  unsigned mode = 0;
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;
};
Result<FileId> fstat(int fd) noexcept;
Result<FileId> stat(PathRef path) noexcept;  // follows symlinks
Result<FileId> lstat(PathRef path) noexcept;
Status fchmod(int fd, unsigned mode) noexcept;
// Sets a file's modification time to now (a heartbeat).
Status touch(const std::filesystem::path& path) noexcept;

// ---- a store's files, relative to a directory descriptor ----
// A store is walked from its directory's descriptor, never by joining path strings: what is
// planted inside it (a symbolic link, a hard link, a FIFO) must not lead a write outside it.

// An owned descriptor, closed on destruction. Move-only.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// openat(2) of `rel` (plain names joined by '/', no "." or "..") beneath the directory `dir_fd`,
// following no symbolic link in any component and never resolving outside `dir_fd`: openat2(2)
// with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the kernel has it (Linux >= 5.6), else one
// openat(O_NOFOLLOW) per component (O_DIRECTORY for all but the last). O_CLOEXEC and O_NOFOLLOW
// are always added. ELOOP when a component is a symbolic link, ENOTDIR when an inner one is not a
// directory. Faults: Op::open.
// With O_CREAT and a group_shared `create`, a file this call creates gets create.file_mode: the
// open is then O_EXCL first, and without O_CREAT where the file exists (one open more for an
// existing file, in a shared store only), so that a file that was there keeps its mode.
Result<int> open_beneath(int dir_fd, std::string_view rel, int flags, unsigned mode = 0666,
                         CreateMode create = {}) noexcept;
// After open_beneath failed with ELOOP or ENOTDIR (or to check a path): the first component of
// `rel` beneath `dir_fd` that is a symbolic link, or (before the last) not a directory, as the
// prefix of `rel` naming it; empty when there is none. Never follows a link.
std::string first_non_directory(int dir_fd, std::string_view rel) noexcept;
// mkdir -p of `rel` beneath `dir_fd`, one component at a time, following no link: existing
// directories are fine; ELOOP where a component is a symbolic link, ENOTDIR where it is not a
// directory. Faults: Op::mkdir. `create` is applied to each directory made.
Status mkdirs_beneath(int dir_fd, std::string_view rel, unsigned mode = 0777,
                      CreateMode create = {}) noexcept;
// mkdirat(2); EEXIST as it comes. Faults: Op::mkdir. `create` is applied to the directory made
// (opened by name, following no link: three calls more, in a shared store only).
Status mkdir_at(int dir_fd, PathRef name, unsigned mode = 0777, CreateMode create = {}) noexcept;
// renameat(2), renameat2(2) RENAME_EXCHANGE / RENAME_NOREPLACE. Faults: Op::rename.
Status rename_at(int from_dir, PathRef from, int to_dir, PathRef to) noexcept;
Status rename_exchange_at(int dir_fd, PathRef a, PathRef b) noexcept;
// EEXIST when `to` exists; EINVAL, ENOSYS or EOPNOTSUPP where the filesystem cannot.
Status rename_noreplace_at(int dir_fd, PathRef from, PathRef to) noexcept;
// unlinkat(2) of a file (flags 0) or an empty directory (AT_REMOVEDIR). Faults: Op::unlink.
Status unlink_at(int dir_fd, PathRef name, int flags = 0) noexcept;
// fstatat(2) with AT_SYMLINK_NOFOLLOW.
Result<FileId> lstat_at(int dir_fd, PathRef name) noexcept;
// create_temp, with the file created in the directory `dir_fd` (whose path, for *out_path and
// messages, is `dir`): `dir/prefix<name>.tmp` in *out_path; the name alone is at
// out_path->substr(dir.size() + 1). `create` is applied to the file made.
Result<int> create_temp_at(int dir_fd, std::string_view dir, std::string_view prefix,
                           std::string* out_path, unsigned mode = 0666,
                           TempName naming = TempName::random, CreateMode create = {}) noexcept;
// list_dir of an open directory (read from a duplicate of `dir_fd`, from the start).
Result<std::vector<std::string>> list_dir(int dir_fd) noexcept;
// Throws for a failed open_beneath(dir_fd, rel, ...), `dir` being dir_fd's path: where a
// component of `rel` is a symbolic link, or an inner one is not a directory,
// Error{invalid_argument} "context: <dir>/<that component>: it is a symbolic link (refused, not
// followed)" (or "... is not a directory"); otherwise as throw_errno for <dir>/<rel>.
[[noreturn]] void throw_beneath(const std::string& context, std::string_view dir, int dir_fd,
                                std::string_view rel, int err);
// What is wrong with a file found where lockdb keeps one of its own (a store's key file, lock
// file, log segment, marker): "it is a symbolic link ...", "it is not a regular file (a FIFO)",
// or with `one_link`, "it has 2 hard links ..."; empty when nothing is.
std::string planted_problem(const FileId& id, bool one_link);
// Throws Error{invalid_argument} "context: path: <planted_problem>" unless the open file `fd`
// is a regular file (with `one_link`, with exactly one link: a file written in place or chmodded
// must not be a hard link, which would carry the write to its other names).
void require_plain_file(int fd, const std::string& context, const std::filesystem::path& path,
                        bool one_link);

// ---- locks ----
// flock(fd, LOCK_EX or LOCK_SH), waiting until `deadline` (nullopt: forever; a past deadline:
// try once). EWOULDBLOCK when the deadline passed. Blocks in the kernel; a timed wait is cut off
// by a per-thread timer signal (see os_posix.cpp).
Status flock_until(int fd, bool shared,
                   std::optional<std::chrono::steady_clock::time_point> deadline) noexcept;
Status flock_unlock(int fd) noexcept;

// ---- processes and host ----
long pid() noexcept;  // getpid(2): a system call (glibc does not cache it)
// Incremented in every forked child (pthread_atfork), so objects can tell inherited state.
unsigned fork_generation() noexcept;
// pid(), asked once per process (and again in a forked child).
long cached_pid() noexcept;
// false only when the pid provably does not exist (ESRCH) or is a zombie (exited, unreaped).
bool pid_alive(long pid) noexcept;
// This boot's id (Linux: /proc/sys/kernel/random/boot_id), new after every reboot; empty when
// unknown.
const std::string& boot_id() noexcept;
// "<boot id>:<start time in ticks>" of a live pid on this host; empty when unknown.
std::string process_start_token(long pid) noexcept;
std::string program_name(long pid) noexcept;  // /proc/<pid>/comm, empty when unknown
const std::string& hostname() noexcept;
std::string random_hex(std::size_t bytes) noexcept;
void append_random_hex(std::string& out, std::size_t bytes);  // 2 * bytes hex digits
// Pids holding flock/fcntl locks on (dev, ino), from /proc/locks; empty when none or unknown.
std::optional<long> lock_holder_pid(dev_t dev, ino_t ino) noexcept;
// The process holding an OS lock on the file (dev, ino), on this host, as a LockHolder (pid,
// host, program; since is unknown for flock). nullopt when free or unknown.
std::optional<LockHolder> flock_holder(dev_t dev, ino_t ino);

std::string error_text(int err);  // strerror
// The Errc fitting errno `err` (EACCES, EPERM, EROFS: permission; ENOENT: not_found; ...: io).
Errc errc_for_errno(int err) noexcept;
// Throws the lockdb::Error (or subclass) fitting errno `err`: "context: path: cause".
[[noreturn]] void throw_errno(std::string context, const std::filesystem::path& path, int err);

}  // namespace lockdb::os
