// The one flock(2) protocol under every hard lock of lockdb: FileLock (file_lock.cpp), and the
// store's key locks and the files.hpp helpers' locks (KeyLocks, store_locks.hpp). Each of those
// adds only its own bookkeeping (reentrancy and shared holds; kept-open descriptors) on top.
//
// Why flock(2) and not fcntl(2) record locks. fcntl locks belong to the process, not to the
// descriptor: closing ANY descriptor of the file (a library reading it, say) silently drops the
// lock, and two descriptors of one process never exclude each other. flock locks belong to the
// open file description: they exclude every other open of the file, in this process or another,
// survive unrelated closes, and are released by the kernel when the last descriptor of the
// description closes, i.e. when the holder dies. Python's filelock uses flock too (fcntl.flock),
// which is what makes the two interoperate.
//
// Removing lock files. A waiter blocks on the inode it opened. If the holder unlinked the file on
// release, the waiter would wake holding a lock on an orphaned inode while a third process
// creates a fresh file at the path and locks that: two holders, unless every user checks after
// flock that its descriptor still names the path (still_names) and otherwise opens the path
// again. Every lockdb lock checks. FileLock and the files.hpp helpers never remove a lock file; a
// format-2 store removes the lock file of a key it left absent, only while holding its lock
// (store_locks.hpp), so whoever locks the removed inode afterwards sees it unlinked and retries.
//
// Opening. O_CLOEXEC keeps the lock out of exec'd children, O_NOFOLLOW refuses a symlink planted
// at the path (also where fs.protected_symlinks says EACCES for it), O_NONBLOCK keeps a planted
// FIFO from blocking the open, and anything but a regular file is refused. Nothing is truncated
// or written. A file we may not write is locked through a read-only descriptor, one we may not
// read through a write-only one (flock needs neither).
//
// NFS and FUSE. Linux emulates flock on NFS with whole-file fcntl locks (lockd); it works
// across hosts but then has fcntl's per-process semantics between two descriptors of one
// process, and an exclusive lock needs a descriptor open for writing (Access::read_write). Some
// FUSE and network filesystems return ENOLCK or EOPNOTSUPP: that is Error{lock_unsupported}
// (SoftFileLock works there), never a timeout.
//
// Fork. flock locks are inherited by a forked child through the shared open file description,
// and a child calling flock(LOCK_UN) on it would release the PARENT's lock: the users of this
// protocol count forks (os::fork_generation) and, in a child, close their copy of the descriptor
// without unlocking.
//
// Waiting. See os_posix.cpp: blocked in flock(2), cut off at the deadline by a timer signal.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "os.hpp"

namespace lockdb::detail::lock_file {

// Where a lock file is: at `path`, or (dir_fd >= 0) at the part of `path` after its first
// `prefix` characters, beneath the directory dir_fd (os::open_beneath: no link followed).
// `create`: how a lock file and directories made beneath dir_fd get their mode (a group-shared
// store's, os::CreateMode).
struct Location {
  std::string_view path;
  int dir_fd = -1;
  std::size_t prefix = 0;
  os::CreateMode create = {};
};

// read_write: what an exclusive lock on NFS needs. read_only: keeps no filesystem from being
// remounted read-only (the store's and the helpers' locks, which stay open between writes).
enum class Access { read_write, read_only };

struct Opened {
  int fd = -1;
  bool created = false;  // only told with tell_created (it costs a system call)
};

// Opens the lock file at `at`, creating it (and missing parent directories) when missing.
// `tell_created`: report whether this call created it (O_EXCL first). `context` starts messages
// ("cannot open lock file"). THROWS Error{invalid_argument} for a symbolic link, a directory or
// other non-regular file at the path, or a parent that is not a directory; Error{permission|io}.
Opened open(const Location& at, Access access, bool tell_created, const std::string& context);

// flock(2) of `fd`, exclusive or shared, with one non-blocking try first (the uncontended path is
// one system call). 0: held. EWOULDBLOCK: `deadline` passed (nullopt: waits forever; a past
// deadline: tries once). Another errno: failed, see throw_lock_failure. *waited tells whether it
// had to wait.
[[nodiscard]] int lock(int fd, bool shared,
                       std::optional<std::chrono::steady_clock::time_point> deadline,
                       bool* waited = nullptr) noexcept;
// Throws for a failed lock(): Error{lock_unsupported} when the filesystem refuses OS locks,
// Error{io} (or what errno says) otherwise, naming `path` after `context`.
[[noreturn]] void throw_lock_failure(int err, const std::string& context, std::string_view path);

// Whether the locked descriptor `fd` still names a lock file: its link count is not zero
// (removal and replacement by rename drop it) and, with `path`, the path names the same inode
// (a path lookup). false: unlock, close and open the path again.
bool still_names(int fd, const char* path) noexcept;

}  // namespace lockdb::detail::lock_file
