// Atomic replace of a file: the one implementation of "write a temp file in the same directory,
// (fsync), rename it over the target, (fsync the directory)" used by atomic_write,
// atomic_json_update and the store.
#pragma once

#include <lockdb/durability.hpp>

#include <filesystem>
#include <optional>
#include <string_view>

namespace lockdb::detail {

// Replaces `target` with `data`. Readers see the old or the new content, never a mix. The new
// file keeps the old file's permission bits (or `mode`, or 0666 & ~umask for a new file).
// On any failure the temp file is removed, `target` is untouched, and Error names the path and
// the failing step ("cannot write", "cannot fsync", "cannot rename into place", ...). A failed
// fsync fails the call; it is not retried.
// `temp_prefix` names the temp file: "<dir>/<temp_prefix><random>.tmp" (default: ".<name>.").
void atomic_replace(const std::filesystem::path& target, std::string_view data,
                    Durability durability, std::optional<unsigned> mode = std::nullopt,
                    std::string_view temp_prefix = {});

}  // namespace lockdb::detail
