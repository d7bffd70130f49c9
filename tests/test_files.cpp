#include <lockdb/file_lock.hpp>
#include <lockdb/files.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os.hpp"
#include "replace.hpp"
#include "seed_python.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using lockdb::test::Child;
using lockdb::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::vector<std::unique_ptr<Child>> start(int n, const std::vector<std::string>& argv) {
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < n; ++i) kids.push_back(std::make_unique<Child>(argv));
  return kids;
}

// Waits for every child's READY, then releases them all at once.
void start_together(std::vector<std::unique_ptr<Child>>& kids) {
  for (auto& k : kids) REQUIRE(k->expect_line("READY"));
  for (auto& k : kids) k->write_line("go");
}

void finish(std::vector<std::unique_ptr<Child>>& kids) {
  for (auto& k : kids) {
    REQUIRE(k->expect_line("DONE"));
    REQUIRE(k->wait() == 0);
  }
}

json read_json(const fs::path& p) { return json::parse(lockdb::test::read_text(p)); }

// Every entry of `dir` by name.
std::set<std::string> listing(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// Same rule as version_text() in helper_files.cpp.
std::string version_text(long k) {
  const auto len = static_cast<std::size_t>(40000 + (k * 7919) % 40000);
  return std::to_string(k) + "\n" + std::string(len, static_cast<char>('a' + k % 26)) + "\nend " +
         std::to_string(k) + "\n";
}

Child hold_lock(const fs::path& lock, const std::string& kind = "hard", bool shared = false) {
  std::vector<std::string> argv{lockdb::test::helper_path(), "hold", kind, lock.string()};
  if (shared) argv.push_back("shared");
  return Child(argv);
}

void json_increments(int procs, int per_proc) {
  TempDir dir;
  const auto path = dir / "counter.json";
  auto kids = start(
      procs, {lockdb::test::helper_path(), "json-incr", path.string(), std::to_string(per_proc)});
  start_together(kids);
  finish(kids);
  REQUIRE(read_json(path) == json{{"total", procs * per_proc}});
  REQUIRE(listing(dir.path()) == std::set<std::string>{"counter.json", "counter.json.lock"});
}

// A fresh directory on a filesystem where the helpers swap files in with power_loss_unsafe
// (detail::swap_in_pays: ext4, btrfs), under the first of the temp directory, /var/tmp, /tmp and
// the working directory that is on one; null when none is (`tried` lists them then).
std::unique_ptr<TempDir> swapping_temp_dir(std::string& tried) {
  for (const fs::path& base :
       {fs::temp_directory_path(), fs::path("/var/tmp"), fs::path("/tmp"), fs::current_path()}) {
    if (lockdb::detail::swap_in_pays(lockdb::os::fs_magic(base)) &&
        ::access(base.c_str(), W_OK) == 0) {
      return std::make_unique<TempDir>(base);
    }
    tried += (tried.empty() ? "" : ", ") + base.string();
  }
  return nullptr;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Concurrency across processes

TEST_CASE("4 processes x 500 atomic_json_update increments give exactly 2000", "[files][stress]") {
  json_increments(4, 500 / LOCKDB_STRESS_DIVISOR);
}

TEST_CASE("16 processes x 150 atomic_json_update increments give exactly 2400", "[files][stress]") {
  json_increments(16, 150 / LOCKDB_STRESS_DIVISOR);
}

TEST_CASE("the seed's Python atomic_json_update and the C++ one, at once, give the exact total",
          "[files][python]") {
  const std::string py = lockdb::test::python_with_filelock();
  if (py.empty()) {
    WARN("skipped: no python3 with the filelock module (Debian: python3-filelock)");
    return;
  }
  // The seed's atomic_json_update, verbatim, driven by a small loop.
  const std::string script = std::string(lockdb::test::kSeedAtomicJsonUpdate) + R"PY(
def bump(data):
    data["total"] = data.get("total", 0) + 1
    data["py"] = data.get("py", 0) + 1
    return data

print("READY", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[2])):
    atomic_json_update(sys.argv[1], bump, lock_timeout=120.0)
print("DONE", flush=True)
)PY";
  TempDir dir;
  const auto path = dir / "shared.json";
  const int py_procs = 2, py_n = 150, cpp_procs = 3, cpp_n = 800;
  auto kids = start(py_procs, {py, "-c", script, path.string(), std::to_string(py_n)});
  auto cpp = start(cpp_procs, {lockdb::test::helper_path(), "json-incr", path.string(),
                               std::to_string(cpp_n), "cpp"});
  for (auto& c : cpp) kids.push_back(std::move(c));
  start_together(kids);
  finish(kids);
  const json want = {{"total", py_procs * py_n + cpp_procs * cpp_n},
                     {"py", py_procs * py_n},
                     {"cpp", cpp_procs * cpp_n}};
  REQUIRE(read_json(path) == want);
}

TEST_CASE("threads of one process share atomic_json_update exactly", "[files]") {
  TempDir dir;
  const auto path = dir / "t.json";
  const int threads = 4, per_thread = 200;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        lockdb::atomic_json_update(path, [](json& doc) { doc["n"] = doc.value("n", 0) + 1; });
      }
    });
  }
  for (auto& t : pool) t.join();
  REQUIRE(read_json(path) == json{{"n", threads * per_thread}});
}

TEST_CASE("a forked child and its parent share atomic_json_update exactly", "[files]") {
  TempDir dir;
  const auto path = dir / "fork.json";
  auto bump = [](json& doc) { doc["n"] = doc.value("n", 0) + 1; };
  lockdb::atomic_json_update(path, bump);  // the parent's lock file is open (cached) now
  int go[2];
  REQUIRE(::pipe(go) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    char c;
    int code = ::read(go[0], &c, 1) == 1 ? 0 : 2;
    try {
      for (int i = 0; i < 300; ++i) lockdb::atomic_json_update(path, bump);
    } catch (...) {
      code = 1;
    }
    ::_exit(code);
  }
  REQUIRE(::write(go[1], "g", 1) == 1);
  for (int i = 0; i < 300; ++i) lockdb::atomic_json_update(path, bump);
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  REQUIRE(WIFEXITED(st));
  REQUIRE(WEXITSTATUS(st) == 0);
  ::close(go[0]);
  ::close(go[1]);
  REQUIRE(read_json(path) == json{{"n", 601}});
}

TEST_CASE("a write nested in atomic_json_update's fn on the same file is refused", "[files]") {
  TempDir dir;
  const auto path = dir / "nested.json";
  lockdb::atomic_json_update(path, [](json& doc) { doc["n"] = 1; });
  try {
    lockdb::atomic_json_update(path, [&](json& doc) {
      REQUIRE(lockdb::locked_read(path) == "{\n  \"n\": 1\n}\n");  // reading is fine
      doc["n"] = 2;
      lockdb::atomic_json_update(path, [](json& inner) { inner["n"] = 3; });
    });
    FAIL("a nested write went through");
  } catch (const lockdb::Timeout&) {
    FAIL("a nested write waited for its own thread");
  } catch (const lockdb::Error& e) {
    REQUIRE(e.code() == lockdb::Errc::conflict);
    REQUIRE_THAT(std::string(e.what()), Catch::Contains(path.string()));
  }
  REQUIRE(read_json(path) == json{{"n", 1}});
  // Another file from inside fn is fine.
  lockdb::atomic_json_update(path, [&](json& doc) {
    lockdb::locked_append(dir / "side.log", "seen");
    doc["n"] = 4;
  });
  REQUIRE(read_json(path) == json{{"n", 4}});
  REQUIRE(lockdb::test::read_text(dir / "side.log") == "seen\n");
  // Updates of other files nested two deep, one refused in the middle: each document is written
  // whole, and afterwards the thread holds nothing (the next update of each file goes through).
  const auto other = dir / "other.json", third = dir / "third.json";
  lockdb::atomic_json_update(path, [&](json& doc) {
    lockdb::atomic_json_update(other, [&](json& o) {
      o["text"] = std::string(300, 'x');  // longer than the outer document
      lockdb::atomic_json_update(third, [](json& t) { t["depth"] = 3; });
      REQUIRE_THROWS_AS(lockdb::atomic_json_update(path, [](json&) {}), lockdb::Error);
    });
    doc["n"] = 5;
  });
  REQUIRE(read_json(path) == json{{"n", 5}});
  REQUIRE(read_json(other) == json{{"text", std::string(300, 'x')}});
  REQUIRE(read_json(third) == json{{"depth", 3}});
  for (const auto& file : {path, other, third}) {
    lockdb::atomic_json_update(file, [](json& d) { d["after"] = true; });
    REQUIRE(read_json(file).at("after") == true);
  }
}

TEST_CASE("the helpers work from an atexit handler, after the thread's thread_locals are gone",
          "[files]") {
  TempDir dir;
  const auto path = dir / "at-exit.json";
  const auto r = lockdb::test::run({lockdb::test::helper_path(), "update-at-exit", path.string()});
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  REQUIRE(r.out == "OK\n");
  REQUIRE(read_json(path) == json{{"n", 3}});
  REQUIRE(lockdb::test::read_text(path.string() + ".copy") == lockdb::test::read_text(path));
  REQUIRE(lockdb::test::read_text(path.string() + ".log") == "at exit\n");
  for (const auto& e : fs::directory_iterator(dir.path())) {
    INFO(e.path());
    REQUIRE(e.path().extension() != ".tmp");
  }
}

// (That no call keeps a descriptor open is test_descriptors.cpp's.)
TEST_CASE("a lock file deleted between calls is made again: its new holder excludes the helpers",
          "[files]") {
  TempDir dir;
  const auto path = dir / "data.json";
  const auto lock = lockdb::lock_file_for(path);
  lockdb::atomic_json_update(path, [](json& doc) { doc["n"] = 1; });
  fs::remove(lock);
  // Another process locks the new lock file at the same path: this process must see it held.
  Child holder({lockdb::test::helper_path(), "hold", "hard", lock.string()});
  REQUIRE(holder.expect_line("LOCKED"));
  REQUIRE_FALSE(lockdb::try_locked_write(path, "{}"));
  REQUIRE_THROWS_AS(
      lockdb::atomic_json_update(path, [](json& doc) { doc["n"] = 2; }, {.lock_timeout = 50ms}),
      lockdb::Timeout);
  holder.write_line("go");
  REQUIRE(holder.expect_line("RELEASED"));
  REQUIRE(holder.wait() == 0);
  REQUIRE(lockdb::atomic_json_update(path, [](json& doc) { doc["n"] = 3; })["n"] == 3);
}

TEST_CASE("locked_append from 8 processes x 1000 lines gives 8000 intact lines", "[files]") {
  TempDir dir;
  const auto path = dir / "events.jsonl";
  auto kids = start(8, {lockdb::test::helper_path(), "append-lines", path.string(), "1000"});
  start_together(kids);
  std::set<long> pids;
  for (auto& k : kids) pids.insert(k->pid());
  finish(kids);

  std::istringstream in(lockdb::test::read_text(path));
  std::map<long, std::vector<int>> seen;  // pid -> its i values, in file order
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    json rec = json::parse(line);  // throws (fails the test) on a torn or glued line
    const long pid = rec.at("pid").get<long>();
    REQUIRE(rec.at("pad").get<std::string>() ==
            std::string(static_cast<std::size_t>(100 + pid % 50), 'x'));
    seen[pid].push_back(rec.at("i").get<int>());
  }
  REQUIRE(lines == 8000);
  REQUIRE(seen.size() == 8);
  for (const auto& [pid, is] : seen) {
    REQUIRE(pids.count(pid) == 1);
    REQUIRE(is.size() == 1000);
    for (int i = 0; i < 1000; ++i) REQUIRE(is[static_cast<std::size_t>(i)] == i);
  }
}

TEST_CASE("atomic_write while readers loop: every read is one complete version", "[files]") {
  TempDir dir;
  const auto path = dir / "doc.txt";
  lockdb::atomic_write(path, version_text(0));
  auto readers = start(2, {lockdb::test::helper_path(), "read-loop", path.string()});
  for (auto& r : readers) REQUIRE(r->expect_line("READY"));
  for (long k = 1; k <= 300; ++k) {
    lockdb::atomic_write(path, version_text(k), {.durability = lockdb::Durability::none});
  }
  for (auto& r : readers) {
    r->write_line("stop");
    auto report = r->read_line();
    REQUIRE(report.has_value());
    long reads = -1, bad = -1;
    REQUIRE(std::sscanf(report->c_str(), "READS %ld BAD %ld", &reads, &bad) == 2);
    REQUIRE(reads > 0);
    REQUIRE(bad == 0);
    REQUIRE(r->wait() == 0);
  }
  REQUIRE(lockdb::test::read_text(path) == version_text(300));
  REQUIRE(listing(dir.path()) == std::set<std::string>{"doc.txt", "doc.txt.lock"});
}

// ---------------------------------------------------------------------------------------------
// Errors lose nothing

namespace {

// A small tmpfs mounted on a fresh directory, always unmounted again.
class Tmpfs {
 public:
  Tmpfs(const fs::path& dir, const std::string& options) : dir_(dir) {
    fs::create_directory(dir_);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) == 0) {
      mounted_ = true;
    } else {
      why_ = std::strerror(errno);
    }
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  bool remount_read_only() {
    return ::mount(nullptr, dir_.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }

 private:
  fs::path dir_;
  bool mounted_ = false;
  std::string why_;
};

}  // namespace

TEST_CASE("full disk: a too-large write throws, the old content stays, no temp file remains",
          "[files][tmpfs]") {
  TempDir dir;
  const auto mnt = dir / "mnt";
  Tmpfs tmpfs(mnt, "size=256k,mode=0755");
  if (!tmpfs.mounted()) {
    const std::string reason = "skipped: cannot mount a tmpfs here (" + tmpfs.why() + ")";
    std::printf("%s\n", reason.c_str());
    WARN(reason);
    return;
  }
  const auto path = mnt / "data.json";
  lockdb::atomic_write(path, "{\"old\": true}\n");
  const std::string big(1 << 20, 'x');
  const std::set<std::string> files{"data.json", "data.json.lock"};

  SECTION("atomic_write") {
    try {
      lockdb::atomic_write(path, big);
      FAIL("a 1 MiB write fit into a 256 KiB tmpfs");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::io);
      REQUIRE(e.sys_errno() == ENOSPC);
      REQUIRE_THAT(std::string(e.what()),
                   Catch::Contains("data.json") && Catch::Contains("No space left on device"));
    }
  }
  SECTION("atomic_json_update") {
    bool called = false;
    REQUIRE_THROWS_AS(lockdb::atomic_json_update(path,
                                                 [&](json& doc) {
                                                   called = true;
                                                   doc["big"] = big;
                                                 }),
                      lockdb::Error);
    REQUIRE(called);
  }
  SECTION("locked_write in both modes, and locked_append: a partial append is cut back") {
    REQUIRE_THROWS_AS(lockdb::locked_write(path, big), lockdb::Error);
    REQUIRE(lockdb::test::read_text(path) == "{\"old\": true}\n");
    try {
      lockdb::locked_append(path, big);
      FAIL("a 1 MiB append fit");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.sys_errno() == ENOSPC);
      REQUIRE_THAT(std::string(e.what()), Catch::Contains("cannot append to"));
    }
    REQUIRE(lockdb::test::read_text(path) == "{\"old\": true}\n");
    REQUIRE_THROWS_AS(lockdb::locked_write(path, big, lockdb::WriteMode::append), lockdb::Error);
  }
  REQUIRE(lockdb::test::read_text(path) == "{\"old\": true}\n");
  REQUIRE(listing(mnt) == files);

  SECTION("read-only filesystem") {
    REQUIRE(tmpfs.remount_read_only());
    for (bool take_lock : {true, false}) {
      try {
        lockdb::atomic_write(path, "new", {.take_lock = take_lock});
        FAIL("wrote to a read-only filesystem");
      } catch (const lockdb::Timeout&) {
        FAIL("a read-only filesystem reported as a timeout");
      } catch (const lockdb::Error& e) {
        REQUIRE(e.code() == lockdb::Errc::permission);
        REQUIRE(e.sys_errno() == EROFS);
        REQUIRE_THAT(std::string(e.what()),
                     Catch::Contains(mnt.string()) && Catch::Contains("Read-only file system"));
      }
    }
    REQUIRE(lockdb::test::read_text(path) == "{\"old\": true}\n");
    REQUIRE(listing(mnt) == files);
  }
}

TEST_CASE("a directory the caller may not write: a clear permission error, never a timeout",
          "[files]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root to drop to an unprivileged uid");
    return;
  }
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  const auto path = dir / "cfg.txt";
  const std::string old = "{\"v\": \"old\"}";  // JSON, for atomic_json_update
  lockdb::locked_write(path, old);             // as root: creates cfg.txt and cfg.txt.lock (0644)
  auto write_as_nobody = [&](const std::string& func) {
    return lockdb::test::run(
        {lockdb::test::helper_path(), "write-as", "65534", func, path.string(), "new"});
  };

  SECTION("the lock file exists: the lock is taken read-only, the temp file is refused") {
    for (const char* func : {"atomic_write", "locked_write", "atomic_json_update"}) {
      CAPTURE(func);
      auto r = write_as_nobody(func);
      REQUIRE(r.code == 3);
      REQUIRE_THAT(r.out, Catch::StartsWith("ERROR permission cannot create a temp file in: " +
                                            dir.path().string() + ": Permission denied"));
    }
    auto r = write_as_nobody("locked_append");
    REQUIRE(r.code == 3);
    REQUIRE_THAT(r.out, Catch::StartsWith("ERROR permission cannot open for appending: " +
                                          path.string() + ": Permission denied"));
  }
  SECTION("no lock file yet: the lock file cannot be created") {
    fs::remove(dir / "cfg.txt.lock");
    for (const char* func : {"locked_write", "locked_append", "atomic_json_update"}) {
      CAPTURE(func);
      auto r = write_as_nobody(func);
      REQUIRE(r.code == 3);
      REQUIRE_THAT(r.out, Catch::StartsWith("ERROR permission cannot open lock file: " +
                                            path.string() + ".lock: Permission denied"));
    }
  }
  REQUIRE(lockdb::test::read_text(path) == old);
  for (const auto& name : listing(dir.path())) REQUIRE(name.find(".tmp") == std::string::npos);
}

TEST_CASE("corrupt JSON: an error naming the file and the place, file untouched, fn not called",
          "[files]") {
  TempDir dir;
  const auto path = dir / "bad.json";
  const std::string text = "{\n  \"a\": 1,\n  \"b\": ]\n}\n";
  lockdb::test::write_text(path, text);
  ::chmod(path.c_str(), 0640);
  struct stat before {};
  REQUIRE(::stat(path.c_str(), &before) == 0);

  bool called = false;
  try {
    lockdb::atomic_json_update(path, [&](json&) { called = true; });
    FAIL("parsed corrupt JSON");
  } catch (const lockdb::Error& e) {
    REQUIRE(e.code() == lockdb::Errc::corrupt);
    REQUIRE(e.path() == path);
    REQUIRE_THAT(std::string(e.what()),
                 Catch::StartsWith("cannot parse JSON: " + path.string() + ": line 3, column 8") &&
                     Catch::Contains("syntax error"));
  }
  REQUIRE_FALSE(called);
  struct stat after {};
  REQUIRE(::stat(path.c_str(), &after) == 0);
  REQUIRE(after.st_ino == before.st_ino);
  REQUIRE(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  REQUIRE(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  REQUIRE(lockdb::test::read_text(path) == text);
  REQUIRE(listing(dir.path()) == std::set<std::string>{"bad.json", "bad.json.lock"});

  SECTION("an empty file is corrupt too, not a fresh {}") {
    lockdb::test::write_text(path, "");
    try {
      lockdb::atomic_json_update(path, [&](json&) { called = true; });
      FAIL("an empty file was taken as {}");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::corrupt);
      REQUIRE_THAT(std::string(e.what()), Catch::Contains("the file is empty"));
    }
    REQUIRE_FALSE(called);
  }
  // The lock was released: a non-waiting write succeeds.
  REQUIRE(lockdb::try_locked_write(path, "{}"));
}

TEST_CASE("a failure at any step of a replace leaves the old file and no temp file", "[files]") {
  TempDir dir;
  const auto path = dir / "v.txt";
  lockdb::atomic_write(path, "old");
  struct Case {
    lockdb::os::Op op;
    int err;
    const char* step;
  };
  for (const Case& c : {Case{lockdb::os::Op::write, ENOSPC, "cannot write"},
                        Case{lockdb::os::Op::fsync, EIO, "cannot fsync"},
                        Case{lockdb::os::Op::rename, EIO, "cannot rename into place"}}) {
    CAPTURE(c.step);
    lockdb::os::fail_nth(c.op, 1, c.err);
    try {
      lockdb::atomic_write(path, "new");  // durability file: the fsync runs
      FAIL("the injected failure was swallowed");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.sys_errno() == c.err);
      REQUIRE_THAT(std::string(e.what()),
                   Catch::StartsWith(c.step) && Catch::Contains(path.string()));
    }
    lockdb::os::clear_faults();
    REQUIRE(lockdb::test::read_text(path) == "old");
    REQUIRE(listing(dir.path()) == std::set<std::string>{"v.txt", "v.txt.lock"});
  }
  SECTION("a failed fsync of an append removes the record again") {
    lockdb::locked_append(dir / "log", "one");
    lockdb::os::fail_nth(lockdb::os::Op::fsync, 1, EIO);
    REQUIRE_THROWS_AS(
        lockdb::locked_append(dir / "log", "two",
                              {.lock_timeout = 5s, .durability = lockdb::Durability::file}),
        lockdb::Error);
    lockdb::os::clear_faults();
    REQUIRE(lockdb::test::read_text(dir / "log") == "one\n");
  }
  lockdb::atomic_write(path, "new");
  REQUIRE(lockdb::test::read_text(path) == "new");
}

// With durability full every fsync is made and none is ignored: failing each in turn (1st, 2nd,
// ... until the call makes fewer) fails the call with Error{io}. Before the rename the old
// content stays; after it (the directory's fsync) the new content stays and the error says it is
// in place. No temp file is left either way.
TEST_CASE("durability full: each fsync failing in turn fails the call, naming what is in place",
          "[files]") {
  TempDir dir;
  fs::path path;  // each helper its own file: a soft and a hard lock do not share a lock path
  using lockdb::Durability;
  struct Helper {
    const char* name;
    std::function<void()> write;  // writes {"v": 2} over {"v": 1}
  };
  const std::vector<Helper> helpers = {
      {"atomic_write",
       [&] { lockdb::atomic_write(path, "{\"v\": 2}", {.durability = Durability::full}); }},
      {"atomic_json_update",
       [&] {
         lockdb::atomic_json_update(path, [](json& d) { d["v"] = 2; },
                                    {.lock_timeout = 5s, .durability = Durability::full});
       }},
      {"locked_write",
       [&] {
         lockdb::locked_write(path, "{\"v\": 2}", lockdb::WriteMode::truncate,
                              {.lock_timeout = 5s, .durability = Durability::full});
       }},
      {"nfs_safe_write",
       [&] {
         lockdb::nfs_safe_write(path, "{\"v\": 2}",
                                {.lock_timeout = 5s, .durability = Durability::full});
       }},
  };
  for (const Helper& h : helpers) {
    path = dir / (std::string(h.name) + ".json");
    int taken_back = 0;
    int kept = 0;
    for (int nth = 1;; ++nth) {
      INFO(h.name << ": fsync " << nth << " fails");
      if (std::string_view(h.name) == "nfs_safe_write") {  // its lock file is a soft marker's
        lockdb::nfs_safe_write(path, "{\"v\": 1}");
      } else {
        lockdb::atomic_write(path, "{\"v\": 1}");
      }
      lockdb::os::fail_nth(lockdb::os::Op::fsync, nth, EIO);
      std::optional<lockdb::Errc> code;
      std::string what;
      try {
        h.write();
      } catch (const lockdb::Error& e) {
        code = e.code();
        what = e.what();
      }
      lockdb::os::clear_faults();
      INFO(what);
      for (const auto& name : listing(dir.path())) {
        REQUIRE(name.find(".tmp") == std::string::npos);
      }
      const json now = json::parse(lockdb::test::read_text(path));
      if (!code) {
        REQUIRE(now == json{{"v", 2}});
        break;  // it makes fewer fsyncs than nth
      }
      REQUIRE(*code == lockdb::Errc::io);
      // Names the file, or the directory whose fsync failed.
      REQUIRE_THAT(what, Catch::Contains("fsync") && (Catch::Contains(path.filename().string()) ||
                                                      Catch::Contains(dir.path().string())));
      if (now == json{{"v", 2}}) {
        ++kept;
        REQUIRE_THAT(what, Catch::Contains("in place"));
      } else {
        ++taken_back;
        REQUIRE(now == json{{"v", 1}});
      }
    }
    CHECK(taken_back >= 1);  // the new file's fsync, before the rename
    CHECK(kept >= 1);        // the directory's, after it
  }
}

TEST_CASE("a planted file at the process's temp name is never followed or removed", "[files]") {
  TempDir dir;
  const auto path = dir / "c.json";
  lockdb::atomic_json_update(path, [](json& d) { d["n"] = 1; });
  // The name the next replace tries first (os::TempName::process_id): the writer's digits.
  std::ostringstream name;
  name << ".c.json." << lockdb::os::temp_owner_digits() << ".tmp";
  const auto planted = dir / name.str();
  lockdb::test::write_text(dir / "victim", "keep me");
  fs::create_symlink(dir / "victim", planted);
  for (int i = 2; i <= 4; ++i) {
    lockdb::atomic_json_update(path, [i](json& d) { d["n"] = i; });
    lockdb::atomic_write(path, "{\"n\": " + std::to_string(i) + "}");
  }
  REQUIRE(json::parse(lockdb::test::read_text(path)) == json{{"n", 4}});
  REQUIRE(lockdb::test::read_text(dir / "victim") == "keep me");
  REQUIRE(fs::is_symlink(planted));
  // The replaces took other (random) names, and left none behind.
  REQUIRE(listing(dir.path()) ==
          std::set<std::string>{"c.json", "c.json.lock", "victim", name.str()});
}

TEST_CASE("a directory at the target is refused and left in place, also where files are swapped in",
          "[files]") {
  std::string tried;
  const auto dir = swapping_temp_dir(tried);
  if (!dir) {
    const std::string reason = "skipped: none of " + tried + " is on ext4 or btrfs";
    std::printf("%s\n", reason.c_str());
    WARN(reason);
    return;
  }
  const auto target = *dir / "d";
  fs::create_directory(target);
  lockdb::test::write_text(target / "inner", "keep");
  const auto untouched = [&] {
    REQUIRE(fs::is_directory(fs::symlink_status(target)));
    REQUIRE(listing(target) == std::set<std::string>{"inner"});
    REQUIRE(lockdb::test::read_text(target / "inner") == "keep");
    REQUIRE(listing(dir->path()) == std::set<std::string>{"d", "d.lock"});  // no temp file
  };
  // With durability power_loss_unsafe the new file is swapped with the directory; with none and
  // file it is renamed, which refuses. All end the same way.
  for (const auto durability : {lockdb::Durability::power_loss_unsafe, lockdb::Durability::none,
                                lockdb::Durability::file}) {
    CAPTURE(lockdb::durability_name(durability));
    for (const std::string_view call : {"locked_write", "atomic_write"}) {
      CAPTURE(call);
      try {
        if (call == "locked_write") {
          lockdb::locked_write(target, "x", lockdb::WriteMode::truncate,
                               {.lock_timeout = 5s, .durability = durability});
        } else {
          lockdb::atomic_write(target, "x", {.durability = durability});
        }
        FAIL("a write over a directory succeeded");
      } catch (const lockdb::Error& e) {
        REQUIRE(e.sys_errno() == EISDIR);
        REQUIRE(e.code() == lockdb::Errc::invalid_argument);
        REQUIRE_THAT(std::string(e.what()),
                     Catch::Contains(target.string()) && Catch::Contains(std::strerror(EISDIR)));
      }
      untouched();
    }
  }

  SECTION("when the swap back fails too, the error says where the directory is") {
    // The swap in is the first rename_exchange (Op::rename), the swap back the second.
    lockdb::os::fail_nth(lockdb::os::Op::rename, 2, EIO);
    std::string what;
    try {
      lockdb::locked_write(
          target, "x", lockdb::WriteMode::truncate,
          {.lock_timeout = 5s, .durability = lockdb::Durability::power_loss_unsafe});
      FAIL("a write over a directory succeeded");
    } catch (const lockdb::Error& e) {
      what = e.what();
      REQUIRE(e.sys_errno() == EIO);
    }
    lockdb::os::clear_faults();
    std::ostringstream temp_name;
    temp_name << ".d." << lockdb::os::temp_owner_digits() << ".tmp";
    const auto moved_to = *dir / temp_name.str();
    REQUIRE_THAT(what, Catch::Contains(target.string()) && Catch::Contains(moved_to.string()));
    REQUIRE(lockdb::test::read_text(target) == "x");
    REQUIRE(lockdb::test::read_text(moved_to / "inner") == "keep");
  }
}

// ---------------------------------------------------------------------------------------------
// Behaviour of each function

TEST_CASE("locked_write, locked_read and try_locked_write", "[files]") {
  TempDir dir;
  const auto path = dir / "f.txt";
  lockdb::locked_write(path, "hello ");
  lockdb::locked_write(path, "world", lockdb::WriteMode::append);
  REQUIRE(lockdb::locked_read(path) == "hello world");
  REQUIRE(lockdb::lock_file_for(path) == dir / "f.txt.lock");

  SECTION("a missing file is not_found, and reading it creates nothing") {
    for (const auto& missing : {dir / "missing", dir / "no-dir" / "missing"}) {
      try {
        (void)lockdb::locked_read(missing);
        FAIL("read a missing file");
      } catch (const lockdb::Error& e) {
        REQUIRE(e.code() == lockdb::Errc::not_found);
        REQUIRE_THAT(std::string(e.what()), Catch::Contains(missing.string()));
      }
    }
    REQUIRE(listing(dir.path()) == std::set<std::string>{"f.txt", "f.txt.lock"});
  }
  SECTION("writers create missing directories") {
    lockdb::atomic_write(dir / "a" / "b" / "x", "1");
    lockdb::locked_write(dir / "c" / "y", "2");
    lockdb::locked_append(dir / "d" / "z", "3");
    lockdb::atomic_json_update(dir / "e" / "j.json", [](json& doc) { doc["k"] = 4; });
    REQUIRE(lockdb::locked_read(dir / "a" / "b" / "x") == "1");
    REQUIRE(lockdb::locked_read(dir / "c" / "y") == "2");
    REQUIRE(lockdb::locked_read(dir / "d" / "z") == "3\n");
    REQUIRE(read_json(dir / "e" / "j.json") == json{{"k", 4}});
  }
  SECTION("held exclusively elsewhere: readers and writers wait, try_locked_write says false") {
    Child holder = hold_lock(lockdb::lock_file_for(path));
    REQUIRE(holder.expect_line("LOCKED"));
    REQUIRE_FALSE(lockdb::try_locked_write(path, "x"));
    REQUIRE_THROWS_AS(lockdb::locked_read(path, 0s), lockdb::Timeout);
    REQUIRE_THROWS_AS(
        lockdb::locked_write(path, "x", lockdb::WriteMode::truncate, {.lock_timeout = 50ms}),
        lockdb::Timeout);
    REQUIRE_THROWS_AS(lockdb::atomic_json_update(path, [](json&) {}, {.lock_timeout = 0s}),
                      lockdb::Timeout);
    REQUIRE(lockdb::test::run({lockdb::test::helper_path(), "try-write", path.string(), "x"}).out ==
            "0\n");
    holder.write_line("release");
    REQUIRE(holder.wait() == 0);
    REQUIRE(lockdb::try_locked_write(path, "after"));
    REQUIRE(lockdb::locked_read(path, 0s) == "after");
  }
  SECTION("locked_read takes the lock shared: it runs beside another reader") {
    Child reader = hold_lock(lockdb::lock_file_for(path), "hard", true);
    REQUIRE(reader.expect_line("LOCKED"));
    REQUIRE(lockdb::locked_read(path, 0s) == "hello world");
    REQUIRE_FALSE(lockdb::try_locked_write(path, "x"));
    reader.write_line("release");
    REQUIRE(reader.wait() == 0);
  }
  SECTION("try_locked_write throws real errors instead of returning false") {
    fs::create_directory(dir / "d.txt.lock");
    try {
      (void)lockdb::try_locked_write(dir / "d.txt", "x");
      FAIL("no error for a directory at the lock path");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::invalid_argument);
      REQUIRE_THAT(std::string(e.what()), Catch::Contains("d.txt.lock"));
    }
  }
  SECTION("bad paths") {
    REQUIRE_THROWS_AS(lockdb::locked_write("", "x"), lockdb::Error);
    try {
      lockdb::atomic_write(dir.path().string() + "/", "x");
      FAIL("wrote to a path without a file name");
    } catch (const lockdb::Error& e) {
      REQUIRE(e.code() == lockdb::Errc::invalid_argument);
    }
  }
}

TEST_CASE("atomic_write keeps permissions, honours mode, replaces a symlink itself", "[files]") {
  TempDir dir;
  const auto path = dir / "p.conf";
  const mode_t mask = ::umask(022);
  lockdb::atomic_write(path, "1");
  REQUIRE(mode_of(path) == 0644);
  ::chmod(path.c_str(), 0640);
  lockdb::atomic_write(path, "2");
  REQUIRE(mode_of(path) == 0640);
  lockdb::atomic_write(path, "3", {.mode = 0600u});
  REQUIRE(mode_of(path) == 0600);
  REQUIRE(lockdb::test::read_text(path) == "3");
  // Bits the umask takes from a new file are put back; a read-only file stays read-only.
  ::chmod(path.c_str(), 0666);
  lockdb::atomic_write(path, "4");
  REQUIRE(mode_of(path) == 0666);
  ::chmod(path.c_str(), 0444);
  lockdb::atomic_write(path, "5");
  REQUIRE(mode_of(path) == 0444);
  REQUIRE(lockdb::test::read_text(path) == "5");
  ::umask(mask);

  lockdb::test::write_text(dir / "target", "keep");
  fs::create_symlink(dir / "target", dir / "link");
  lockdb::atomic_write(dir / "link", "new", {.durability = lockdb::Durability::full});
  REQUIRE_FALSE(fs::is_symlink(dir / "link"));
  REQUIRE(lockdb::test::read_text(dir / "link") == "new");
  REQUIRE(lockdb::test::read_text(dir / "target") == "keep");
}

TEST_CASE("atomic_json_update keeps the file's permission bits, whatever the umask", "[files]") {
  TempDir dir;
  const auto path = dir / "m.json";
  lockdb::test::write_text(path, "{}");
  const mode_t mask = ::umask(022);
  for (const unsigned mode : {0600u, 0640u, 0666u, 0444u}) {
    CAPTURE(mode);
    REQUIRE(::chmod(path.c_str(), mode) == 0);
    lockdb::atomic_json_update(path, [](json& doc) { doc["n"] = doc.value("n", 0) + 1; });
    REQUIRE(mode_of(path) == mode);
  }
  ::umask(mask);
  REQUIRE(read_json(path) == json{{"n", 4}});
}

// The rule for a fn that returns void, shared with Store::update (detail/json_fn.hpp): it must
// take the document by non-const lvalue reference, else its edits would go to a copy.
namespace fn_kinds {
using lockdb::detail::json_fn_kind;
using lockdb::detail::JsonFnKind;
auto edit_generic = [](auto& doc) { doc["x"] = 1; };
static_assert(json_fn_kind<decltype([](json&) {})> == JsonFnKind::edits);
static_assert(json_fn_kind<decltype(edit_generic)&> == JsonFnKind::edits);
static_assert(json_fn_kind<std::function<void(json&)>&> == JsonFnKind::edits);
static_assert(json_fn_kind<void (*)(json&)> == JsonFnKind::edits);
static_assert(json_fn_kind<decltype([](json) {})> == JsonFnKind::edits_a_copy);
static_assert(json_fn_kind<decltype([](const json&) {})> == JsonFnKind::edits_a_copy);
static_assert(json_fn_kind<decltype([](auto doc) { doc["x"] = 1; })> == JsonFnKind::edits_a_copy);
static_assert(json_fn_kind<decltype([](const auto&) {})> == JsonFnKind::edits_a_copy);
static_assert(json_fn_kind<decltype([](auto&& doc) { doc["x"] = 1; })> == JsonFnKind::edits_a_copy);
static_assert(json_fn_kind<std::function<void(json)>> == JsonFnKind::edits_a_copy);
// Returning the new document is the other form; the update functions check its type.
static_assert(json_fn_kind<decltype([](json doc) { return doc; })> == JsonFnKind::other);
static_assert(json_fn_kind<decltype([](const json&) { return json(); })> == JsonFnKind::other);
static_assert(json_fn_kind<decltype([](auto& doc) { return doc; })> == JsonFnKind::other);
}  // namespace fn_kinds

TEST_CASE("atomic_json_update: both forms of fn, a missing file, a throwing fn", "[files]") {
  TempDir dir;
  const auto path = dir / "s.json";
  const json after_mutate = lockdb::atomic_json_update(
      path, [](json& doc) { doc["alice"] = doc.value("alice", 0) + 10; });
  REQUIRE(after_mutate == json{{"alice", 10}});
  const json after_return = lockdb::atomic_json_update(path, [](json doc) {
    doc["alice"] = doc["alice"].get<int>() + 10;
    return doc;
  });
  REQUIRE(after_return == json{{"alice", 20}});
  const json after_const =
      lockdb::atomic_json_update(path,
                                 [](const json& doc) {
                                   return json{{"bob", doc["alice"]}};
                                 },
                                 {.lock_timeout = 1s, .durability = lockdb::Durability::full});
  REQUIRE(after_const == json{{"bob", 20}});
  auto generic = [](auto& doc) { doc["n"] = 1; };
  REQUIRE(lockdb::atomic_json_update(path, generic) == json{{"bob", 20}, {"n", 1}});
  REQUIRE(read_json(path) == json{{"bob", 20}, {"n", 1}});
  REQUIRE(lockdb::test::read_text(path) == "{\n  \"bob\": 20,\n  \"n\": 1\n}\n");
  // The other accepted spellings of both forms. (A void fn taking the document by value, const&
  // or auto&& does not compile: tests/compile_fail_update_fn.cpp.)
  const std::function<void(json&)> edit = [](json& doc) { doc["n"] = 2; };
  REQUIRE(lockdb::atomic_json_update(path, edit) == json{{"bob", 20}, {"n", 2}});
  REQUIRE(lockdb::atomic_json_update(path, [](auto& doc) { doc["n"] = 3; }) ==
          json{{"bob", 20}, {"n", 3}});
  REQUIRE(lockdb::atomic_json_update(path, [](auto doc) {
            doc["n"] = 4;
            return doc;
          }) == json{{"bob", 20}, {"n", 4}});
  REQUIRE(lockdb::atomic_json_update(path, [](json& doc) {
            return json{{"n", doc["n"]}};
          }) == json{{"n", 4}});
  REQUIRE(read_json(path) == json{{"n", 4}});

  const std::string before = lockdb::test::read_text(path);
  REQUIRE_THROWS_WITH(lockdb::atomic_json_update(path,
                                                 [](json& doc) {
                                                   doc["half"] = "done";
                                                   throw std::runtime_error("fn gave up");
                                                 }),
                      "fn gave up");
  REQUIRE(lockdb::test::read_text(path) == before);

  try {
    lockdb::atomic_json_update(path, [](json& doc) { doc["s"] = std::string("\xff\xfe"); });
    FAIL("wrote invalid UTF-8");
  } catch (const lockdb::Error& e) {
    REQUIRE(e.code() == lockdb::Errc::invalid_argument);
    REQUIRE_THAT(std::string(e.what()), Catch::Contains(path.string()));
  }
  REQUIRE(lockdb::test::read_text(path) == before);
  REQUIRE(listing(dir.path()) == std::set<std::string>{"s.json", "s.json.lock"});
}

TEST_CASE("locked_append: one record per line, torn last lines are not glued", "[files]") {
  TempDir dir;
  const auto path = dir / "log.jsonl";
  lockdb::locked_append(path, "a");
  lockdb::locked_append(path, "b\n");
  REQUIRE(lockdb::test::read_text(path) == "a\nb\n");

  try {
    lockdb::locked_append(path, "c\nd");
    FAIL("appended two lines as one record");
  } catch (const lockdb::Error& e) {
    REQUIRE(e.code() == lockdb::Errc::invalid_argument);
    REQUIRE_THAT(std::string(e.what()), Catch::Contains("newline"));
  }
  REQUIRE(lockdb::test::read_text(path) == "a\nb\n");

  // A writer died mid-record.
  lockdb::test::write_text(path, "{\"event\":\"ok\"}\n{\"event\":\"to");
  lockdb::locked_append_json(path, {{"event", "click"}, {"who", "Zoë"}});
  REQUIRE(lockdb::test::read_text(path) ==
          "{\"event\":\"ok\"}\n{\"event\":\"to\n{\"event\":\"click\",\"who\":\"Zoë\"}\n");
  std::istringstream in(lockdb::test::read_text(path));
  std::string line;
  int good = 0, torn = 0;
  while (std::getline(in, line)) (json::accept(line) ? good : torn)++;
  REQUIRE(good == 2);
  REQUIRE(torn == 1);

  REQUIRE_THROWS_AS(lockdb::locked_append_json(path, {{"bad", std::string("\xc3")}}),
                    lockdb::Error);
}

TEST_CASE("nfs_safe_write: soft lock, a dead holder's marker broken, a live one never", "[files]") {
  TempDir dir;
  const auto path = dir / "n.txt";
  const auto marker = lockdb::lock_file_for(path);
  lockdb::nfs_safe_write(path, "one");
  REQUIRE(lockdb::test::read_text(path) == "one");
  REQUIRE_FALSE(fs::exists(marker));  // the marker goes with the release

  SECTION("a live holder, even with an old marker, is waited for, not broken") {
    Child holder = hold_lock(marker, "soft");
    REQUIRE(holder.expect_line("LOCKED"));
    const timespec old[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
    REQUIRE(::utimensat(AT_FDCWD, marker.c_str(), old, 0) == 0);
    REQUIRE_THROWS_AS(
        lockdb::nfs_safe_write(path, "two", {.lock_timeout = 100ms, .stale_after = 1s}),
        lockdb::Timeout);
    REQUIRE(lockdb::test::read_text(path) == "one");
    holder.write_line("release");
    REQUIRE(holder.expect_line("RELEASED"));
    REQUIRE(holder.wait() == 0);
    lockdb::nfs_safe_write(path, "two", {.lock_timeout = 0s});
    REQUIRE(lockdb::test::read_text(path) == "two");
  }
  SECTION("a holder killed with SIGKILL leaves a marker that is broken at once") {
    Child holder = hold_lock(marker, "soft");
    REQUIRE(holder.expect_line("LOCKED"));
    holder.kill(SIGKILL);
    REQUIRE(holder.wait() == 128 + SIGKILL);
    REQUIRE(fs::exists(marker));
    lockdb::nfs_safe_write(path, "three", {.lock_timeout = 5s});
    REQUIRE(lockdb::test::read_text(path) == "three");
    REQUIRE_FALSE(fs::exists(marker));
  }
}

// ---------------------------------------------------------------------------------------------
// The example

TEST_CASE("examples/seed_demo prints the seed demo's lines", "[files][example]") {
#ifdef LOCKDB_SEED_DEMO
  auto r = lockdb::test::run({LOCKDB_SEED_DEMO});
  INFO(r.err);
  REQUIRE(r.code == 0);
  REQUIRE(r.out ==
          "=== Concurrent counter (4 processes × 5 increments) ===\n"
          " Expected: 20 | Got: 20 | Correct: True\n"
          "\n"
          "=== atomic_json_update ===\n"
          " After 3 updates: {'alice': 30}\n"
          "\n"
          "=== SingletonGuard ===\n"
          " Second acquire while first held: False\n"
          " Acquire after first released: True\n"
          "\n"
          "=== locked_append_json (JSONL log) ===\n"
          " 3 lines written\n"
          " {'event': 'click', 'i': 0}\n"
          " {'event': 'click', 'i': 1}\n"
          " {'event': 'click', 'i': 2}\n");
#else
  WARN("skipped: the examples are not built (LOCKDB_BUILD_EXAMPLES=OFF)");
#endif
}
