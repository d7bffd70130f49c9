// The store's on-disk format (private): the constants, and the key -> file name encoding.
// docs/FORMAT.md ("Store layout") has the long form; change both together, and bump
// kStoreFormatVersion when an old reader would misread the new layout.
//
//   <store>/lockdb-store.json            marker: {"format":"lockdb-store","version":2,...}
//   <store>/keys/<shard>/<name>.json     one key's value, plain JSON text
//   <store>/keys/<shard>/<name>.json.lock  its lock (lock_stripes = 0)
//   <store>/keys/stripe-<n>.lock         stripe locks (lock_stripes = N)
//   <store>/log/                         the history log (history.hpp, log_writer.hpp)
//   <store>/txn/<id>/intent.json         an update_many under way (store_txn.cpp)
//
// Shard: two lowercase hex digits (256 shard directories: renames into one directory serialize
// on ext4, so keys must spread). Format 2: the top byte of mix64(FNV-1a-64 of the key's bytes),
// mix64 being MurmurHash3's 64-bit finalizer: "k0".."k9999" use every shard. Format 1: the top
// byte of plain FNV-1a-64, which barely changes with a key's last characters ("k0".."k127" fall
// into 4 shards); a format-1 store keeps it (it is read and written as it is, never converted).
//
// Key file text: the value's JSON text, plus one final newline in format 2 (none in format 1).
// A version hashes the text without that final newline, so adding or dropping it (an editor's
// save) is not a change.
//
// Name: the key's bytes, one token per byte:
//   a-z 0-9 - _ .      themselves
//   A-Z                '^' then the letter   ("Config" -> "^Config": a lowercase letter never
//                                             follows '^', so keys differing only in case never
//                                             collide on case-insensitive filesystems)
//   any other byte     '%' then two lowercase hex digits ("/" -> "%2f", NUL -> "%00", UTF-8 bytes)
// A '.' that starts a file or directory name is written "%2e" (names starting with '.' are
// reserved for temp files). A name whose part before its first '.' is a Windows device name
// (con, prn, aux, nul, com0-9, lpt0-9) has its first character written as "%xx".
// Long names are split into directories: every name component holds at most kMaxComponent
// characters; all but the last end with '~' and are directories, the last ends with ".json".
// The encoding is canonical: decode_key_file() accepts a name only if encoding the decoded key
// gives exactly that name back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util.hpp"

namespace lockdb::detail::store_format {

// ---- marker ----
inline constexpr std::string_view kMarkerFile = "lockdb-store.json";
inline constexpr std::string_view kTxnDir = "txn";
inline constexpr std::string_view kTxnIntent = "intent.json";
// The boot id (os::boot_id) of the last boot whose first Store open ran the recovery after a
// power cut (see Store::Store): a store that says another boot may have lost what was not on disk.
inline constexpr std::string_view kBootFile = "boot-id";
inline constexpr std::string_view kFormatName = "lockdb-store";
// The format new stores get, and the oldest one this code reads and writes as it is.
inline constexpr int kStoreFormatVersion = 2;
inline constexpr int kOldestStoreFormatVersion = 1;
// Marker fields.
inline constexpr const char* kFieldFormat = "format";
inline constexpr const char* kFieldVersion = "version";
inline constexpr const char* kFieldLockStripes = "lock_stripes";
inline constexpr const char* kFieldCreated = "created";

// ---- directories ----
inline constexpr std::string_view kKeysDir = "keys";
inline constexpr std::string_view kLogDir = "log";
inline constexpr unsigned kShardCount = 256;

// ---- key files ----
inline constexpr std::size_t kMaxKeyBytes = 1024;
inline constexpr std::string_view kKeyFileSuffix = ".json";
inline constexpr std::string_view kLockSuffix = ".lock";
inline constexpr char kContinuation = '~';  // ends a directory component of a long name
inline constexpr char kUpperEscape = '^';
inline constexpr char kByteEscape = '%';
// Longest encoded name component before the suffix; leaves room for ".json.lock" and the temp
// file name ".<name>.json.<12 hex>.tmp" within the 255-byte limit of file names.
inline constexpr std::size_t kMaxComponent = 200;
// Temp files: atomic_replace's ".<key file name>.<hex>.tmp" (the writer's pid, or 12 random
// digits where that name is taken); the seed's Python
// atomic_json_update writes "<name>.tmp<pid>" next to "<name>.json".
inline constexpr std::string_view kTempSuffix = ".tmp";
inline constexpr std::string_view kPythonTempInfix = ".tmp";
// A corrupt key file that repair() moved aside: "<name>.json.corrupt-<UTC time>".
inline constexpr std::string_view kCorruptInfix = ".corrupt-";
// Stripe lock files (lock_stripes = N): keys/stripe-<n>.lock, n in [0, N).
inline constexpr std::string_view kStripePrefix = "stripe-";

// ---- hashing ----
// FNV-1a, 64 bit (util.hpp). Stable across platforms and versions: it names shards, stripes and
// versions.
using util::fnv1a64;
// A version token: FNV-1a-64 of a key file's bytes, without one final '\n', as 16 lowercase
// hex digits.
std::string version_of(std::string_view file_bytes);
// The value text of a key file: its bytes without one final '\n'.
std::string_view value_text(std::string_view file_bytes) noexcept;
// The key file text of a value's JSON text in store format `format`.
std::string file_text(std::string value_json, int format);
// "a7": the key's shard directory name in store format `format`.
std::string shard_of(std::string_view key, int format = kStoreFormatVersion);

// ---- keys ----
// Empty when `key` is a valid key; otherwise why not ("is empty", "is longer than 1024 bytes",
// "is not valid UTF-8 (byte 3)").
std::string key_problem(std::string_view key);
// The key file's path relative to keys/: "<shard>/<component>~/.../<component>.json".
// REQUIRES: key_problem(key) is empty.
std::filesystem::path key_file_relative(std::string_view key, int format = kStoreFormatVersion);
// The same appended to `out` as text (no std::filesystem::path made).
void append_key_file_relative(std::string_view key, std::string& out,
                              int format = kStoreFormatVersion);
// The lock file of `key` relative to keys/, appended to `out`: the key file's name + ".lock"
// ("<shard>/.../<name>.json.lock") when `stripes` is 0, else its stripe's "stripe-<n>.lock",
// n = fnv1a64(key) % stripes. REQUIRES: key_problem(key) is empty.
void append_lock_file_relative(std::string_view key, std::size_t stripes, std::string& out,
                               int format = kStoreFormatVersion);
// The key a key file names, given its path relative to keys/; nullopt when the path is not the
// canonical encoding of a valid key (wrong shard, bad token, not canonical...).
std::optional<std::string> decode_key_file(const std::filesystem::path& relative,
                                           int format = kStoreFormatVersion);
// True for a shard directory name ("00".."ff").
bool is_shard_name(std::string_view name);
// True for a name that ends with ".json" and does not start with '.' (a key file's shape; the
// name may still not decode).
bool is_key_file_name(std::string_view name);
// True for a directory component of a long key's path ("...~"); such components hold only
// encoded characters.
bool is_continuation_dir(std::string_view name);
// The key file a temp file belongs to, from the temp's file name; nullopt when `name` is not a
// temp name (ours: ".<file>.<hex>.tmp", the seed's Python: "<stem>.tmp<digits>").
std::optional<std::string> temp_owner(std::string_view name);
// A readable form of a key for messages: printable ASCII as is, other bytes as \xNN, quoted,
// cut after 200 bytes.
std::string quote_key(std::string_view key);

}  // namespace lockdb::detail::store_format
