// Durability: what a write survives once it returns.
#pragma once

#include <lockdb/config.hpp>

namespace lockdb {

enum class Durability {
  // The default. Survives a crash of the process. After a power cut or kernel crash a replaced
  // file holds its old or its new content, never an empty or partial one (a write may be lost,
  // never torn): on ext4 (auto_da_alloc, as Python's os.replace) by renaming over the old file,
  // which makes ext4 write the new data first; elsewhere, and for a file that did not exist,
  // by fsyncing the temp file before the rename.
  none,
  file,  // also fsyncs every new file's data: survives power loss, except a rename not yet on disk
  full,  // also fsyncs the directory (and, for the store, the log): survives power loss
  // Faster than none on ext4 and btrfs, and gives up its power-cut promise: no fsync, and the new
  // file is swapped in (renameat2 RENAME_EXCHANGE), which ext4 does not flush. Survives a crash
  // of the process; after a power cut a file written shortly before may be empty.
  power_loss_unsafe,
};

// "none", "file", "full", "power_loss_unsafe".
constexpr const char* durability_name(Durability d) noexcept {
  switch (d) {
    case Durability::none: return "none";
    case Durability::file: return "file";
    case Durability::full: return "full";
    case Durability::power_loss_unsafe: return "power_loss_unsafe";
  }
  return "none";
}

}  // namespace lockdb
