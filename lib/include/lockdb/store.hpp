// Store: a directory of JSON values, one plain JSON file per key, shared by processes.
//
// Every write is a locked read-modify-write of one key: lock the key (its file's path + ".lock",
// or a stripe lock file), read, apply, write a temp file in the same directory, rename it over
// the key's file, append one record to the history log (history.hpp), unlock. Reads take no
// lock: a reader sees the old value or the new one, never a mix. The key file holds exactly the
// value's JSON text, so people, jq and the seed's Python helpers can read (and even update) it.
//
// Versions: a key's version token is a hash of its file's exact bytes (16 hex digits). It
// changes whenever the content changes, also when someone bypasses the store; writing the same
// bytes again gives the same token. The log records previous and new token of every change, so
// each key's history is a chain and a write that bypassed the store shows as a gap.
//
// Threads and processes: a Store object is thread-safe; any number of Store objects (in any
// number of processes) may open the same directory. Lock order: in-process mutex -> key locks
// (several keys: sorted by lock file path) -> log append. Process death: the OS drops the locks; a
// crash can leave a key file and the log one change apart (verify() finds it, repair() fixes it),
// and an update_many unfinished (the next write completes it).
// Open descriptors: a Store object keeps descriptors open while it lives (the store's directory,
// keys/ and log/, the log's lock file and newest segment once it has written, and the lock files
// of up to max_open_locks keys) and closes them all with it: a filesystem holding a store can be
// unmounted once its Store objects are gone.
// Fork: a child may keep using the Store object; it holds no lock of its parent. Forking while
// another thread is inside a call on the same Store is not supported.
#pragma once

#include <lockdb/config.hpp>
#include <lockdb/detail/json_fn.hpp>
#include <lockdb/durability.hpp>
#include <lockdb/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace lockdb {

namespace detail {
class StoreBackend;
struct StoreImpl;
}  // namespace detail

struct StoreOptions {
  // What a write survives once it returns (see durability.hpp); `file` counts as `full` minus
  // the directory fsync. Default: none: after a power cut every key holds a value it had.
  Durability durability = Durability::none;
  // How long a write waits for its locks, the key's and then the log's, before throwing Timeout
  // (one limit for all the waits of a call).
  std::chrono::nanoseconds lock_timeout = kDefaultLockTimeout;
  // 0: one lock file per key (key file + ".lock"). N: N stripe lock files, keys mapped by a
  // stable hash (fewer files; unrelated keys may wait for each other).
  std::size_t lock_stripes = 0;
  // The log rotates into a new segment once the current one reaches this size.
  std::uint64_t log_segment_bytes = 64ull << 20;
  // Create the store when the directory does not hold one. false: Error{not_found} instead.
  bool create = true;
  // When this call creates the store: make its directory setgid and group-writable (g+rwxs,
  // keeping the directory's group), so that every user in that group can write the store
  // (docs/store.md, "Sharing a store between OS users"). A store whose directory is so already
  // (chgrp G DIR; chmod 2775 DIR) is group-shared without it; an existing store is left as it is.
  // Everything a group-shared store creates gets the group's read and write bits whatever the
  // umask (one fchmod per file or directory created). After opening, options().shared_group says
  // whether the store is group-shared. THROWS Error{permission} when the directory cannot be made
  // so (this process does not own it, or is not in its group).
  bool shared_group = false;
  // Lock files a Store object keeps open between writes (least recently used ones are closed
  // beyond this), so a hot key costs no open/close per write and descriptors stay bounded. 0:
  // each closes as soon as its write ends.
  std::size_t max_open_locks = 64;
  // etcd stores only: every request to etcd is bounded by this (a write's retries as a whole by
  // lock_timeout). On etcd, durability, lock_stripes, log_segment_bytes, shared_group and
  // max_open_locks are ignored: durability is etcd's (raft + fsync).
  std::chrono::nanoseconds request_timeout = std::chrono::seconds(5);
};

// A value with its version token.
struct Entry {
  nlohmann::json value{};
  std::string version{};
};

// One disagreement found by verify().
struct Finding {
  enum class Kind {
    corrupt_key_file,  // a key file that does not parse
    unlogged_change,   // key file differs from the last logged version (written around the store)
    missing_file,      // the log says the key exists, its file does not (or the reverse)
    orphan_temp,       // a temp file left by a crashed writer
    torn_log_line,     // a partial line in the log (skipped by readers)
    stale_marker,      // a stale SoftFileLock marker / tombstone in the store
    bad_file_name,     // a file in the store whose name decodes to no key
    planted_file,      // a symbolic link, hard link or special file where the store keeps its own
  };
  Kind kind{};
  std::string key{};             // empty when the finding is not about a key
  std::filesystem::path path{};  // the file concerned
  std::string detail{};          // one line, for people
};
const char* finding_kind_name(Finding::Kind kind) noexcept;  // "corrupt_key_file", ...

class Store {
 public:
  // Opens the store in `dir`, creating it (and `dir`) when options.create is set. `dir` may also
  // be an etcd location, "etcd://host:port[,host:port...]/prefix" (README "etcd backend"): the
  // same interface on an etcd v3 cluster; errors then name the endpoint and the cause
  // (unreachable, no quorum: Error{io}; request too large: Error{invalid_argument}; auth
  // refused: Error{permission}), and every call is bounded by request_timeout.
  // THROWS Error{not_found} (no store and create=false), Error{corrupt} (a directory that is not
  // a lockdb store: it has files but no marker, or a marker that does not parse),
  // Error{version} (a newer format), Error{permission|io}. Never waits for a lock held by others.
  explicit Store(std::filesystem::path dir, StoreOptions options = {});
  ~Store();
  // Movable: the moved-to Store takes over the open store; a moved-from Store may only be
  // destroyed or assigned to.
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;

  const std::filesystem::path& dir() const noexcept;
  const StoreOptions& options() const noexcept;

  // ---- reads: lock-free ----
  // THROW Error{invalid_argument} for an invalid key, Error{corrupt} naming the file when the key
  // file does not parse, Error{permission|io}.
  std::optional<nlohmann::json> get(std::string_view key) const;
  std::optional<Entry> entry(std::string_view key) const;
  bool contains(std::string_view key) const;
  std::vector<std::string> keys() const;  // sorted, exactly as they were put
  // The keys that start with `prefix` (bytes), sorted.
  std::vector<std::string> keys(std::string_view prefix) const;
  std::filesystem::path file_path(std::string_view key) const;  // the key's file (may not exist)

  // ---- writes: locked read-modify-write + one log record each ----
  // Every write THROWS Error{invalid_argument} (invalid key; a value nested deeper than 512
  // levels or holding a NaN, an infinity or a binary value: nothing is written), Timeout (the
  // key's lock, or then the log's lock, not had within lock_timeout of the call's start: every
  // wait of the call ends then; naming that lock file and its holder; a write that waited for the
  // log lock in vain is taken back, and the key is unlocked), Error{corrupt} (the current key file
  // does not parse or nests deeper than 512 levels: nothing is written), Error{io|permission} (full
  // disk, read-only store: the old value stays, no temp file stays). `op` (put, compare_and_put):
  // the operation its log record names, for writes on behalf of a tool ("import"); 1 to 32 of a-z
  // and '_', else Error{invalid_argument}.
  std::string put(std::string_view key, const nlohmann::json& value,
                  std::string_view op = "put");  // returns the version
  // fn sees null for a missing key; it either mutates its argument and returns void, taking
  // `nlohmann::json&` (or `auto&`), or returns the new value (taking `const nlohmann::json&`,
  // `nlohmann::json&` or a json by value). Any other signature does not compile, a void fn taking
  // the value by value, `const&` or `auto&&` included: its edits would go to a copy.
  // Any callable: a lambda (generic ones too), a function, a std::function. (There are no
  // std::function overloads: to see whether a generic lambda converts to a
  // std::function<json(const json&)> the compiler instantiates its body with a const json, a
  // hard error for one that edits its json&.)
  template <class Fn>
  requires std::is_invocable_v<Fn&, nlohmann::json&> nlohmann::json update(std::string_view key,
                                                                           Fn&& fn) {
    static_assert(detail::json_fn_kind<Fn> != detail::JsonFnKind::edits_a_copy,
                  "update(key, fn): a fn that returns void must take nlohmann::json& (or auto&); "
                  "taking the value by value, const& or auto&& it would edit a copy");
    using Result = std::invoke_result_t<Fn&, nlohmann::json&>;
    if constexpr (std::is_void_v<Result>) {
      return update_with(key, [&fn](nlohmann::json& v) { fn(v); });
    } else {
      static_assert(std::is_convertible_v<Result, nlohmann::json>,
                    "update(key, fn): fn must return void or a json value");
      return update_with(key, [&fn](nlohmann::json& v) { v = nlohmann::json(fn(v)); });
    }
  }
  // Adds delta to an integer value (missing = 0). THROWS Error{invalid_argument} when the value
  // is not an integer or the sum overflows std::int64_t.
  std::int64_t increment(std::string_view key, std::int64_t delta = 1);
  bool erase(std::string_view key);  // false when the key did not exist
  // Writes only when the key's current version equals `expected_version`; std::nullopt means
  // "only if the key is absent". Returns false (writing nothing) otherwise. A key file that
  // does not parse is Error{corrupt} whatever is expected, as for every write.
  bool compare_and_put(std::string_view key, const std::optional<std::string>& expected_version,
                       const nlohmann::json& value, std::string_view op = "cas");

  // Runs fn while holding key's lock, so that another program can read or rewrite the key's
  // file (file_path(key); its directory is made first) as a store write would: the flock(1)
  // idiom for one key. exclusive: afterwards, a change fn made to the file is logged with op `op`
  // (its new value, or an erase when the file is gone), so verify() stays clean; shared (for
  // readers; writers of the key wait, other shared holders do not): nothing is logged.
  // Returns whether the file changed. Blocks up to lock_timeout for the lock, then for fn, then
  // (exclusive) up to lock_timeout for the log's lock.
  // THROWS Timeout (a lock not had; for the log's, fn's change stays in place unlogged, and the
  // message says so: repair() logs it), Error{invalid_argument} (invalid key or op), Error{corrupt}
  // when fn left a file that does not parse (left as it is, unlogged: verify() reports it, repair()
  // moves it aside), and whatever fn throws (a change fn made before is logged first).
  // On an etcd store THROWS Error{invalid_argument}: it has no key files (EtcdLock locks there).
  enum class LockMode { exclusive, shared };
  bool with_key_locked(std::string_view key, LockMode mode, const std::function<void()>& fn,
                       std::string_view op = "run");
  // Locks all keys (sorted, so concurrent calls never deadlock) and lets fn see and edit every
  // value: the map holds each existing key's value; missing keys are absent. After fn, a key in
  // the map is written (when changed), a key fn removed from the map is erased; keys fn adds
  // that were not requested are an Error{invalid_argument}. One log record per changed key, all
  // appended in one write. Returns the map as written. All or nothing across process crashes and
  // power cuts: an intent holding every new value is recorded (fsynced unless power_loss_unsafe)
  // before any key changes, and an update a crash left unfinished is completed by the next write
  // to the store or the next Store opened. Readers of the keys may see it half applied until
  // then. A failure before the intent is recorded changes nothing; one after it (a failed
  // rename) throws saying how many keys are in place, and the next write completes the rest.
  std::map<std::string, nlohmann::json> update_many(
      const std::vector<std::string>& keys,
      const std::function<void(std::map<std::string, nlohmann::json>&)>& fn);

  // ---- maintenance ----
  // Every lock file of the store (key locks or stripes, and the log's lock).
  std::vector<std::filesystem::path> lock_files() const;
  // Reports every disagreement between key files and the log, corrupt files, orphaned temp
  // files, torn log lines (those no repair acknowledged) and stale markers. Safe while
  // writers run (findings may then include changes in flight: re-run to confirm).
  std::vector<Finding> verify() const;
  // Fixes what verify() finds: logs unlogged changes (op "repair"), removes orphaned temp files
  // and stale markers, moves corrupt key files aside to "<file>.corrupt-<time>" (logging the
  // key's absence). Every change to a key's value or presence is logged (op "repair"); removing
  // temp files and markers changes no key and is only returned. Its records mark the torn lines
  // before them as seen (the lines stay: the log is append-only); with no record to log, a seen
  // marker does (docs/FORMAT.md). Afterwards verify() reports only what repair leaves alone:
  // planted_file and bad_file_name (they may be someone's). Returns what it did.
  std::vector<Finding> repair();

 private:
  using Impl = detail::StoreImpl;
  nlohmann::json update_with(std::string_view key, const std::function<void(nlohmann::json&)>& fn);

  std::unique_ptr<detail::StoreBackend> backend_;  // set for an etcd location, else null
  std::unique_ptr<Impl> impl_;                     // set for a directory
};

// ---- the log: bounding it, and a store made from it (maintenance, like verify and repair) ----
// `store` is a store directory or an etcd location, as for Store and History.

// Bounds the store's history log: keeps, per key, its last `keep_last` records
// (compact_history_keep_last) or the records at or after `before` (compact_history_before), and
// always each live key's latest record, so every key's current value stays rebuildable. Safe
// while writers run. Returns the number of records dropped. THROWS Error{not_found} when there
// is no store, Error{invalid_argument} for a link planted at log/, Error{io|permission}.
std::size_t compact_history_keep_last(const std::filesystem::path& store, std::size_t keep_last);
std::size_t compact_history_before(const std::filesystem::path& store,
                                   std::chrono::system_clock::time_point before);

// Makes a new store in `target_dir` (which must not hold a store) from the log of `store` alone:
// every key with its last logged value, in the newest store format (a format-1 store's way to
// format 2). The new store's own log starts with one "put" per key; it is group-shared when
// `store`'s directory is (StoreOptions::shared_group).
// THROWS Error{invalid_argument} when target_dir already holds a store, what History and Store
// throw.
void rebuild_store(const std::filesystem::path& store, const std::filesystem::path& target_dir);

}  // namespace lockdb
