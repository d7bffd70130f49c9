#include "replace.hpp"

#include <lockdb/error.hpp>

#include <cerrno>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>

#include "os.hpp"

namespace lockdb {

namespace detail {

namespace {

std::string with_context(std::string_view context, std::string text) {
  return context.empty() ? text : std::string(context) + ": " + text;
}

// The directory part of a path, by string operations (see target_): "." for a bare name.
std::string_view dir_of(std::string_view path) {
  const auto slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  return slash == 0 ? std::string_view("/") : path.substr(0, slash);
}

std::string_view file_name(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Where the OS calls name a file: relative to `dir_fd` by its name alone, else by its path.
int base_of(int dir_fd) { return dir_fd >= 0 ? dir_fd : AT_FDCWD; }
const char* at_name(const std::string& path, int dir_fd) {
  if (dir_fd < 0) return path.c_str();
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path.c_str() : path.c_str() + slash + 1;
}

// Removes the temp files "<dir>/<prefix><digits>.tmp" whose writers provably died (see
// ReplaceOptions::remove_dead_temps), listed and removed through `dir_fd` when it is open.
// Best effort: a failure leaves them for the next write.
void remove_dead_temps(std::string_view dir, int dir_fd, std::string_view prefix) {
  auto names = dir_fd >= 0 ? os::list_dir(dir_fd) : os::list_dir(std::filesystem::path(dir));
  if (!names.ok()) return;
  constexpr std::string_view kSuffix = ".tmp";
  const long self = os::cached_pid();
  std::string path;
  for (const std::string& name : names.value) {
    if (name.size() < prefix.size() + kSuffix.size() || !name.starts_with(prefix) ||
        !name.ends_with(kSuffix)) {
      continue;
    }
    const auto pid = os::temp_writer_pid(
        std::string_view(name).substr(prefix.size(), name.size() - prefix.size() - kSuffix.size()));
    if (!pid || *pid == self || os::pid_alive(*pid)) continue;
    path.assign(dir);
    path += '/';
    path += name;
    (void)os::unlink_at(base_of(dir_fd), at_name(path, dir_fd));
  }
}

// The two halves of a replace, on strings the caller keeps: `target`, the file to replace, and
// `temp`, the temp file's path. StagedReplace keeps its own; atomic_replace borrows the caller's
// path and a per-thread buffer, so a replace allocates nothing for either.

// Creates the temp file next to `target` (its path to `temp`) and writes `data` to it, then
// fsyncs it when durability asks for that (file, full) or needs it (none, unless the target
// exists and a rename over it flushes). Returns whether it was left unsynced for a rename over
// the target to flush (none only). Throws Error; then no temp file is left and `temp` is empty.
bool write_temp(const std::string& target, std::string_view data, Durability durability,
                const ReplaceOptions& options, std::string& temp) {
  // Directory and name by string operations (see StagedReplace::target_).
  const std::string_view dir = dir_of(target);
  std::string prefix;
  if (options.temp_prefix.empty()) {
    const std::string_view name = file_name(target);
    prefix.reserve(name.size() + 2);
    prefix += '.';
    prefix += name;
    prefix += '.';
  } else {
    prefix = options.temp_prefix;
  }
  const int dir_fd = options.dir_fd;
  if (options.remove_dead_temps) remove_dead_temps(dir, dir_fd, prefix);
  std::optional<unsigned> mode = options.mode;
  std::optional<bool> exists = options.target_exists;
  if ((!mode && options.keep_mode) || (durability == Durability::none && !exists)) {
    auto st = dir_fd < 0 ? os::stat(target) : os::lstat_at(dir_fd, at_name(target, dir_fd));
    if (st.ok() && !mode && options.keep_mode) mode = st.value.mode & 07777;
    exists = st.ok() && S_ISREG(st.value.mode);
  }
  // Created with the wanted bits, so the new content is never readable by more than the old
  // was; only where the umask (or a default ACL) took some away does fchmod put them back.
  auto fd = os::create_temp_at(base_of(dir_fd), dir, prefix, &temp, mode ? *mode : 0666,
                               os::TempName::process_id, options.create);
  if (!fd.ok()) {  // create_temp left `temp` empty
    os::throw_errno(with_context(options.context, "cannot create a temp file in"),
                    std::filesystem::path(dir), fd.err);
  }

  const char* step = nullptr;
  os::Status s = os::write_all(fd.value, data);
  if (!s.ok()) step = "cannot write";
  if (s.ok() && mode) {
    // After the write, which clears set-user/group-ID bits.
    auto st = os::fstat(fd.value);
    if (!st.ok() || (st.value.mode & 07777) != *mode) s = os::fchmod(fd.value, *mode);
    if (!s.ok()) step = "cannot set permissions of";
  }
  // none: a rename over an existing file on ext4 (auto_da_alloc) writes the new data before the
  // rename reaches the disk, as Python's os.replace relies on; anywhere else only an fsync does.
  bool rename_flushes = false;
  if (s.ok() && durability == Durability::none && *exists) {
    rename_flushes =
        options.rename_flushes ? *options.rename_flushes : os::rename_flushes_data(fd.value);
  }
  if (s.ok() && (fsyncs_files(durability) || (durability == Durability::none && !rename_flushes))) {
    s = os::fsync(fd.value);
    if (!s.ok()) step = "cannot fsync";
  }
  if (os::Status c = os::close_written(fd.value); s.ok() && !c.ok()) {
    s = c;
    step = "cannot close";
  }
  if (!s.ok()) {
    (void)os::unlink_at(base_of(dir_fd), at_name(temp, dir_fd));
    const std::string name(file_name(temp));
    temp.clear();
    os::throw_errno(with_context(options.context, std::string(step) + " " + name + " for"), target,
                    s.err);
  }
  return rename_flushes;
}

// Whether `path`, whose unlink failed with `unlink_err`, is a directory: Linux says EISDIR,
// POSIX allows EPERM, so anything else is asked of lstat.
bool is_directory(const std::string& path, int dir_fd, int unlink_err) {
  if (unlink_err == EISDIR) return true;
  auto st = os::lstat_at(base_of(dir_fd), at_name(path, dir_fd));
  return st.ok() && S_ISDIR(st.value.mode);
}

// After a swap moved the directory at `target` to `temp` (and the new file to `target`), swaps
// them back. Throws Error when that fails too, naming both places; `temp` is then empty, so that
// nothing removes the directory's new name.
void swap_back_directory(const std::string& target, std::string& temp, int dir_fd,
                         std::string_view context) {
  if (auto s =
          os::rename_exchange_at(base_of(dir_fd), at_name(temp, dir_fd), at_name(target, dir_fd));
      !s.ok()) {
    const std::string moved_to = temp;
    temp.clear();
    os::throw_errno(with_context(context,
                                 "the directory at the target was swapped out and "
                                 "could not be swapped back (it is now at " +
                                     moved_to + ", the new file in its place)"),
                    target, s.err);
  }
}

// Puts `temp` in place of `target`: renamed over it, or with `swap_in` swapped with it and the
// old file unlinked; then, for Durability::full and `fsync_dir`, fsyncs the directory. `temp` is
// empty afterwards. Throws Error; a temp file that was not put in place is removed. A directory
// at `target` fails with EISDIR either way: rename refuses it, a swap is undone.
void put_in_place(const std::string& target, std::string& temp, Durability durability, bool swap_in,
                  std::string_view context, bool fsync_dir, int dir_fd) {
  const int base = base_of(dir_fd);
  auto fail = [&](const char* what, int err) {
    (void)os::unlink_at(base, at_name(temp, dir_fd));
    const std::string name(file_name(temp));
    temp.clear();
    os::throw_errno(with_context(context, std::string(what) + " " + name + " for"), target, err);
  };
  if (swap_in) {
    auto s = os::rename_exchange_at(base, at_name(temp, dir_fd), at_name(target, dir_fd));
    if (s.ok()) {
      // `temp` now names the old entry. If it cannot be removed it stays an orphaned temp file
      // (the new content is in place either way). Unless it is a directory: rename refuses to
      // replace one (EISDIR), a swap does not, so the swap is undone and the call fails as
      // rename would. Only a failed unlink costs more system calls.
      if (auto u = os::unlink_at(base, at_name(temp, dir_fd));
          !u.ok() && is_directory(temp, dir_fd, u.err)) {
        swap_back_directory(target, temp, dir_fd, context);
        fail("cannot swap into place", EISDIR);
      }
      temp.clear();
      return;
    }
    if (s.err != ENOENT && s.err != EINVAL && s.err != ENOSYS && s.err != EOPNOTSUPP) {
      fail("cannot swap into place", s.err);
    }
  }
  if (auto s = os::rename_at(base, at_name(temp, dir_fd), base, at_name(target, dir_fd)); !s.ok()) {
    fail("cannot rename into place", s.err);
  }
  temp.clear();
  if (durability == Durability::full && fsync_dir) {
    const std::string dir(dir_of(target));
    if (auto d = dir_fd >= 0 ? os::fsync(dir_fd) : os::fsync_dir(dir); !d.ok()) {
      os::throw_errno(with_context(context,
                                   "cannot fsync the directory (the new content is in place but "
                                   "may not survive power loss)"),
                      dir, d.err);
    }
  }
}

}  // namespace

bool swap_in_pays(long fs_magic) noexcept {
  constexpr long kExt4 = 0xEF53;       // EXT2/3/4_SUPER_MAGIC
  constexpr long kBtrfs = 0x9123683E;  // BTRFS_SUPER_MAGIC
  return fs_magic == kExt4 || fs_magic == kBtrfs;
}

void atomic_replace(const std::filesystem::path& target, std::string_view data,
                    Durability durability, std::optional<unsigned> mode,
                    std::string_view temp_prefix) {
  ReplaceOptions options;
  options.mode = mode;
  options.temp_prefix = temp_prefix;
  atomic_replace(target, data, durability, options);
}

void atomic_replace(const std::filesystem::path& target, std::string_view data,
                    Durability durability, const ReplaceOptions& options) {
  std::string temp;
  write_temp(target.native(), data, durability, options, temp);
  put_in_place(target.native(), temp, durability,
               options.swap_in && durability == Durability::power_loss_unsafe, options.context,
               /*fsync_dir=*/true, options.dir_fd);
}

StagedReplace::StagedReplace(std::string target, std::string_view data, Durability durability,
                             const ReplaceOptions& options)
    : target_(std::move(target)),
      durability_(durability),
      context_(options.context),
      swap_in_(options.swap_in && durability == Durability::power_loss_unsafe),
      dir_fd_(options.dir_fd),
      owns_dir_fd_(options.owns_dir_fd) {
  try {
    rename_over_ = write_temp(target_, data, durability, options, temp_);
  } catch (...) {
    if (owns_dir_fd_) os::close(dir_fd_);
    throw;
  }
}

StagedReplace::~StagedReplace() {
  if (!temp_.empty()) (void)os::unlink_at(base_of(dir_fd_), at_name(temp_, dir_fd_));
  if (owns_dir_fd_) os::close(dir_fd_);
}

StagedReplace::StagedReplace(StagedReplace&& other) noexcept
    : target_(std::move(other.target_)),
      temp_(std::exchange(other.temp_, {})),
      durability_(other.durability_),
      context_(std::move(other.context_)),
      swap_in_(other.swap_in_),
      rename_over_(other.rename_over_),
      dir_fd_(other.dir_fd_),
      owns_dir_fd_(std::exchange(other.owns_dir_fd_, false)),
      take_back_(std::exchange(other.take_back_, TakeBack::none)) {}

void StagedReplace::commit(bool fsync_dir) {
  put_in_place(target_, temp_, durability_, swap_in_, context_, fsync_dir, dir_fd_);
}

namespace {
// fsyncs the directory of `target`: through `dir_fd` when it is open, else by its path.
os::Status fsync_dir_of(const std::string& target, int dir_fd) {
  return dir_fd >= 0 ? os::fsync(dir_fd) : os::fsync_dir(std::string(dir_of(target)));
}
}  // namespace

void StagedReplace::commit_keeping_old(bool fsync_dir) {
  const int base = base_of(dir_fd_);
  if (rename_over_) {
    // A swap would not flush the unsynced new file: keep the old one by a second name instead and
    // rename over the target (a rename over an existing file flushes whatever its link count).
    std::string aside(dir_of(target_));
    aside += "/.";
    aside += file_name(target_);
    aside += '.';
    os::append_random_hex(aside, 6);
    aside += ".tmp";
    const bool linked = os::link_at(base, at_name(target_, dir_fd_), at_name(aside, dir_fd_)).ok();
    try {
      put_in_place(target_, temp_, durability_, /*swap_in=*/false, context_, fsync_dir, dir_fd_);
    } catch (const Error&) {
      if (linked) (void)os::unlink_at(base, at_name(aside, dir_fd_));
      throw;
    }
    if (linked) {
      temp_ = std::move(aside);  // the old file, removed by the destructor
      take_back_ = TakeBack::rename_back;
    }
    return;
  }
  auto s = os::rename_exchange_at(base, at_name(temp_, dir_fd_), at_name(target_, dir_fd_));
  if (s.ok()) {
    take_back_ = TakeBack::swap_back;  // temp_ now names the old file
  } else if (s.err == ENOENT && os::lstat_at(base, at_name(temp_, dir_fd_)).ok()) {
    // No target yet: created by the rename, taken back by removing it.
    put_in_place(target_, temp_, durability_, /*swap_in=*/false, context_, /*fsync_dir=*/false,
                 dir_fd_);
    take_back_ = TakeBack::remove_target;
  } else if (s.err == EINVAL || s.err == ENOSYS || s.err == EOPNOTSUPP) {
    put_in_place(target_, temp_, durability_, swap_in_, context_, fsync_dir, dir_fd_);  // no swap
    return;
  } else {
    (void)os::unlink_at(base, at_name(temp_, dir_fd_));
    const std::string name(file_name(temp_));
    temp_.clear();
    os::throw_errno(with_context(context_, "cannot swap into place " + name + " for"), target_,
                    s.err);
  }
  if (durability_ == Durability::full && fsync_dir) {
    if (auto d = fsync_dir_of(target_, dir_fd_); !d.ok()) {
      os::throw_errno(with_context(context_,
                                   "cannot fsync the directory (the new content is in place but "
                                   "may not survive power loss)"),
                      std::filesystem::path(dir_of(target_)), d.err);
    }
  }
}

void StagedReplace::take_back() {
  const TakeBack how = std::exchange(take_back_, TakeBack::none);
  const int base = base_of(dir_fd_);
  if (how == TakeBack::rename_back) {
    if (auto s = os::rename_at(base, at_name(temp_, dir_fd_), base, at_name(target_, dir_fd_));
        !s.ok()) {
      os::throw_errno(with_context(context_, "cannot move the old file back into place from " +
                                                 std::string(file_name(temp_)) + " for"),
                      target_, s.err);
    }
    temp_.clear();
  } else if (how == TakeBack::swap_back) {
    if (auto s = os::rename_exchange_at(base, at_name(temp_, dir_fd_), at_name(target_, dir_fd_));
        !s.ok()) {
      os::throw_errno(with_context(context_, "cannot swap the old file back into place from " +
                                                 std::string(file_name(temp_)) + " for"),
                      target_, s.err);
    }
    (void)os::unlink_at(base, at_name(temp_, dir_fd_));  // now the new file
    temp_.clear();
  } else if (auto s = os::unlink_at(base, at_name(target_, dir_fd_)); !s.ok()) {
    os::throw_errno(with_context(context_, "cannot remove the new file"), target_, s.err);
  }
  if (durability_ == Durability::full) {
    if (auto d = fsync_dir_of(target_, dir_fd_); !d.ok()) {
      os::throw_errno(with_context(context_,
                                   "cannot fsync the directory (the old content is back in place "
                                   "but that may not survive power loss)"),
                      std::filesystem::path(dir_of(target_)), d.err);
    }
  }
}

StagedRemove::StagedRemove(std::string target, std::string_view context, int dir_fd,
                           bool owns_dir_fd)
    : target_(std::move(target)), context_(context), dir_fd_(dir_fd), owns_dir_fd_(owns_dir_fd) {
  const int base = base_of(dir_fd_);
  std::string prefix(".");
  prefix += file_name(target_);
  prefix += '.';
  // An empty placeholder the target is renamed over at once (its mode is never seen): no
  // CreateMode for it.
  auto fd =
      os::create_temp_at(base, dir_of(target_), prefix, &aside_, 0600, os::TempName::process_id);
  if (fd.ok()) {
    os::close(fd.value);
    // Renamed over the empty temp file just made: a name nobody else uses.
    if (auto s = os::rename_at(base, at_name(target_, dir_fd_), base, at_name(aside_, dir_fd_));
        s.ok()) {
      return;
    }
    (void)os::unlink_at(base, at_name(aside_, dir_fd_));
    aside_.clear();
  }
  // No temp name (or the rename failed): unlink at once; a missing target fails here.
  if (auto s = os::unlink_at(base, at_name(target_, dir_fd_)); !s.ok()) {
    if (owns_dir_fd_) os::close(dir_fd_);
    os::throw_errno(with_context(context_, "cannot remove the file"), target_, s.err);
  }
}

StagedRemove::~StagedRemove() {
  if (!aside_.empty()) (void)os::unlink_at(base_of(dir_fd_), at_name(aside_, dir_fd_));
  if (owns_dir_fd_) os::close(dir_fd_);
}

StagedRemove::StagedRemove(StagedRemove&& other) noexcept
    : target_(std::move(other.target_)),
      aside_(std::exchange(other.aside_, {})),
      context_(std::move(other.context_)),
      dir_fd_(other.dir_fd_),
      owns_dir_fd_(std::exchange(other.owns_dir_fd_, false)) {}

void StagedRemove::take_back() {
  const int base = base_of(dir_fd_);
  if (auto s = os::rename_at(base, at_name(aside_, dir_fd_), base, at_name(target_, dir_fd_));
      !s.ok()) {
    os::throw_errno(with_context(context_, "cannot move the file back into place from " +
                                               std::string(file_name(aside_)) + " to"),
                    target_, s.err);
  }
  aside_.clear();
}

}  // namespace detail
}  // namespace lockdb
