// Links and special files planted inside a store (and at lock paths): nothing outside the store
// is ever created, written, truncated, chmodded or renamed over, and the store fails with
// Error{invalid_argument} naming the planted path; verify() reports each plant.
#include <catch2/catch.hpp>

#include <lockdb/lockdb.hpp>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log_format.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using lockdb::Errc;
using lockdb::Store;
using nlohmann::json;

namespace {

// What a directory outside the store holds: every entry's type, size, mode and content.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st {};
    REQUIRE(::lstat(e.path().c_str(), &st) == 0);
    std::string what = std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
                       std::to_string(st.st_nlink);
    if (S_ISREG(st.st_mode)) what += " " + lockdb::test::read_text(e.path());
    out[e.path().lexically_relative(dir).string()] = what;
  }
  return out;
}

struct Outcome {
  bool threw = false;
  Errc code = Errc::io;
  std::string what;
};

Outcome run(const std::function<void()>& fn) {
  Outcome o;
  try {
    fn();
  } catch (const lockdb::Error& e) {
    o.threw = true;
    o.code = e.code();
    o.what = e.what();
  }
  return o;
}

// A store with one key "k" (file, lock file, one log segment) next to an outside directory
// holding a precious file (0600) and an empty directory.
struct Fixture {
  lockdb::test::TempDir tmp;
  fs::path db = tmp / "db";
  fs::path outside = tmp / "outside";
  fs::path victim = outside / "victim";
  fs::path victim_dir = outside / "victim_dir";
  fs::path missing = outside / "created";  // must never come to exist
  fs::path key_file, lock_file, shard, segment, log_lock, marker;

  Fixture() {
    {
      Store store(db);
      store.put("k", json{{"v", 1}});
      key_file = store.file_path("k");
    }
    lock_file = key_file.string() + ".lock";
    shard = key_file.parent_path();
    log_lock = db / "log" / "log.lock";
    marker = db / "lockdb-store.json";
    for (const auto& e : fs::directory_iterator(db / "log")) {
      if (lockdb::detail::log_format::parse_segment_name(e.path().filename().string())) {
        segment = e.path();
      }
    }
    REQUIRE(fs::is_regular_file(key_file));
    REQUIRE(fs::is_regular_file(lock_file));
    REQUIRE(fs::is_regular_file(log_lock));
    REQUIRE(fs::is_regular_file(segment));
    fs::create_directories(victim_dir);
    lockdb::test::write_text(victim, "\"precious\"");
    fs::permissions(victim, fs::perms::owner_read | fs::perms::owner_write);
  }

  // Replaces `at` (a file or a directory) with a symbolic link to `target`.
  void plant_symlink(const fs::path& at, const fs::path& target) {
    fs::remove_all(at);
    fs::create_symlink(target, at);
  }
  void plant_hard_link(const fs::path& at) {
    fs::remove_all(at);
    fs::create_hard_link(victim, at);
  }
  void plant_fifo(const fs::path& at) {
    fs::remove_all(at);
    REQUIRE(::mkfifo(at.c_str(), 0666) == 0);
  }
};

// Every store operation, each on a fresh Store: each either succeeds or fails with
// Error{invalid_argument} naming `planted`; returns the put's outcome.
Outcome exercise(const fs::path& db, const fs::path& planted) {
  std::vector<std::pair<const char*, std::function<void(Store&)>>> ops = {
      {"put",
       [](Store& s) {
         (void)s.put("k", json{{"v", 2}});
       }},
      {"get", [](Store& s) { (void)s.get("k"); }},
      {"contains", [](Store& s) { (void)s.contains("k"); }},
      {"increment", [](Store& s) { (void)s.increment("n", 1); }},
      {"update", [](Store& s) { (void)s.update("k", [](json& v) { v["u"] = 1; }); }},
      {"cas", [](Store& s) { (void)s.compare_and_put("k", std::nullopt, 3); }},
      {"update_many",
       [](Store& s) {
         (void)s.update_many({"k", "m"}, [](std::map<std::string, json>& m) { m["m"] = 1; });
       }},
      {"erase", [](Store& s) { (void)s.erase("k"); }},
      {"keys", [](Store& s) { (void)s.keys(); }},
      {"lock_files", [](Store& s) { (void)s.lock_files(); }},
  };
  Outcome put;
  for (const auto& [name, op] : ops) {
    INFO("operation " << name);
    Outcome o = run([&] {
      Store store(db);
      op(store);
    });
    if (o.threw) {
      INFO(o.what);
      REQUIRE(o.code == Errc::invalid_argument);
      REQUIRE_THAT(o.what, Catch::Contains(planted.string() + ": "));
    }
    if (std::string(name) == "put") put = o;
  }
  return put;
}

// verify() on a fresh Store reports `planted` as a planted_file.
void require_reported(const fs::path& db, const fs::path& planted) {
  Store store(db);
  auto findings = store.verify();
  bool found = false;
  for (const auto& f : findings) {
    found |= f.kind == lockdb::Finding::Kind::planted_file && f.path == planted;
  }
  INFO("planted: " << planted);
  for (const auto& f : findings) INFO(lockdb::finding_kind_name(f.kind) << " " << f.path);
  REQUIRE(found);
}

}  // namespace

TEST_CASE("a symbolic link planted anywhere in a store leads nothing outside it", "[hostile]") {
  Fixture fx;
  const auto before = snapshot(fx.outside);
  auto check = [&](const fs::path& at, bool store_opens) {
    INFO("planted at " << at);
    if (!store_opens) {
      Outcome o = run([&] { Store store(fx.db); });
      INFO(o.what);
      REQUIRE(o.threw);
      REQUIRE(o.code == Errc::invalid_argument);
      REQUIRE_THAT(o.what, Catch::Contains(at.string() + ": it is a symbolic link"));
    } else {
      Outcome put = exercise(fx.db, at);
      INFO(put.what);
      REQUIRE(put.threw);
      REQUIRE_THAT(put.what, Catch::Contains(at.string() + ": it is a symbolic link"));
      require_reported(fx.db, at);
    }
    REQUIRE(snapshot(fx.outside) == before);
    REQUIRE_FALSE(fs::exists(fx.missing));
  };
  SECTION("keys/") {
    fx.plant_symlink(fx.db / "keys", fx.victim_dir);
    check(fx.db / "keys", false);
  }
  SECTION("a shard directory") {
    fx.plant_symlink(fx.shard, fx.victim_dir);
    check(fx.shard, true);
  }
  SECTION("a key file") {
    fx.plant_symlink(fx.key_file, fx.victim);
    check(fx.key_file, true);
  }
  SECTION("a key file, dangling") {
    fx.plant_symlink(fx.key_file, fx.missing);
    check(fx.key_file, true);
  }
  SECTION("a key's lock file") {
    fx.plant_symlink(fx.lock_file, fx.victim);
    check(fx.lock_file, true);
  }
  SECTION("a key's lock file, dangling") {
    fx.plant_symlink(fx.lock_file, fx.missing);
    check(fx.lock_file, true);
  }
  SECTION("log/") {
    fx.plant_symlink(fx.db / "log", fx.victim_dir);
    check(fx.db / "log", false);
  }
  SECTION("log/log.lock") {
    fx.plant_symlink(fx.log_lock, fx.victim);
    check(fx.log_lock, true);
  }
  SECTION("log/log.lock, dangling") {
    fx.plant_symlink(fx.log_lock, fx.missing);
    check(fx.log_lock, true);
  }
  SECTION("a log segment") {
    fx.plant_symlink(fx.segment, fx.victim);
    check(fx.segment, true);
  }
  SECTION("the store marker") {
    fs::copy_file(fx.marker, fx.outside / "marker");
    fx.plant_symlink(fx.marker, fx.outside / "marker");
    const auto with_marker = snapshot(fx.outside);
    Outcome o = run([&] { Store store(fx.db); });
    INFO(o.what);
    REQUIRE(o.code == Errc::invalid_argument);
    REQUIRE_THAT(o.what, Catch::Contains(fx.marker.string() + ": it is a symbolic link"));
    REQUIRE(snapshot(fx.outside) == with_marker);
  }
}

TEST_CASE("History compaction refuses a symlinked log directory, writing nothing outside",
          "[hostile]") {
  Fixture fx;
  {
    Store store(fx.db);
    store.put("k", json{{"v", 2}});
    store.put("k", json{{"v", 3}});  // two records compaction would drop
  }
  const fs::path moved = fx.outside / "log";
  fs::rename(fx.db / "log", moved);
  fs::create_symlink(moved, fx.db / "log");
  const auto before = snapshot(fx.outside);
  for (int which = 0; which < 2; ++which) {
    Outcome o = run([&] {
      if (which == 0) {
        (void)lockdb::compact_history_keep_last(fx.db, 1);
      } else {
        (void)lockdb::compact_history_before(fx.db, std::chrono::system_clock::now());
      }
    });
    INFO(o.what);
    REQUIRE(o.threw);
    REQUIRE(o.code == Errc::invalid_argument);
    REQUIRE_THAT(o.what, Catch::Contains((fx.db / "log").string() +
                                         ": it is a symbolic link (refused, not followed)"));
    REQUIRE(snapshot(fx.outside) == before);
  }
  // The same log in its place compacts.
  fs::remove(fx.db / "log");
  fs::rename(moved, fx.db / "log");
  REQUIRE(lockdb::compact_history_keep_last(fx.db, 1) == 2);
}

TEST_CASE("a link planted at a sealed log segment is refused by readers and compaction",
          "[hostile]") {
  lockdb::test::TempDir tmp;
  const fs::path db = tmp / "db";
  const fs::path outside = tmp / "outside";
  fs::create_directories(outside);
  lockdb::StoreOptions options;
  options.log_segment_bytes = 300;  // a segment per record or two
  {
    Store store(db, options);
    for (int i = 0; i < 6; ++i) store.put("k", json{{"v", i}});
  }
  std::vector<fs::path> segments;
  for (const auto& e : fs::directory_iterator(db / "log")) {
    if (lockdb::detail::log_format::parse_segment_name(e.path().filename().string())) {
      segments.push_back(e.path());
    }
  }
  std::sort(segments.begin(), segments.end());
  REQUIRE(segments.size() >= 3);
  for (const bool hard : {false, true}) {
    INFO((hard ? "hard link" : "symbolic link") << " at " << segments[1]);
    const fs::path victim = outside / (hard ? "hard" : "soft");
    fs::copy_file(segments[1], victim);
    fs::remove(segments[1]);
    if (hard) {
      fs::create_hard_link(victim, segments[1]);
    } else {
      fs::create_symlink(victim, segments[1]);
    }
    const auto before = snapshot(outside);
    const std::string victim_text = lockdb::test::read_text(victim);
    const auto victim_perms = fs::status(victim).permissions();
    const std::string problem = hard ? ": it has 2 hard links" : ": it is a symbolic link";
    require_reported(db, segments[1]);
    // Writers append to the newest segment only: they go on.
    Store(db, options).put("w", 1);
    if (!hard) {  // a reader never follows it
      Outcome o = run([&] { (void)lockdb::History(db).records(); });
      INFO(o.what);
      REQUIRE(o.code == Errc::invalid_argument);
      REQUIRE_THAT(o.what, Catch::Contains(segments[1].string() + problem));
    }
    Outcome o = run([&] { (void)lockdb::compact_history_keep_last(db, 1); });
    INFO(o.what);
    // A symbolic link is refused; a hard-linked sealed segment is only read, then unlinked.
    REQUIRE(o.threw == !hard);
    if (o.threw) {
      REQUIRE(o.code == Errc::invalid_argument);
      REQUIRE_THAT(o.what, Catch::Contains(segments[1].string() + problem));
    }
    if (hard) {  // compaction may remove the store's name of it: only the link count changes
      REQUIRE(lockdb::test::read_text(victim) == victim_text);
      REQUIRE(fs::status(victim).permissions() == victim_perms);
    } else {
      REQUIRE(snapshot(outside) == before);
    }
    if (fs::is_symlink(segments[1]) || fs::exists(segments[1])) {
      fs::remove(segments[1]);
      fs::copy_file(victim, segments[1]);
    }
    fs::remove(victim);
  }
}

TEST_CASE("a hard link planted in a store is never written through", "[hostile]") {
  Fixture fx;
  const auto before_plant = snapshot(fx.outside);
  auto victim_unchanged = [&] {
    auto now = snapshot(fx.outside);
    // The plant adds a name: only the link count may differ from before.
    REQUIRE(now.size() == before_plant.size());
    REQUIRE(lockdb::test::read_text(fx.victim) == "\"precious\"");
    REQUIRE((fs::status(fx.victim).permissions() & fs::perms::all) ==
            (fs::perms::owner_read | fs::perms::owner_write));
    REQUIRE(fs::file_size(fx.victim) == 10);
  };
  SECTION("log.lock is refused") {
    fx.plant_hard_link(fx.log_lock);
    Outcome put = exercise(fx.db, fx.log_lock);
    INFO(put.what);
    REQUIRE(put.threw);
    REQUIRE_THAT(put.what, Catch::Contains(fx.log_lock.string() + ": it has 2 hard links"));
    require_reported(fx.db, fx.log_lock);
    victim_unchanged();
  }
  SECTION("a log segment is refused") {
    fx.plant_hard_link(fx.segment);
    Outcome put = exercise(fx.db, fx.segment);
    INFO(put.what);
    REQUIRE(put.threw);
    REQUIRE_THAT(put.what, Catch::Contains(fx.segment.string() + ": it has 2 hard links"));
    require_reported(fx.db, fx.segment);
    victim_unchanged();
  }
  SECTION("the store marker is refused") {
    fs::remove(fx.victim);
    fs::copy_file(fx.marker, fx.victim);
    fs::remove(fx.marker);
    fs::create_hard_link(fx.victim, fx.marker);
    const std::string text = lockdb::test::read_text(fx.victim);
    Outcome o = run([&] { Store store(fx.db); });
    INFO(o.what);
    REQUIRE(o.code == Errc::invalid_argument);
    REQUIRE_THAT(o.what, Catch::Contains(fx.marker.string() + ": it has 2 hard links"));
    REQUIRE(lockdb::test::read_text(fx.victim) == text);
  }
  SECTION("a key file is replaced, not written through") {
    fx.plant_hard_link(fx.key_file);
    require_reported(fx.db, fx.key_file);
    Store store(fx.db);
    store.put("k", json{{"v", 2}});
    REQUIRE(store.get("k") == json{{"v", 2}});
    (void)store.erase("k");
    victim_unchanged();
  }
  SECTION("a key's lock file is only locked, never chmodded or written") {
    fx.plant_hard_link(fx.lock_file);
    require_reported(fx.db, fx.lock_file);
    Store store(fx.db);
    store.put("k", json{{"v", 2}});
    victim_unchanged();
  }
}

TEST_CASE("a FIFO planted in a store never blocks and is refused", "[hostile]") {
  Fixture fx;
  for (const char* which : {"key file", "lock file", "log.lock", "segment"}) {
    Fixture f;
    const std::string w = which;
    const fs::path at = w == "key file"    ? f.key_file
                        : w == "lock file" ? f.lock_file
                        : w == "log.lock"  ? f.log_lock
                                           : f.segment;
    INFO("FIFO at " << at);
    f.plant_fifo(at);
    Outcome put = exercise(f.db, at);
    INFO(put.what);
    REQUIRE(put.threw);
    REQUIRE_THAT(put.what,
                 Catch::Contains(at.string() + ": it is not a regular file (it is a FIFO)"));
    require_reported(f.db, at);
  }
}

TEST_CASE("a FIFO planted at a store's boot-id never blocks opening, the recovery replaces it",
          "[hostile]") {
  Fixture fx;
  const fs::path boot = fx.db / "boot-id";
  REQUIRE(fs::is_regular_file(boot));
  const std::string recorded = lockdb::test::read_text(boot);
  fx.plant_fifo(boot);
  {
    Store store(fx.db);  // blocked forever on the FIFO if it were opened for reading
    REQUIRE(store.get("k") == json{{"v", 1}});
  }
  REQUIRE(fs::is_regular_file(boot));
  REQUIRE(lockdb::test::read_text(boot) == recorded);
}

TEST_CASE("a file planted where a store keeps a directory is refused", "[hostile]") {
  Fixture fx;
  lockdb::test::write_text(fx.outside / "x", "1");
  fx.plant_hard_link(fx.shard);  // a regular file where the shard directory was
  Outcome put = exercise(fx.db, fx.shard);
  INFO(put.what);
  REQUIRE(put.threw);
  REQUIRE_THAT(put.what, Catch::Contains(fx.shard.string() + ": it is not a directory"));
}

TEST_CASE("FileLock with a mode never changes a file it did not create", "[hostile]") {
  lockdb::test::TempDir tmp;
  const fs::path victim = tmp / "victim";
  lockdb::test::write_text(victim, "secret");
  fs::permissions(victim, fs::perms::owner_read | fs::perms::owner_write);
  fs::create_hard_link(victim, tmp / "a.lock");
  {
    lockdb::FileLock lock(tmp / "a.lock", {.mode = 0666});
    auto guard = lock.acquire();
    REQUIRE(lock.is_locked());
  }
  REQUIRE((fs::status(victim).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));
  REQUIRE(lockdb::test::read_text(victim) == "secret");

  // A lock file it creates gets the mode, whatever the umask.
  const mode_t mask = ::umask(077);
  {
    lockdb::FileLock lock(tmp / "b.lock", {.mode = 0644});
    auto guard = lock.acquire();
  }
  ::umask(mask);
  REQUIRE((fs::status(tmp / "b.lock").permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
           fs::perms::others_read));
}

namespace {

// fs.protected_symlinks set to `value` while this lives (root only; the old value comes back).
class ProtectedSymlinks {
 public:
  explicit ProtectedSymlinks(const std::string& value) {
    std::ifstream in(kPath);
    std::getline(in, old_);
    std::ofstream out(kPath);
    out << value << "\n";
    out.flush();
    ok_ = static_cast<bool>(out);
  }
  ~ProtectedSymlinks() {
    if (ok_ && !old_.empty()) {
      std::ofstream out(kPath);
      out << old_ << "\n";
    }
  }
  bool ok() const { return ok_; }

 private:
  static constexpr const char* kPath = "/proc/sys/fs/protected_symlinks";
  std::string old_;
  bool ok_ = false;
};

}  // namespace

TEST_CASE("a symlink planted by another user in a sticky directory gives the symlink error",
          "[hostile]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root (to plant a link owned by another user)");
    return;
  }
  ProtectedSymlinks protect("1");
  if (!protect.ok()) {
    WARN("skipped: cannot set fs.protected_symlinks");
    return;
  }
  // A world-writable sticky directory (as /tmp), reachable by everyone.
  const fs::path sticky = fs::path("/tmp") / ("lockdb-sticky-" + std::to_string(::getpid()));
  fs::remove_all(sticky);
  REQUIRE(::mkdir(sticky.c_str(), 01777) == 0);
  REQUIRE(::chmod(sticky.c_str(), 01777) == 0);
  struct Remove {
    fs::path p;
    ~Remove() { fs::remove_all(p); }
  } remove{sticky};
  const fs::path link = sticky / "x.lock";
  fs::create_symlink(sticky / "target", link);
  REQUIRE(::lchown(link.c_str(), 1, 1) == 0);  // owned by uid 1 (daemon), not by the locker
  const fs::path singleton_link = sticky / "x.singleton.lock";  // SingletonGuard("x", sticky)
  fs::create_symlink(sticky / "target", singleton_link);
  REQUIRE(::lchown(singleton_link.c_str(), 1, 1) == 0);

  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // as nobody: neither the link's owner nor the directory's
    ::close(fds[0]);
    std::string report = "no error";
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      report = "setuid failed";
    } else {
      for (int which = 0; which < 3; ++which) {
        try {
          if (which == 0) {
            lockdb::FileLock lock(link);
            (void)lock.acquire(std::chrono::seconds(0));
          } else if (which == 1) {
            lockdb::locked_write(sticky / "x", "data");  // its lock is sticky/x.lock
          } else {
            lockdb::SingletonGuard guard("x", sticky);
            (void)guard.acquire();
          }
          report = "no error";
        } catch (const lockdb::Error& e) {
          report = std::string(lockdb::errc_name(e.code())) + "|" + e.what();
        }
        report += "\n";
        (void)!::write(fds[1], report.data(), report.size());
      }
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
    got.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  const std::string expected = "invalid_argument|cannot open lock file: " + link.string() +
                               ": it is a symbolic link (refused, not followed)\n";
  INFO(got);
  REQUIRE(got.substr(0, 2 * expected.size()) == expected + expected);
  REQUIRE_THAT(got.substr(2 * expected.size()),
               Catch::StartsWith("invalid_argument|") &&
                   Catch::Contains(singleton_link.string() +
                                   ": it is a symbolic link (refused, not followed)\n"));
  REQUIRE_FALSE(fs::exists(sticky / "target"));
  REQUIRE_FALSE(fs::exists(sticky / "x"));
}

TEST_CASE("the files helpers: an append follows a symlinked data path, a replace replaces the link",
          "[hostile]") {
  lockdb::test::TempDir tmp;
  const fs::path target = tmp / "target.json";
  const fs::path link = tmp / "link.json";
  lockdb::test::write_text(target, "{\"a\": 1}\n");
  fs::create_symlink(target, link);

  lockdb::locked_append(link, "line");
  REQUIRE(fs::is_symlink(link));
  REQUIRE(lockdb::test::read_text(target) == "{\"a\": 1}\nline\n");

  lockdb::test::write_text(target, "{\"a\": 1}");
  (void)lockdb::atomic_json_update(link, [](json& d) { d["a"] = 2; });
  REQUIRE_FALSE(fs::is_symlink(link));
  REQUIRE(json::parse(lockdb::test::read_text(link)) == json{{"a", 2}});
  REQUIRE(lockdb::test::read_text(target) == "{\"a\": 1}");

  fs::remove(link);
  fs::create_symlink(target, link);
  lockdb::atomic_write(link, "3");
  REQUIRE_FALSE(fs::is_symlink(link));
  REQUIRE(lockdb::test::read_text(link) == "3");
  REQUIRE(lockdb::test::read_text(target) == "{\"a\": 1}");

  fs::remove(link);
  fs::create_symlink(target, link);
  lockdb::locked_write(link, "4");  // an atomic replace under the lock, as atomic_write
  REQUIRE_FALSE(fs::is_symlink(link));
  REQUIRE(lockdb::test::read_text(target) == "{\"a\": 1}");
}
