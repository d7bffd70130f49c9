// Store calls for tools: keys by prefix, op names, and a key's lock held while another program
// edits its file (Store::with_key_locked).
#include <lockdb/file_lock.hpp>
#include <lockdb/store.hpp>

#include <algorithm>

#include "os.hpp"
#include "store_backend.hpp"
#include "store_format.hpp"
#include "store_impl.hpp"

namespace lockdb {

void check_op_name(std::string_view op) {
  const bool ok = !op.empty() && op.size() <= 32 && std::all_of(op.begin(), op.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || c == '_';
  });
  if (!ok) {
    throw Error(Errc::invalid_argument, "invalid op name \"" + std::string(op) + "\"", {},
                "use 1 to 32 of a-z and '_'");
  }
}

std::vector<std::string> Store::keys(std::string_view prefix) const {
  std::vector<std::string> all = keys();
  std::erase_if(all, [&](const std::string& key) { return !key.starts_with(prefix); });
  return all;
}

bool Store::with_key_locked(std::string_view key_view, LockMode mode,
                            const std::function<void()>& fn, std::string_view op) {
  const std::string key(key_view);
  check_op_name(op);
  if (backend_) {
    throw Error(Errc::invalid_argument,
                "key " + detail::store_format::quote_key(key) + ": with_key_locked",
                backend_->location(),
                "an etcd store has no key files to lock (EtcdLock is the lock across machines)");
  }
  const Impl::KeyPaths p = impl_->paths(key);
  if (auto s = os::mkdirs(std::filesystem::path(p.dir()), 0777, impl_->create_mode); !s.ok()) {
    os::throw_errno(impl_->context(key) + ": cannot create the key's directory",
                    std::string(p.dir()), s.err);
  }
  if (mode == LockMode::shared) {
    LockOptions lock_options;  // a lock file it creates gets the group's bits in a shared store
    if (impl_->create_mode.group_shared) lock_options.mode = impl_->create_mode.file_mode;
    FileLock lock(p.lock, lock_options);
    LockGuard hold;
    try {
      hold = lock.acquire_shared(impl_->options.lock_timeout);
    } catch (const Timeout& e) {
      throw Timeout(impl_->context(key), p.lock, impl_->options.lock_timeout, e.holder());
    }
    const Impl::Current before = impl_->read_current(p, /*with_version=*/false);
    fn();
    const Impl::Current after = impl_->read_current(p, /*with_version=*/false);
    return before.exists != after.exists || before.bytes != after.bytes;
  }

  detail::KeyLocks::Hold hold = impl_->lock_key(p);
  const Impl::Current before = impl_->read_current(p);
  Impl::LockFileDrop lock_file_drop{*impl_, p, !before.exists};
  // Logs what fn did to the file; false when it did nothing. Waits for the log lock up to
  // lock_timeout after fn: a Timeout then leaves fn's change in place, unlogged (verify() reports
  // it, repair() logs it), and says so.
  auto log_change = [&] {
    const Impl::Current after = impl_->read_current(p);
    lock_file_drop.absent = !after.exists;
    // Same version: the same value text (a final newline added or dropped is no change).
    if (before.exists == after.exists && before.version == after.version) return false;
    std::optional<std::string> prev;
    if (before.exists) prev = before.version;
    const auto deadline = impl_->deadline_from_now();
    try {
      if (!after.exists) {
        impl_->append_record(deadline, p, op, nullptr, prev, std::nullopt);
        return true;
      }
      const nlohmann::json value = impl_->parse(p, after);  // THROWS Error{corrupt}
      impl_->append_record(deadline, p, op, &value, prev, after.version, after.bytes);
    } catch (const Timeout& e) {
      throw Timeout(
          impl_->context(key) + ": the change is in place but not logged (repair() logs it)",
          e.path(), impl_->options.lock_timeout, e.holder());
    }
    return true;
  };
  try {
    fn();
  } catch (...) {
    log_change();
    throw;
  }
  return log_change();
}

}  // namespace lockdb
