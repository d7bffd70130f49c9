// A full disk at every size: a failed write leaves either the old value and no record, or the new
// value and its record, never a temp file, and the error says which. Run on a small tmpfs mounted
// in a mount namespace of the test process's own (needs root; skipped otherwise).
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store_format.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using lockdb::Store;
using lockdb::test::describe;
using lockdb::test::TempDir;
using nlohmann::json;

namespace {

constexpr std::size_t kPage = 4096;

// Why a private tmpfs cannot be had here (empty when it can): this process moves into a mount
// namespace of its own once, so that the mounts are invisible elsewhere and vanish with it.
std::string tmpfs_unavailable() {
  static const std::string why = []() -> std::string {
    if (::geteuid() != 0) return "not root: cannot mount a small tmpfs";
    if (::unshare(CLONE_NEWNS) != 0) return "cannot make a mount namespace (unshare)";
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      return "cannot make the mounts private";
    }
    return {};
  }();
  return why;
}

// A tmpfs of `bytes` at a fresh directory; unmounted on destruction.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(std::size_t bytes) {
    const std::string options = "size=" + std::to_string(bytes);
    REQUIRE(::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, options.c_str()) == 0);
  }
  ~SmallTmpfs() { ::umount2(dir_.path().c_str(), MNT_DETACH); }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  fs::path operator/(const std::string& name) const { return dir_ / name; }

  std::size_t free_pages() const {
    struct statvfs st {};
    REQUIRE(::statvfs(dir_.path().c_str(), &st) == 0);
    return st.f_bavail * st.f_frsize / kPage;
  }

  // Resizes a filler file so that exactly `pages` pages stay free.
  void leave_free(std::size_t pages) {
    const fs::path filler = dir_ / "filler";
    const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    const std::string page(kPage, 'f');
    while (::write(fd, page.data(), page.size()) == static_cast<ssize_t>(page.size())) {
    }
    const off_t size = ::lseek(fd, 0, SEEK_END);
    REQUIRE(size >= static_cast<off_t>(pages * kPage));
    REQUIRE(::ftruncate(fd, size - static_cast<off_t>(pages * kPage)) == 0);
    ::close(fd);
    REQUIRE(free_pages() == pages);
  }
  void remove_filler() { fs::remove(dir_ / "filler"); }

 private:
  TempDir dir_;
};

std::vector<lockdb::Record> records_of(const Store& store, const std::string& key) {
  lockdb::Query q;
  q.key = key;
  return lockdb::History(store.dir()).records(q);
}

std::vector<fs::path> temp_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (lockdb::detail::store_format::temp_owner(name) || name.ends_with(".tmp")) {
      out.push_back(e.path());
    }
  }
  return out;
}

// A key as the store and its log see it.
struct KeyState {
  std::optional<json> value;
  std::size_t records = 0;
  std::optional<json> last_logged;  // the last record's value (nullopt: absent or no record)
};

KeyState state_of(const Store& store, const std::string& key) {
  KeyState s;
  s.value = store.get(key);
  auto records = records_of(store, key);
  s.records = records.size();
  if (!records.empty()) s.last_logged = records.back().value;
  return s;
}

// One write to try at every free-space size. `attempt(store, i)` makes the i-th write (values
// grow with i, so the log's tail lands at every offset in its page); `keys` are the keys it
// changes and `expected(i)` their values afterwards (nullopt: erased).
struct Operation {
  std::string name;
  lockdb::StoreOptions options;
  std::function<void(Store&)> setup;
  std::function<void(Store&, int)> attempt;
  std::vector<std::string> keys;
  std::function<std::optional<json>(const std::string& key, int i)> expected;
  int writes = 12;
};

std::string grown(char c, int i) { return std::string(static_cast<std::size_t>(i) * 700, c); }

std::vector<Operation> operations() {
  std::vector<Operation> ops;
  ops.push_back({"put",
                 {},
                 [](Store& s) { s.put("k", "start"); },
                 [](Store& s, int i) { s.put("k", grown('p', i)); },
                 {"k"},
                 [](const std::string&, int i) { return json(grown('p', i)); }});
  ops.push_back({"update",
                 {},
                 [](Store& s) { s.put("k", json::object()); },
                 [](Store& s, int i) {
                   s.update("k", [i](json& v) { v = json{{"grown", grown('u', i)}}; });
                 },
                 {"k"},
                 [](const std::string&, int i) {
                   return json{{"grown", grown('u', i)}};
                 }});
  // The key file is held open by a reader, as when a reader is in the middle of reading it: its
  // old content keeps its page until closed.
  ops.push_back({"increment",
                 {},
                 [](Store& s) { s.put("n", 0); },
                 [](Store& s, int i) {
                   const int fd = ::open(s.file_path("n").c_str(), O_RDONLY);
                   REQUIRE(fd >= 0);
                   std::optional<lockdb::Error> failed;
                   try {
                     const std::int64_t now = s.increment("n", 1);
                     REQUIRE(now == i);
                   } catch (const lockdb::Error& e) {
                     failed = e;
                   }
                   ::close(fd);
                   if (failed) throw *failed;
                 },
                 {"n"},
                 [](const std::string&, int i) { return json(i); },
                 // Small records: enough of them that the log's end crosses pages.
                 60});
  ops.push_back({"erase",
                 {},
                 [](Store& s) {
                   for (int i = 1; i <= 12; ++i) s.put("e" + std::to_string(i), grown('e', i));
                 },
                 [](Store& s, int i) {
                   const bool erased = s.erase("e" + std::to_string(i));
                   REQUIRE(erased);
                 },
                 {"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e10", "e11", "e12"},
                 [](const std::string& key, int i) -> std::optional<json> {
                   const int n = std::stoi(key.substr(1));
                   if (n <= i) return std::nullopt;
                   return json(grown('e', n));
                 }});
  ops.push_back({"update_many",
                 {},
                 [](Store& s) {
                   s.put("a", 0);
                   s.put("b", 0);
                   s.put("c", 0);
                 },
                 [](Store& s, int i) {
                   s.update_many({"a", "b", "c"}, [i](std::map<std::string, json>& m) {
                     m["a"] = grown('a', i);
                     m["b"] = i;
                     if (i % 2 == 1) {
                       m.erase("c");
                     } else {
                       m["c"] = grown('c', i);
                     }
                   });
                 },
                 {"a", "b", "c"},
                 [](const std::string& key, int i) -> std::optional<json> {
                   if (key == "a") return json(grown('a', i));
                   if (key == "b") return json(i);
                   if (i % 2 == 1) return std::nullopt;
                   return json(grown('c', i));
                 }});
  // Small segments: most appends start a new segment (a new file and its header).
  lockdb::StoreOptions small_segments;
  small_segments.log_segment_bytes = 512;
  ops.push_back(
      {"put with log rotation",
       small_segments,
       [](Store& s) { s.put("r", 0); },
       [](Store& s, int i) { s.put("r", std::string(static_cast<std::size_t>(i) * 90, 'r')); },
       {"r"},
       [](const std::string&, int i) {
         return json(std::string(static_cast<std::size_t>(i) * 90, 'r'));
       }});
  return ops;
}

// Each key either kept its value and got no record, or has the new value and its record.
// Returns whether every key changed.
bool check_outcome(const Store& store, const Operation& op, int i,
                   const std::map<std::string, KeyState>& before) {
  bool all_changed = true;
  for (const auto& key : op.keys) {
    INFO("key " << key);
    const KeyState& was = before.at(key);
    const KeyState now = state_of(store, key);
    const std::optional<json> want = op.expected(key, i);
    if (want == was.value) {  // not changed by this write
      REQUIRE(now.value == was.value);
      REQUIRE(now.records == was.records);
      continue;
    }
    if (now.value == was.value && now.records == was.records) {
      all_changed = false;
      continue;
    }
    REQUIRE(now.value == want);
    REQUIRE(now.records == was.records + 1);
    REQUIRE(now.last_logged == want);
  }
  return all_changed;
}

void sweep(const Operation& op, std::size_t max_free_pages) {
  if (std::string why = tmpfs_unavailable(); !why.empty()) {
    WARN("skipped: " << why);
    return;
  }
  std::size_t failures = 0;
  for (std::size_t pages = 0; pages <= max_free_pages; ++pages) {
    SmallTmpfs tmpfs(512 * 1024);
    Store store(tmpfs / "db", op.options);
    op.setup(store);
    for (int i = 1; i <= op.writes; ++i) {
      INFO(op.name << ", " << pages << " free page(s), write " << i);
      std::map<std::string, KeyState> before;
      for (const auto& key : op.keys) before[key] = state_of(store, key);
      tmpfs.leave_free(pages);
      std::string what;
      bool failed = false;
      try {
        op.attempt(store, i);
      } catch (const lockdb::Error& e) {
        failed = true;
        what = e.what();
        ++failures;
      }
      tmpfs.remove_filler();
      INFO("error: " << what);
      const bool all_changed = check_outcome(store, op, i, before);
      REQUIRE(all_changed == !failed);
      if (failed) {
        // The error says what is in place.
        REQUIRE_THAT(what, Catch::Contains("old value is in place") ||
                               Catch::Contains("every key is as before") ||
                               Catch::Contains("old values are in place") ||
                               Catch::Contains("the others were taken back"));
      }
      REQUIRE(temp_files(store.dir()).empty());
      auto findings = store.verify();
      INFO(describe(findings));
      REQUIRE(findings.empty());
      if (failed) {  // with room again, the same write succeeds
        for (const auto& key : op.keys) before[key] = state_of(store, key);
        op.attempt(store, i);
        REQUIRE(check_outcome(store, op, i, before));
        REQUIRE(store.verify().empty());
      }
    }
  }
  REQUIRE(failures > 0);  // the sweep did reach a full disk
}

}  // namespace

TEST_CASE("a full disk at every size: put leaves the old value unlogged or the new one logged",
          "[full_disk]") {
  sweep(operations()[0], 6);
}

TEST_CASE("a full disk at every size: update", "[full_disk]") { sweep(operations()[1], 6); }

TEST_CASE("a full disk at every size: increment while a reader holds the old file open",
          "[full_disk]") {
  sweep(operations()[2], 3);
}

TEST_CASE("a full disk at every size: erase", "[full_disk]") { sweep(operations()[3], 3); }

TEST_CASE("a full disk at every size: update_many", "[full_disk]") { sweep(operations()[4], 8); }

TEST_CASE("a full disk at every size: log rotation", "[full_disk]") { sweep(operations()[5], 4); }
