#include "replace.hpp"

#include <lockdb/error.hpp>

#include <cerrno>
#include <string>
#include <utility>

#include <fcntl.h>

#include "os.hpp"

namespace lockdb {

const char* durability_name(Durability d) noexcept {
  switch (d) {
    case Durability::none: return "none";
    case Durability::file: return "file";
    case Durability::full: return "full";
  }
  return "none";
}

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

std::string file_name(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
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
  StagedReplace(target, data, durability, options).commit();
}

StagedReplace::StagedReplace(const std::filesystem::path& target, std::string_view data,
                             Durability durability, const ReplaceOptions& options)
    : target_(target.native()),
      durability_(durability),
      context_(options.context),
      swap_in_(options.swap_in && durability == Durability::none) {
  // Directory and name by string operations (see target_).
  const std::string_view dir = dir_of(target_);
  std::string prefix;
  if (options.temp_prefix.empty()) {
    prefix += '.';
    prefix += file_name(target_);
    prefix += '.';
  } else {
    prefix = options.temp_prefix;
  }
  std::optional<unsigned> mode = options.mode;
  if (!mode && options.keep_mode) {
    if (auto st = os::stat(target_); st.ok()) mode = st.value.mode & 07777;
  }
  // Created with the wanted bits, so the new content is never readable by more than the old
  // was; only where the umask (or a default ACL) took some away does fchmod put them back.
  std::string temp;
  auto fd = os::create_temp(dir, prefix, &temp, mode ? *mode : 0666, os::TempName::process_id);
  if (!fd.ok()) {
    os::throw_errno(with_context(context_, "cannot create a temp file in"),
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
  if (s.ok() && durability != Durability::none) {
    s = os::fsync(fd.value);
    if (!s.ok()) step = "cannot fsync";
  }
  os::close(fd.value);
  if (!s.ok()) {
    (void)os::unlink(temp);
    os::throw_errno(with_context(context_, std::string(step) + " " + file_name(temp) + " for"),
                    target_, s.err);
  }
  temp_ = std::move(temp);
}

StagedReplace::~StagedReplace() {
  if (!temp_.empty()) (void)os::unlink(temp_);
}

StagedReplace::StagedReplace(StagedReplace&& other) noexcept
    : target_(std::move(other.target_)),
      temp_(std::exchange(other.temp_, {})),
      durability_(other.durability_),
      context_(std::move(other.context_)),
      swap_in_(other.swap_in_) {}

void StagedReplace::commit(bool fsync_dir) {
  std::string temp = std::exchange(temp_, {});
  if (swap_in_) {
    auto s = os::rename_exchange(temp, target_);
    if (s.ok()) {
      // `temp` now names the old file. If it cannot be removed it stays an orphaned temp file
      // (the new content is in place either way).
      (void)os::unlink(temp);
      return;
    }
    if (s.err != ENOENT && s.err != EINVAL && s.err != ENOSYS && s.err != EOPNOTSUPP) {
      (void)os::unlink(temp);
      os::throw_errno(with_context(context_, "cannot swap into place " + file_name(temp) + " for"),
                      target_, s.err);
    }
  }
  if (auto s = os::rename(temp, target_); !s.ok()) {
    (void)os::unlink(temp);
    os::throw_errno(with_context(context_, "cannot rename into place " + file_name(temp) + " for"),
                    target_, s.err);
  }
  if (durability_ == Durability::full && fsync_dir) {
    const std::string dir(dir_of(target_));
    if (auto d = os::fsync_dir(dir); !d.ok()) {
      os::throw_errno(with_context(context_,
                                   "cannot fsync the directory (the new content is in place but "
                                   "may not survive power loss)"),
                      dir, d.err);
    }
  }
}

}  // namespace detail
}  // namespace lockdb
