// Durability: what a write survives once it returns.
#pragma once

#include <lockdb/config.hpp>

namespace lockdb {

enum class Durability {
  none,  // survives a crash of the process (the data is in the OS page cache); no fsync
  file,  // also fsyncs the file's data: survives power loss, except a rename not yet on disk
  full,  // also fsyncs the directory (and, for the store, the log): survives power loss
};

// "none", "file", "full".
constexpr const char* durability_name(Durability d) noexcept {
  switch (d) {
    case Durability::none: return "none";
    case Durability::file: return "file";
    case Durability::full: return "full";
  }
  return "none";
}

}  // namespace lockdb
