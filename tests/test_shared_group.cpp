// Group-shared stores: a store whose directory is setgid and group-writable stays writable by
// every user of its group, whoever wrote it before and whatever their umask. The two-user tests
// run as root (they fork a child that becomes nobody, with the store's group as a supplementary
// group); as another user they say so and pass without checking.
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.hpp"

using lockdb::Store;
using lockdb::StoreOptions;
using lockdb::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr gid_t kGroup = 4242;  // no /etc/group entry needed
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

// The process umask set for a scope, as a service's would be.
class Umask {
 public:
  explicit Umask(mode_t mask) : old_(::umask(mask)) {}
  ~Umask() { ::umask(old_); }
  Umask(const Umask&) = delete;
  Umask& operator=(const Umask&) = delete;

 private:
  mode_t old_;
};

// What a child reported: ok, or the Errc of the lockdb::Error it caught (nullopt for another
// exception) and its message.
struct ChildResult {
  bool ok = false;
  std::optional<lockdb::Errc> code;
  std::string message;
};

// Runs `fn` in a forked child that is uid nobody with primary group nogroup and `group` as its
// only supplementary group, umask 022. The child uses the library (a Store of its own) and no
// thread: fork is enough. REQUIRES: root.
ChildResult as_member_of(gid_t group, const std::function<void()>& fn) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string report = "ok";
    int code = 0;
    try {
      if (::setgroups(1, &group) != 0 || ::setgid(kNogroup) != 0 || ::setuid(kNobody) != 0) {
        throw std::runtime_error("cannot drop privileges");
      }
      ::umask(022);
      fn();
    } catch (const lockdb::Error& e) {
      code = 10 + static_cast<int>(e.code());
      report = e.what();
    } catch (const std::exception& e) {
      code = 1;
      report = e.what();
    }
    (void)!::write(fds[1], report.data(), report.size());
    ::_exit(code);
  }
  ::close(fds[1]);
  ChildResult r;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    r.message.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  const int code = WEXITSTATUS(status);
  r.ok = code == 0;
  if (code >= 10) r.code = static_cast<lockdb::Errc>(code - 10);
  return r;
}

// Every directory under `root` (itself included) is setgid, group-writable and of `group`; every
// file is group-readable and -writable and of `group`. Returns the offenders, one line each.
std::vector<std::string> not_shared(const fs::path& root, gid_t group) {
  std::vector<std::string> bad;
  auto check = [&](const fs::path& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      bad.push_back(p.string() + ": gone");
      return;
    }
    const bool dir = S_ISDIR(st.st_mode);
    const mode_t want = dir ? (S_ISGID | S_IRWXG) : (S_IRGRP | S_IWGRP);
    if ((st.st_mode & want) != want || st.st_gid != group) {
      char mode[16];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      bad.push_back(p.string() + ": mode " + mode + ", group " + std::to_string(st.st_gid));
    }
  };
  check(root);
  for (const auto& e : fs::recursive_directory_iterator(root)) check(e.path());
  return bad;
}

std::string long_key() { return "deep/" + std::string(300, 'x'); }  // continuation directories

// A root's writes that create every kind of file and directory a store has: key files and lock
// files in new shard and continuation directories, an update_many intent, log segments (small
// ones, so the log rotates), a compaction, a repaired corrupt key file.
void write_everything(const fs::path& root, const StoreOptions& options) {
  Store store(root, options);
  store.put("config", {{"workers", 4}});
  store.put(long_key(), "long");
  store.update_many({"a", "b", "c"}, [](std::map<std::string, json>& v) {
    v["a"] = 1;
    v["b"] = 2;
    v["c"] = 3;
  });
  store.increment("n");
  for (int i = 0; i < 10; ++i) store.put("filler", i);  // past a few 512-byte segments
  store.put("gone", true);
  store.erase("gone");
  store.put("run", "before");  // rewritten in place below: a file the program makes is its own
  store.with_key_locked("run", Store::LockMode::exclusive,
                        [&] { lockdb::test::write_text(store.file_path("run"), "\"ran\""); });
  REQUIRE(lockdb::compact_history_keep_last(root, 2) > 0);
  lockdb::test::write_text(store.file_path("c"), "{");  // corrupt: repair restores 3
  REQUIRE_FALSE(store.repair().empty());
}

// What the other user does: writes every key there is, a new one, an update_many, an increment,
// enough records to rotate the log, an erase, and a compaction.
void write_as_member(const fs::path& root, const StoreOptions& options) {
  Store store(root, options);
  for (const std::string& key : store.keys()) {
    store.update(key, [](const json& v) { return json{{"was", v}, {"by", "member"}}; });
  }
  store.put("new", "from member");
  store.update_many({"a", "b", "x"}, [](std::map<std::string, json>& v) {
    v["x"] = v.at("a");
    v.erase("b");
  });
  store.increment("counter", 5);
  for (int i = 0; i < 10; ++i) store.put("member_filler", i);
  store.erase("config");
  (void)lockdb::compact_history_keep_last(root, 3);
}

// The store's directory, in a directory others may traverse (a TempDir is 0700).
fs::path shared_root(const TempDir& dir) {
  REQUIRE(::chmod(dir.path().c_str(), 0711) == 0);
  const fs::path root = dir / "store";
  REQUIRE(::mkdir(root.c_str(), 0755) == 0);
  REQUIRE(::chown(root.c_str(), static_cast<uid_t>(-1), kGroup) == 0);
  return root;
}

}  // namespace

TEST_CASE("a group-shared store: another user of its group writes all that root wrote",
          "[shared_group]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root to act as a second user (nobody, in the store's group)");
    return;
  }
  TempDir dir;
  const fs::path root = shared_root(dir);
  StoreOptions options;
  options.log_segment_bytes = 512;  // rotations, by both users
  SECTION("made by hand, as for git: chgrp, chmod 2775") {
    REQUIRE(::chmod(root.c_str(), 02775) == 0);
  }
  SECTION("made by StoreOptions::shared_group at creation") {
    StoreOptions create = options;
    create.shared_group = true;
    Umask umask(022);
    CHECK(Store(root, create).options().shared_group);
    struct stat st {};
    REQUIRE(::stat(root.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 02775);  // 0755 from the umask, then g+rwxs
    CHECK(st.st_gid == kGroup);            // the group it had
  }
  {
    Umask umask(022);
    write_everything(root, options);
  }
  CHECK(not_shared(root, kGroup) == std::vector<std::string>{});

  const ChildResult member = as_member_of(kGroup, [&] { write_as_member(root, options); });
  INFO(member.message);
  REQUIRE(member.ok);

  Store store(root, options);
  CHECK(store.options().shared_group);
  CHECK(store.get("new") == json("from member"));
  CHECK(store.get("x") == json{{"was", 1}, {"by", "member"}});
  CHECK_FALSE(store.contains("b"));
  CHECK_FALSE(store.contains("config"));
  CHECK(store.get("counter") == json(5));
  CHECK(store.get("c") == json{{"was", 3}, {"by", "member"}});
  CHECK(store.get(long_key()) == json{{"was", "long"}, {"by", "member"}});
  CHECK(store.get("run") == json{{"was", "ran"}, {"by", "member"}});
  CHECK(store.get("member_filler") == json(9));
  CHECK(store.verify().empty());
  CHECK(not_shared(root, kGroup) == std::vector<std::string>{});
  // Both users' changes are in the log, in order.
  const auto records = lockdb::History(root).records({.key = "member_filler"});
  REQUIRE_FALSE(records.empty());
  CHECK(records.back().value == json(9));
}

TEST_CASE("without the setgid bit the other user of the group is refused: Errc::permission",
          "[shared_group]") {
  if (::geteuid() != 0) {
    WARN("skipped: needs root to act as a second user (nobody, in the store's group)");
    return;
  }
  TempDir dir;
  const fs::path root = shared_root(dir);
  REQUIRE(::chmod(root.c_str(), 0775) == 0);  // group-writable, not setgid: not shared
  {
    Umask umask(022);
    Store store(root);
    CHECK_FALSE(store.options().shared_group);
    store.put("config", 1);
  }
  const ChildResult member = as_member_of(kGroup, [&] { Store(root).put("config", 2); });
  INFO(member.message);
  REQUIRE_FALSE(member.ok);
  REQUIRE(member.code == lockdb::Errc::permission);
  CHECK(Store(root).get("config") == json(1));
}

TEST_CASE("a group-shared store's files and directories get the group's bits whatever the umask",
          "[shared_group]") {
  // No second user: runs as anyone (the directory keeps the caller's group).
  TempDir dir;
  const fs::path root = dir / "store";
  Umask umask(077);
  StoreOptions options;
  options.shared_group = true;
  options.log_segment_bytes = 512;
  {
    Store store(root, options);
    CHECK(store.options().shared_group);
    store.put("k", 1);
    store.put(long_key(), 2);
    store.update_many({"a", "b"}, [](std::map<std::string, json>& v) { v["a"] = v["b"] = 0; });
    for (int i = 0; i < 10; ++i) store.increment("n");
  }
  struct stat st {};
  REQUIRE(::stat(root.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 02770);  // 0700 from the umask, then g+rwxs: no o bits
  CHECK(not_shared(root, st.st_gid) == std::vector<std::string>{});
  // The others' bits follow the root's: none here.
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    struct stat s {};
    REQUIRE(::lstat(e.path().c_str(), &s) == 0);
    INFO(e.path());
    CHECK((s.st_mode & 07777) == (S_ISDIR(s.st_mode) ? 02770u : 0660u));
  }
  // Rebuilt from its log, it stays group-shared.
  lockdb::rebuild_store(root, dir / "rebuilt");
  CHECK(Store(dir / "rebuilt").options().shared_group);
  CHECK(Store(dir / "rebuilt").get("n") == 10);
  // An existing store is left as it is: shared_group acts at creation only.
  const fs::path plain = dir / "plain";
  { Store(plain).put("k", 1); }
  CHECK_FALSE(Store(plain, options).options().shared_group);
  REQUIRE(::stat(plain.c_str(), &st) == 0);
  CHECK((st.st_mode & S_ISGID) == 0);
}
