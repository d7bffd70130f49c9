// Soft lock markers found where hard locks live (private).
//
// A store's key lock files are flock(2) lock files that stay empty, removed only with their key
// (format 2, under the lock): other processes keep descriptors to them open between writes. A
// SoftFileLock (nfs_safe_write, or Python's filelock.SoftFileLock) on the same path leaves a marker
// there, and a marker whose holder died stays behind as a claim nobody releases. These functions
// judge such markers and take the claim back without removing the file.
#pragma once

#include <lockdb/error.hpp>

#include <chrono>
#include <filesystem>
#include <optional>

namespace lockdb::detail {

// The holder named by the marker at `path` when that marker is stale (SoftFileLock's rules);
// nullopt when there is no file, it is empty or no marker, or its holder may still be alive.
std::optional<LockHolder> stale_marker_holder(const std::filesystem::path& path,
                                              std::chrono::nanoseconds stale_after);

// Empties the marker at `path` in place when it is stale: the file (and any flock on it) stays.
// True when it emptied one. THROWS Error naming the path when it cannot open or truncate it.
bool clear_stale_marker(const std::filesystem::path& path, std::chrono::nanoseconds stale_after);

}  // namespace lockdb::detail
