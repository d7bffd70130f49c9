// The flock(2) protocol: see lock_file.hpp.
#include "lock_file.hpp"

#include <lockdb/error.hpp>

#include <cerrno>
#include <filesystem>

#include <fcntl.h>
#include <sys/stat.h>

#include "os.hpp"

namespace lockdb::detail::lock_file {
namespace {

[[noreturn]] void throw_open_error(const std::string& context, std::string_view path, int err) {
  const std::filesystem::path p(path);
  switch (err) {
    case ELOOP:
      throw Error(Errc::invalid_argument, context, p,
                  "it is a symbolic link (refused, not followed)");
    case EISDIR: throw Error(Errc::invalid_argument, context, p, "it is a directory");
    case ENOTDIR:
      throw Error(Errc::invalid_argument, context, p, "a parent component is not a directory");
    default: os::throw_errno(context, p, err);
  }
}

}  // namespace

Opened open(const Location& at, Access access, bool tell_created, const std::string& context) {
  const bool beneath = at.dir_fd >= 0;
  const std::string_view rel = at.path.substr(beneath ? at.prefix : 0);
  const std::string path(at.path);
  auto open_with = [&](int flags) {
    flags |= O_NOFOLLOW | O_NONBLOCK;
    return beneath ? os::open_beneath(at.dir_fd, rel, flags, 0666, at.create)
                   : os::open(path, flags, 0666);
  };
  // Throws for `where` (`rel` or its directory) and errno `err`.
  auto fail = [&](std::string_view where, int err) {
    if (beneath) os::throw_beneath(context, at.path.substr(0, at.prefix), at.dir_fd, where, err);
    throw_open_error(context, where, err);
  };
  const int first = access == Access::read_write ? O_RDWR : O_RDONLY;
  const int other = access == Access::read_write ? O_RDONLY : O_WRONLY;
  const int create = O_CREAT | (tell_created ? O_EXCL : 0);

  Opened out;
  os::Result<int> r;
  for (;;) {
    r = open_with(first | create);
    if (r.err == ENOENT) {  // a missing directory: make it, then try again
      const auto slash = rel.rfind('/');
      if (slash != std::string_view::npos && slash != 0) {
        const std::string_view dir = rel.substr(0, slash);
        const os::Status s = beneath ? os::mkdirs_beneath(at.dir_fd, dir, 0777, at.create)
                                     : os::mkdirs(std::filesystem::path(dir));
        if (!s.ok()) fail(dir, s.err);
        r = open_with(first | create);
      }
    }
    out.created = tell_created && r.ok();
    if (r.err == EEXIST && tell_created) {
      r = open_with(first);
      if (r.err == ENOENT) continue;  // removed meanwhile: create it
    }
    break;
  }
  if (r.err == EACCES) {  // a lock file we may not open `first` locks all the same
    auto second = open_with(other);
    if (second.ok() || second.err == ELOOP) r = second;
  }
  if (r.err == EACCES) {  // a symbolic link in a sticky directory (fs.protected_symlinks)
    auto st = beneath ? os::lstat_at(at.dir_fd, std::string(rel)) : os::lstat(path);
    if (st.ok() && S_ISLNK(st.value.mode)) r.err = ELOOP;
  }
  if (!r.ok()) fail(rel, r.err);
  out.fd = r.value;
  try {
    os::require_plain_file(out.fd, context, path, /*one_link=*/false);
  } catch (...) {
    os::close(out.fd);
    throw;
  }
  return out;
}

int lock(int fd, bool shared, std::optional<std::chrono::steady_clock::time_point> deadline,
         bool* waited) noexcept {
  auto s = os::flock_until(fd, shared, std::chrono::steady_clock::time_point{});
  const bool had_to_wait = s.err == EWOULDBLOCK;
  if (had_to_wait) s = os::flock_until(fd, shared, deadline);
  if (waited) *waited = had_to_wait;
  return s.err;
}

void throw_lock_failure(int err, const std::string& context, std::string_view path) {
  if (err == ENOLCK || err == EOPNOTSUPP || err == EINVAL) {
    throw Error(
        Errc::lock_unsupported, context, std::filesystem::path(path),
        os::error_text(err) + " (this filesystem refuses OS locks; SoftFileLock works there)");
  }
  os::throw_errno(context, std::filesystem::path(path), err);
}

bool still_names(int fd, const char* path) noexcept {
  auto mine = os::fstat(fd);
  if (!mine.ok() || mine.value.nlink == 0) return false;
  if (path == nullptr) return true;
  auto now_at_path = os::lstat(path);
  return now_at_path.ok() && mine.value.dev == now_at_path.value.dev &&
         mine.value.ino == now_at_path.value.ino;
}

}  // namespace lockdb::detail::lock_file
