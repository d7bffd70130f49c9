// rebuild_store: a store made from the log alone.
//
// Reads every record (a reader's snapshot: records appended after it started may be missing),
// keeps each key's last logged value, and puts the live keys, sorted, into a new store through
// Store itself, so the new store's key files, versions and log are exactly what Store writes
// (its log starts with one "put" per key), in the newest store format. It sits above both Store
// and History.
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <map>

#include "os.hpp"
#include "store_format.hpp"

namespace lockdb {

void rebuild_store(const std::filesystem::path& store, const std::filesystem::path& target_dir) {
  const History history(store);
  const auto marker = target_dir / detail::store_format::kMarkerFile;
  if (auto st = os::stat(marker); st.ok()) {
    throw Error(Errc::invalid_argument, "cannot rebuild into", target_dir,
                "it already holds a store");
  } else if (st.err != ENOENT && st.err != ENOTDIR) {
    os::throw_errno("cannot rebuild into", marker, st.err);
  }
  std::map<std::string, std::optional<nlohmann::json>> last;
  history.for_each({}, [&](const Record& r) {
    last[r.key] = r.value;
    return true;
  });
  // A group-shared store (setgid, group-writable root) rebuilds into a group-shared one.
  StoreOptions options;
  if (auto st = os::stat(store); st.ok()) {
    options.shared_group = os::create_mode_of_root(st.value.mode).group_shared;
  }
  Store target(target_dir, options);
  for (const auto& [key, value] : last) {
    if (value) target.put(key, *value);
  }
}

}  // namespace lockdb
