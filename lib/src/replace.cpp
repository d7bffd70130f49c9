#include "replace.hpp"

#include <lockdb/error.hpp>

#include <cerrno>
#include <string>

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

void atomic_replace(const std::filesystem::path& target, std::string_view data,
                    Durability durability, std::optional<unsigned> mode,
                    std::string_view temp_prefix) {
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::string prefix =
      temp_prefix.empty() ? "." + target.filename().string() + "." : std::string(temp_prefix);
  if (!mode) {
    if (auto st = os::stat(target); st.ok()) mode = st.value.mode & 07777;
  }
  std::filesystem::path temp;
  auto fd = os::create_temp(dir, prefix, &temp, 0666);
  if (!fd.ok()) os::throw_errno("cannot create a temp file in", dir, fd.err);

  const char* step = nullptr;
  os::Status s = os::write_all(fd.value, data);
  if (!s.ok()) step = "cannot write";
  if (s.ok() && mode) {
    s = os::fchmod(fd.value, *mode);
    if (!s.ok()) step = "cannot set permissions of";
  }
  if (s.ok() && durability != Durability::none) {
    s = os::fsync(fd.value);
    if (!s.ok()) step = "cannot fsync";
  }
  os::close(fd.value);
  if (s.ok()) {
    s = os::rename(temp, target);
    if (!s.ok()) step = "cannot rename into place";
  }
  if (!s.ok()) {
    (void)os::unlink(temp);
    os::throw_errno(std::string(step) + " " + temp.filename().string() + " for", target, s.err);
  }
  if (durability == Durability::full) {
    if (auto d = os::fsync_dir(dir); !d.ok()) {
      os::throw_errno(
          "cannot fsync the directory (the new content is in place but may not "
          "survive power loss)",
          dir, d.err);
    }
  }
}

}  // namespace detail
}  // namespace lockdb
