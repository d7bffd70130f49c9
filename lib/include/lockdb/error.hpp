// lockdb errors.
//
// Every failure lockdb reports is an exception derived from lockdb::Error, which derives from
// std::runtime_error. An Error carries a code (what kind of failure, below), the path it is
// about (may be empty) and the errno that caused it (0 when there is none). what() reads
// "context: cause" and names the path. The types are plain values: copying is thread-safe.
//
// Each code, when it happens, whether retrying can help, and the `lockdb` CLI exit code:
//
//   code             when                                            retry?   exit
//   timeout          a lock was not had within the timeout           yes      4
//   already_running  a SingletonGuard is held by another process     later    5
//   invalid_argument bad key, bad JSON argument, bad option value    no       2
//   not_found        a key, file or store that does not exist        no       1
//   corrupt          a file that does not parse or has a bad format  no       6
//   io               any other OS-level failure (ENOSPC, EIO, ...)   maybe    7
//   permission       EACCES / EPERM / EROFS on a path               no       8
//   lock_unsupported the filesystem refuses OS locks (ENOLCK, ...)   no       9
//   not_owner        releasing a lock this process does not hold     no       10
//   conflict         a request that would wait for itself or lose    no       11
//                    its own write: a thread locking again what it
//                    holds (a store write inside a write sharing its
//                    lock, a nested helper on the same file, a shared
//                    hold asking to become exclusive). The CLI also
//                    uses it for a lost `cas` and an `import` onto
//                    existing keys (retrying can help there); the
//                    library's compare_and_put returns false instead
//   version          a store or log segment of a newer format        no       12
#pragma once

#include <lockdb/config.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lockdb {

enum class Errc {
  timeout,
  already_running,
  invalid_argument,
  not_found,
  corrupt,
  io,
  permission,
  lock_unsupported,
  not_owner,
  conflict,
  version,
};

// The short name of a code ("timeout", "io", ...), stable for scripts.
const char* errc_name(Errc code) noexcept;

// The `lockdb` CLI exit code for an error code (see the table above).
int exit_code(Errc code) noexcept;

class Error : public std::runtime_error {
 public:
  // what() becomes "context: path: cause" (path and cause omitted when empty/0).
  Error(Errc code, std::string context, std::filesystem::path path = {}, int sys_errno = 0);
  // Builds the message from a cause text instead of an errno.
  Error(Errc code, std::string context, std::filesystem::path path, std::string cause);
  // The same, keeping the errno behind the cause (an error that wraps another keeps its errno).
  Error(Errc code, std::string context, std::filesystem::path path, std::string cause,
        int sys_errno);
  // The same error (code, path, errno) with `note` appended to what(), for a caller that knows
  // more about the outcome (" (nothing was written)").
  Error(const Error& error, std::string_view note);

  Errc code() const noexcept { return code_; }
  const std::filesystem::path& path() const noexcept { return path_; }
  int sys_errno() const noexcept { return errno_; }

 private:
  Errc code_;
  std::filesystem::path path_;
  int errno_ = 0;
};

// Every lock wait takes a timeout: negative waits forever (kForever), zero tries once, positive
// waits up to that long and then throws Timeout.
inline constexpr std::chrono::nanoseconds kForever{-1};
// The timeout of the waits that do not default to kForever: the files.hpp helpers,
// KeyedLockRegistry, Store writes and the `lockdb` command's --timeout.
inline constexpr std::chrono::nanoseconds kDefaultLockTimeout = std::chrono::seconds(30);

// Who holds a lock, as far as it can be known. Fields that cannot be known are empty / 0.
struct LockHolder {
  long pid = 0;                                                  // 0: unknown
  std::string host{};                                            // empty: unknown
  std::optional<std::chrono::system_clock::time_point> since{};  // when it was taken
  std::string program{};                                         // process name, if known

  // "pid 1234 (worker) on host-a since 2026-11-30T18:00:00Z", or "unknown holder".
  std::string describe() const;
};

// A lock was not acquired within its timeout. what() names the lock path and, where known,
// the holder.
class Timeout : public Error {
 public:
  Timeout(std::filesystem::path lock_path, std::chrono::nanoseconds waited,
          std::optional<LockHolder> holder);
  // The same, with what() starting with `context` (the store names the key: "key \"k\": ...").
  Timeout(const std::string& context, std::filesystem::path lock_path,
          std::chrono::nanoseconds waited, std::optional<LockHolder> holder);
  const std::optional<LockHolder>& holder() const noexcept { return holder_; }

 private:
  std::optional<LockHolder> holder_;
};

// A SingletonGuard (guards.hpp) is held by another process; holder() names it.
class AlreadyRunning : public Error {
 public:
  AlreadyRunning(std::string name, std::filesystem::path lock_path,
                 std::optional<LockHolder> holder);
  const std::optional<LockHolder>& holder() const noexcept { return holder_; }

 private:
  std::optional<LockHolder> holder_;
};

}  // namespace lockdb
