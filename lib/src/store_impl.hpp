// detail::StoreImpl (private): a directory store, behind Store;: shared by store.cpp (open, reads,
// writes) and store_verify.cpp.
#pragma once

#include <lockdb/store.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "log_writer.hpp"
#include "os.hpp"
#include "replace.hpp"
#include "store_locks.hpp"

namespace lockdb {

// An op name a caller gives a write (Store::put's `op`): 1 to 32 of a-z and '_'. THROWS
// Error{invalid_argument} otherwise.
void check_op_name(std::string_view op);

namespace detail {

struct StoreImpl {
  // A key with its file and lock file. Strings, not std::filesystem::path: a path splits itself
  // into components when it is made, which was half of what naming a key's files cost.
  struct KeyPaths {
    std::string key;
    std::string file;
    std::string lock;
    std::string context;  // context(key), for error messages
    // The key file's directory.
    std::string_view dir() const noexcept {
      return std::string_view(file).substr(0, file.rfind('/'));
    }
    std::size_t rel_at = 0;  // file.substr(rel_at): the key file's path beneath keys/
    const char* file_rel() const noexcept { return file.c_str() + rel_at; }
    std::string_view dir_rel() const noexcept {
      return std::string_view(file).substr(rel_at, file.rfind('/') - rel_at);
    }
    const char* name() const noexcept { return file.c_str() + file.rfind('/') + 1; }
  };
  // What a key's file holds right now.
  struct Current {
    bool exists = false;
    std::string bytes;
    std::string version;  // empty when !exists, or when not asked for
  };

  StoreImpl(std::filesystem::path store_dir, StoreOptions store_options);

  // The key's directory beneath keys_fd, opened by name following no link (O_PATH unless
  // `for_fsync`); with `create`, made first when missing. THROWS Error{invalid_argument} naming a
  // planted link or non-directory, Error{io|permission|not_found} naming the directory.
  os::Fd open_key_dir(const KeyPaths& p, bool create, bool for_fsync = false) const;
  // Whether the store removes the lock files of absent keys (format 2, no stripes).
  bool lock_files_removed() const noexcept;
  // Removes the key's lock file where lock_files_removed(); a failure leaves it (repair removes
  // it later). REQUIRES: the key's lock held, its key file absent.
  void drop_lock_file(const KeyPaths& p) const noexcept;
  // Declared after a key's lock is taken: a key the call leaves absent (erased, or never written:
  // `absent` true at the end, whatever the path out) loses its lock file, still under the lock.
  struct LockFileDrop {
    const StoreImpl& impl;
    const KeyPaths& p;
    bool absent;
    ~LockFileDrop() {
      if (absent) impl.drop_lock_file(p);
    }
  };
  // Removes the key file by name in its directory. THROWS as open_key_dir, Error naming the file.
  void unlink_key_file(const KeyPaths& p) const;
  // fsyncs the key directory `key_dir` (a path beneath keys_dir); errno as os::fsync.
  os::Status fsync_key_dir(std::string_view key_dir) const;

  // Validates the key (Error{invalid_argument} naming it) and names its files.
  KeyPaths paths(const std::string& key) const;
  // The same, remembered for the most recently used keys: building the paths (std::filesystem
  // splits every path it makes) was a fifth of a write's user time.
  std::shared_ptr<const KeyPaths> cached_paths(const std::string& key) const;
  // The lock file of `key`, whose key file is `file`: the file's path + ".lock", or its stripe's.
  std::string lock_path_of(std::string_view key, const std::string& file) const;
  // When a call's lock waits end: options.lock_timeout from now (nullopt: never).
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;
  Deadline deadline_from_now() const;
  // Takes a key's lock within options.lock_timeout. THROWS Timeout, Error{conflict} when this
  // thread already holds it (a store write from inside update's fn).
  detail::KeyLocks::Hold lock_key(const KeyPaths& p);
  // The same for a lock file (a key's or a stripe's), waiting until `deadline` at most (the
  // Timeout names options.lock_timeout).
  detail::KeyLocks::Hold lock_file(const std::string& lock_path, const std::string& key,
                                   Deadline deadline);
  // Reads a key file (no lock), and its version unless `with_version` is false (get(): hashing
  // a large value costs a pass over its bytes). THROWS Error{permission|io|invalid_argument}
  // naming key and file.
  Current read_current(const KeyPaths& p, bool with_version = true) const;
  // Parses / checks key file bytes. THROWS Error{corrupt} naming key and file.
  nlohmann::json parse(const KeyPaths& p, const Current& cur) const;
  void check_parses(const KeyPaths& p, const Current& cur) const;
  // The bytes a value is stored as. THROWS Error{invalid_argument} (invalid UTF-8 in a string).
  std::string render(const KeyPaths& p, const nlohmann::json& value) const;

  // Makes the key file hold `bytes` (temp + rename), creating the key's directory if needed.
  void replace_file(const KeyPaths& p, std::string_view bytes) const;
  // `exists`: whether the key file exists now (nullopt: looked up), for Durability::none.
  detail::StagedReplace stage_file(const KeyPaths& p, std::string_view bytes,
                                   std::optional<bool> exists) const;
  // Removes the key file and, for Durability::full, fsyncs its directory: a failed fsync is
  // returned (as sync_key_dir), not thrown, for the erase is done.
  std::optional<Error> remove_file(const KeyPaths& p, const char* done) const;
  // Moves the key file aside (StagedRemove): gone for readers, back with take_back(), removed
  // when the result is destroyed. THROWS Error naming key and file.
  detail::StagedRemove remove_aside(const KeyPaths& p) const;
  // Appends one record, waiting for the log lock until `deadline` at most. REQUIRES: the key's
  // lock held. THROWS what LogWriter::append throws (Timeout naming the log lock included).
  // `file_bytes`: the key file's text when it holds `value`; reused as the record's value when
  // it is one line (a scalar or an empty container), which saves serialising the value again.
  void append_record(Deadline deadline, const KeyPaths& p, std::string_view op,
                     const nlohmann::json* value, const std::optional<std::string>& prev,
                     const std::optional<std::string>& version, std::string_view file_bytes = {});
  // For Durability::full: fsyncs the key file's directory. Returns the error to throw once the
  // change is logged when that fails (`done` says what is in place); a change in place is not
  // taken back for a failed fsync.
  std::optional<Error> sync_key_dir(const KeyPaths& p, const char* done) const;
  // append_record for a change in place: a failed append takes the change back (throws
  // throw_after_log_failure's error; for a Timeout on the log lock, once the change is back, a
  // Timeout naming the log lock and its holder); a failed fsync of the log after a whole append
  // sets `not_durable` (unless already set; `done` says what is in place) and returns: the record
  // is in the log.
  void log_change(Deadline deadline, const KeyPaths& p, const std::function<void()>& undo,
                  std::string_view op, const nlohmann::json* value,
                  const std::optional<std::string>& prev, const std::optional<std::string>& version,
                  std::string_view file_bytes, const char* done, std::optional<Error>& not_durable);
  // Puts `before` back: its bytes into the key file, or removes the file if it did not exist.
  // Needs free space for a new temp file: only where the change cannot be taken back without.
  void restore(const KeyPaths& p, const Current& before) const;
  // How a change in place is taken back: the staged file's take_back() (which writes nothing, so
  // a full disk cannot fail it), else restore().
  template <class Staged>
  void take_back(const KeyPaths& p, const Current& before, Staged& staged) const {
    if (staged.can_take_back()) {
      staged.take_back();
    } else {
      restore(p, before);
    }
  }
  // After append_record failed: takes the change back. Throws the log error with the key named,
  // saying whether the old value is back (and nothing logged) or not; a Timeout stays a Timeout
  // (naming the log lock, its holder and options.lock_timeout) when the old value is back.
  [[noreturn]] void throw_after_log_failure(const KeyPaths& p, const std::function<void()>& undo,
                                            const Error& log_error);

  // One locked read-modify-write of a key: lock, read, decide, write (or erase), log, unlock.
  // `decide(const KeyPaths&, const Current&)` returns a Decision.
  struct Decision {
    enum class Action { keep, write, erase } action = Action::keep;
    nlohmann::json value;
  };
  struct Outcome {
    bool changed = false;
    nlohmann::json value;
    std::string version;
  };
  template <class Decide>
  Outcome write_one(const std::string& key, std::string_view op, Decide&& decide);

  // Visits keys/: every entry at its top (depth 0), and everything inside the shard
  // directories ("00".."ff") and their continuation directories ("...~"), parents first.
  struct WalkEntry {
    std::filesystem::path path;
    std::string name;
    bool is_dir = false;   // a directory (not a symlink to one)
    bool is_file = false;  // a regular file (not a symlink to one)
    int depth = 0;         // 0: directly in keys/
  };
  void walk_keys(const std::function<void(const WalkEntry&)>& fn) const;

  detail::LogWriter& log_writer();
  std::string context(const std::string& key) const;

  // ---- update_many transactions (store_txn.cpp has the protocol) ----
  // Opens (makes) txn/ into txn_fd; leaves it closed where the store cannot be written.
  void open_txn_dir();
  // Whether an update_many is under way or was left unfinished by a crash: one fstat.
  bool pending_transactions() const;
  // Whether one was left unfinished (its owner died) and nobody recovers it: lists txn/.
  bool dead_transaction() const;
  // Completes every unfinished one: under its keys' locks (taken here, waiting until `deadline`
  // at most), rolls its keys forward and logs what the log lacks. REQUIRES: no key lock held by
  // this thread. THROWS Timeout, Error{io|permission|corrupt}.
  void recover_transactions(Deadline deadline);
  // The keys whose records of transaction `id` are in the log.
  std::set<std::string> keys_logged_by(const std::string& id) const;
  // The owner's side: begin_transaction writes the intent (`intent_changes`: the JSON array of
  // the changes) and returns once it is decided (durable unless power_loss_unsafe);
  // end_transaction removes it once every change is in place. THROWS Error (nothing decided).
  struct Txn {
    std::string id;
    os::Fd marker;  // txn/<id>, flock held
  };
  Txn begin_transaction(std::string_view intent_changes, Deadline deadline);
  void end_transaction(Txn& txn) noexcept;

  // Constant after construction. The store's directory and its keys/ and log/ stay open while
  // the Store lives: everything inside is opened by name from them (os::open_beneath), never by
  // a path string, so no link planted inside the store leads outside it.
  os::Fd root_fd;
  os::Fd keys_fd;
  os::Fd log_fd;
  os::Fd txn_fd;                 // txn/; invalid where the store cannot be written
  bool txn_links_count = false;  // txn/'s link count counts its subdirectories (not btrfs)
  std::filesystem::path dir;
  std::filesystem::path keys_dir;
  std::filesystem::path log_dir;
  StoreOptions options;    // lock_stripes: the store's own (from its marker); shared_group: its
                           // root's (create_mode.group_shared)
  int format_version = 0;  // the store's format (from its marker): store_format.hpp
  // How what the store creates gets its mode: group-shared when its root directory is setgid and
  // group-writable (os::create_mode_of_root), else the umask's, as everywhere.
  os::CreateMode create_mode;
  bool swap_in = false;  // power_loss_unsafe: swap key files in (detail::swap_in_pays of keys/)
  bool rename_flushes = false;   // os::rename_flushes_data of keys/
  bool short_reads_end = false;  // os::short_reads_end of keys/: one read(2) per small key file

  detail::KeyLocks locks;

 private:
  void walk_dir(const std::filesystem::path& path, int depth,
                const std::function<void(const WalkEntry&)>& fn) const;

  static constexpr std::size_t kPathCacheSize = 4096;  // entries; emptied when full
  mutable std::mutex path_cache_mu_;
  mutable std::unordered_map<std::string, std::shared_ptr<const KeyPaths>>
      path_cache_;  // guarded by path_cache_mu_

  std::once_flag log_once_;
  std::unique_ptr<detail::LogWriter> log_;  // set once under log_once_, then constant
};

}  // namespace detail
}  // namespace lockdb
