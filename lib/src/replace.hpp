// Atomic replace of a file: the one implementation of "write a temp file in the same directory,
// (fsync), rename it over the target, (fsync the directory)" used by atomic_write,
// atomic_json_update and the store.
#pragma once

#include <lockdb/durability.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "os.hpp"

namespace lockdb::detail {

// Replaces `target` with `data`. Readers see the old or the new content, never a mix. The new
// file keeps the old file's permission bits (or `mode`, or 0666 & ~umask for a new file).
// On any failure the temp file is removed, `target` is untouched, and Error names the path and
// the failing step ("cannot write", "cannot fsync", "cannot rename into place", ...). A failed
// fsync fails the call; it is not retried.
// `temp_prefix` names the temp file: "<dir>/<temp_prefix><hex>.tmp" (default: ".<name>."), the
// hex being the process id where that name is free, else random (os::TempName::process_id).
void atomic_replace(const std::filesystem::path& target, std::string_view data,
                    Durability durability, std::optional<unsigned> mode = std::nullopt,
                    std::string_view temp_prefix = {});

// How a replace is done; the defaults are atomic_replace's behaviour above.
struct ReplaceOptions {
  // Permission bits of the new file. nullopt: the old file's bits when keep_mode is set and the
  // target exists, else 0666 & ~umask.
  std::optional<unsigned> mode;
  // Look up the old file's permission bits (one stat per replace). The store turns this off:
  // its key files always get 0666 & ~umask, as the seed's Python helpers write them.
  bool keep_mode = true;
  // Temp file name: "<dir>/<temp_prefix><hex>.tmp" (default: ".<name>."; hex as above).
  std::string_view temp_prefix;
  // Prepended to error messages: "<context>: cannot write ...".
  std::string_view context;
  // With Durability::power_loss_unsafe only: put the new file in place by swapping it with the
  // old one (renameat2 RENAME_EXCHANGE), then unlink the old one, instead of renaming over it.
  // Readers still see the old or the new file, never a mix, but ext4 does not write the new file
  // first as it does for a rename over an existing file (auto_da_alloc): several times faster on
  // a disk, and a power cut may then leave the file empty. A crash between the swap and the
  // unlink leaves the old content under the temp name. A directory at the target is swapped back
  // (its unlink fails) and the call fails with EISDIR, as the rename does. Falls back to rename
  // where the target does not exist or the filesystem cannot swap.
  bool swap_in = false;
  // Before writing, remove the temp files of this target (same prefix) whose writers provably
  // died: made by a process of this host and pid namespace (os::temp_writer_pid) that no longer
  // runs. Costs a listing of the directory (through dir_fd when it is open). A live writer's temp
  // file is never removed.
  bool remove_dead_temps = false;
  // The target's directory, open (borrowed; REQUIRES: open until the replace is done, commit()
  // for StagedReplace): the temp file is created, renamed and removed by name in it and the
  // directory fsynced through it, so that no symbolic link on the target's path (a planted one
  // in a store) is followed. -1: by the target's path, as atomic_write does.
  int dir_fd = -1;
  // StagedReplace only: it closes dir_fd when destroyed (also when its constructor throws).
  bool owns_dir_fd = false;
  // Durability::none: whether the target exists now (the store knows it, under the key's lock);
  // nullopt: looked up. The temp file is fsynced unless the target exists and a rename over it
  // flushes the new data (os::rename_flushes_data, or `rename_flushes` when the caller knows it).
  std::optional<bool> target_exists;
  std::optional<bool> rename_flushes;
  // How the temp file gets its mode beyond `mode` (a group-shared store's: os::CreateMode).
  os::CreateMode create;
};

// Whether files written with `d` are fsynced before they are put in place.
inline bool fsyncs_files(Durability d) noexcept {
  return d == Durability::file || d == Durability::full;
}

// Whether swap_in pays on a filesystem (os::fs_magic): where a rename over an existing file
// starts writeback of the new one (ext2/3/4 with auto_da_alloc, btrfs). Elsewhere (tmpfs, xfs)
// the swap only adds the unlink of the old file.
bool swap_in_pays(long fs_magic) noexcept;

void atomic_replace(const std::filesystem::path& target, std::string_view data,
                    Durability durability, const ReplaceOptions& options);

// atomic_replace in two halves, for callers that write several files together or may have to
// take a write back: the constructor writes the temp file (and fsyncs it as the durability
// asks); commit() renames it over the target (and, for Durability::full, fsyncs the directory
// unless told not to). A temp file that was not committed is removed by the destructor. Errors
// as atomic_replace; a failed constructor or commit() leaves no temp file and the target as it
// was.
class StagedReplace {
 public:
  StagedReplace(std::string target, std::string_view data, Durability durability,
                const ReplaceOptions& options = {});
  ~StagedReplace();
  StagedReplace(StagedReplace&& other) noexcept;
  StagedReplace(const StagedReplace&) = delete;
  StagedReplace& operator=(const StagedReplace&) = delete;
  StagedReplace& operator=(StagedReplace&&) = delete;

  // REQUIRES: not committed yet.
  void commit(bool fsync_dir = true);
  // commit() that keeps the old file until the destructor removes it, so that take_back() can
  // undo the change without writing anything (a full disk cannot fail it): an existing target is
  // swapped with the temp file (renameat2 RENAME_EXCHANGE) and lives on under the temp file's
  // name; a missing one is simply created. Where the filesystem cannot swap, commit() is done
  // instead and can_take_back() is false. With Durability::none where the temp file was not
  // fsynced (a rename over the old file flushes it), the old file is kept by a hard link under a
  // temp name instead, and the new one renamed over the target, so that the rename still
  // flushes. REQUIRES: not committed yet.
  void commit_keeping_old(bool fsync_dir = true);
  bool can_take_back() const noexcept { return take_back_ != TakeBack::none; }
  // Puts the old file back in place (removes the new one where there was none) and removes the
  // new file; for Durability::full, fsyncs the directory. THROWS Error when that fails (the new
  // file may then still be in place). REQUIRES: can_take_back().
  void take_back();
  const std::string& target() const noexcept { return target_; }

 private:
  enum class TakeBack { none, swap_back, rename_back, remove_target };
  // Strings, not std::filesystem::path: a path splits itself into components whenever one is
  // made, which was a tenth of a small replace's time.
  std::string target_;
  std::string temp_;  // empty once committed or moved from
  Durability durability_;
  std::string context_;
  bool swap_in_ = false;
  bool rename_over_ = false;  // none, temp not fsynced: only a rename over the target flushes it
  int dir_fd_ = -1;           // ReplaceOptions::dir_fd
  bool owns_dir_fd_ = false;
  TakeBack take_back_ = TakeBack::none;
};

// Removal of a file in two halves, for a caller that may have to take it back: the constructor
// moves `target` aside to a temp name in its directory (readers see it gone); take_back() moves
// it back without writing anything (a full disk cannot fail it); the destructor removes it. Where
// no temp name can be had, the file is unlinked at once and can_take_back() is false.
// `dir_fd`: the target's directory, open, as ReplaceOptions::dir_fd (every name is then taken
// in it, no link on the target's path followed; -1: by the target's path); with `owns_dir_fd`
// it is closed when this is destroyed (also when the constructor throws).
// THROWS Error naming the target when it cannot be removed (ENOENT when it is missing).
class StagedRemove {
 public:
  StagedRemove(std::string target, std::string_view context, int dir_fd = -1,
               bool owns_dir_fd = false);
  ~StagedRemove();
  StagedRemove(StagedRemove&& other) noexcept;
  StagedRemove(const StagedRemove&) = delete;
  StagedRemove& operator=(const StagedRemove&) = delete;
  StagedRemove& operator=(StagedRemove&&) = delete;

  bool can_take_back() const noexcept { return !aside_.empty(); }
  // Renames the file back to the target. THROWS Error. REQUIRES: can_take_back().
  void take_back();

 private:
  std::string target_;
  std::string aside_;  // empty once removed, taken back, or unlinked at once
  std::string context_;
  int dir_fd_ = -1;
  bool owns_dir_fd_ = false;
};

}  // namespace lockdb::detail
