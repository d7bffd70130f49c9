// Crash states: what a power cut (or kernel crash) can leave of a store or a file written by the
// files.hpp helpers, in the spirit of ALICE (OSDI 2014) and CrashMonkey. A SIGKILL test cannot
// show it: the page cache survives a killed process, not a power cut.
//
// 1. Record: the scenario runs on a real directory with a recorder on the OS seam
//    (os::set_recorder): every successful call that changes a file or a directory, its paths
//    taken relative to the directory (descriptors named through /proc/self/fd).
// 2. Construct: replaying the trace from a snapshot of the directory taken before the scenario,
//    every crash point (after each recorded call) gives a namespace and, per file, the content
//    written so far and the content known to be durable. A filesystem model says what is durable:
//    - ext4_ordered (ext4 data=ordered with auto_da_alloc): metadata calls (create, mkdir,
//      rename, link, unlink) persist in order; file data persists when fsynced, and also when
//      the file is renamed over an existing file (plain rename: not RENAME_EXCHANGE, not
//      RENAME_NOREPLACE) or was truncated to zero and then closed after writing.
//    - unsynced_lost: every metadata call up to the crash persists; file data not fsynced may be
//      lost, whatever the calls around it.
//    Data that is not durable is, per file, kept, lost (back to its durable content: empty for a
//    new file) or torn (a prefix halfway between). Per crash point: everything kept, everything
//    lost, everything torn, and each of the first kMaxSingled unsynced files alone lost or alone
//    kept; states are deduplicated over the whole trace.
// 3. Check: each state is written to a fresh directory and checked (Store opened there, values,
//    verify(), a write to every key; or a helper's file holds its old or new bytes).
//
// Durability under test (store scenarios): LOCKDB_CRASH_DURABILITY=none|file|full, default the
// store's default. LOCKDB_CRASH_SHOW=n lists n problems of a failing test case (default 8).
// Filesystem model: each scenario has one test case per model, tagged [ext4] or [unsynced] (select
// with a Catch2 tag). The trace is that of the filesystem of $TMPDIR: on ext4 the store's default
// swaps key files in with RENAME_EXCHANGE, on tmpfs it renames.
#include "os.hpp"
#include "support.hpp"

#include <lockdb/files.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using lockdb::Durability;
using lockdb::Store;
using lockdb::StoreOptions;
using lockdb::os::Mutation;
using lockdb::test::TempDir;
using nlohmann::json;

namespace {

// ---- 1. recording ----

// One recorded call, its paths relative to the recorded root.
struct TraceOp {
  Mutation::Kind kind;
  std::string path;     // the file (fd calls) or the first path
  std::string to_path;  // rename*, link
  std::string data;     // write
  std::int64_t offset = 0;
  std::int64_t length = 0;
  int flags = 0;
  bool is_dir = false;  // fsync: of a directory
};

const char* kind_name(Mutation::Kind k) {
  switch (k) {
    case Mutation::Kind::open: return "open";
    case Mutation::Kind::create_temp: return "create_temp";
    case Mutation::Kind::write: return "write";
    case Mutation::Kind::truncate: return "truncate";
    case Mutation::Kind::fallocate: return "fallocate";
    case Mutation::Kind::fsync: return "fsync";
    case Mutation::Kind::close_written: return "close_written";
    case Mutation::Kind::mkdir: return "mkdir";
    case Mutation::Kind::rename: return "rename";
    case Mutation::Kind::rename_exchange: return "rename_exchange";
    case Mutation::Kind::rename_noreplace: return "rename_noreplace";
    case Mutation::Kind::link: return "link";
    case Mutation::Kind::unlink: return "unlink";
  }
  return "?";
}

std::string describe(const TraceOp& op) {
  std::string s = std::string(kind_name(op.kind)) + " " + op.path;
  if (!op.to_path.empty()) s += " -> " + op.to_path;
  if (op.kind == Mutation::Kind::write) {
    s += " @" + std::to_string(op.offset) + " " + std::to_string(op.data.size()) + " bytes";
  }
  if (op.kind == Mutation::Kind::truncate) s += " to " + std::to_string(op.length);
  return s;
}

std::string fd_path(int fd) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Records the calls under `root` (calls elsewhere, and on files already unlinked, are dropped).
class TraceRecorder final : public lockdb::os::Recorder {
 public:
  explicit TraceRecorder(const fs::path& root)
      : root_(fs::canonical(root).native() + "/"),
        given_(fs::absolute(root).lexically_normal().native() + "/") {
    lockdb::os::set_recorder(this);
  }
  ~TraceRecorder() { lockdb::os::set_recorder(nullptr); }
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  void record(const Mutation& m) noexcept override {
    try {
      TraceOp op{m.kind};
      op.flags = m.flags;
      op.offset = m.offset;
      op.length = m.length;
      std::optional<std::string> path;
      if (m.fd >= 0) {
        path = relative(fd_path(m.fd));
        struct stat st {};
        op.is_dir = ::fstat(m.fd, &st) == 0 && S_ISDIR(st.st_mode);
        if (m.kind == Mutation::Kind::write) {
          op.data = std::string(m.data);
          if (m.offset < 0) {  // at the file position, now just past the data
            op.offset = ::lseek(m.fd, 0, SEEK_CUR) - static_cast<std::int64_t>(m.data.size());
          }
        }
      } else {
        path = relative(resolve(m.dir_fd, m.path));
        if (!m.to_path.empty()) {
          auto to = relative(resolve(m.to_dir_fd, m.to_path));
          if (!to) return;
          op.to_path = *to;
        }
      }
      if (!path) return;
      op.path = *path;
      ops_.push_back(std::move(op));
    } catch (...) {
      failed_ = true;
    }
  }

  const std::vector<TraceOp>& ops() const { return ops_; }
  bool failed() const { return failed_; }

 private:
  static std::string resolve(int dir_fd, std::string_view path) {
    if (!path.empty() && path.front() == '/') return std::string(path);
    std::string base = dir_fd == AT_FDCWD ? fs::current_path().native() : fd_path(dir_fd);
    if (path.empty()) return base;
    return base + "/" + std::string(path);
  }
  // `p` relative to the root ("" for the root itself); nullopt outside it.
  std::optional<std::string> relative(const std::string& p) const {
    std::string norm = fs::path(p).lexically_normal().native();
    while (norm.size() > 1 && norm.back() == '/') norm.pop_back();
    for (const std::string& root : {root_, given_}) {
      if (norm + "/" == root) return std::string();
      if (norm.compare(0, root.size(), root) == 0) return norm.substr(root.size());
    }
    return std::nullopt;
  }

  std::string root_;   // canonical, as /proc/self/fd names files
  std::string given_;  // as the scenario names it (paths given to calls by string)
  std::vector<TraceOp> ops_;
  bool failed_ = false;
};

// ---- 2. crash states ----

enum class Model { ext4_ordered, unsynced_lost };

const char* model_name(Model m) {
  return m == Model::ext4_ordered ? "ext4 data=ordered, auto_da_alloc" : "unsynced data lost";
}

// A directory tree as a crash leaves it: relative path -> content (nullopt: a directory).
using Tree = std::map<std::string, std::optional<std::string>>;

struct Inode {
  bool dir = false;
  std::string data;             // as written
  std::string durable;          // what survives a crash for sure
  bool flush_on_close = false;  // ext4: truncated to zero, flushed when closed after writing
};

// The filesystem as a crash after some prefix of the trace leaves it.
class Replay {
 public:
  Replay(const Tree& before, Model model) : model_(model) {
    for (const auto& [path, content] : before) {
      Inode ino;
      ino.dir = !content;
      if (content) ino.data = ino.durable = *content;
      names_[path] = add(std::move(ino));
    }
  }

  void apply(const TraceOp& op) {
    switch (op.kind) {
      case Mutation::Kind::open:
        if (!names_.count(op.path) && (op.flags & O_CREAT) != 0) names_[op.path] = add({});
        if ((op.flags & O_TRUNC) != 0) truncate(op.path, 0);
        break;
      case Mutation::Kind::create_temp: names_[op.path] = add({}); break;
      case Mutation::Kind::write:
        if (Inode* ino = file(op.path)) {
          const auto end = static_cast<std::size_t>(op.offset) + op.data.size();
          if (ino->data.size() < end) ino->data.resize(end, '\0');
          ino->data.replace(static_cast<std::size_t>(op.offset), op.data.size(), op.data);
        }
        break;
      case Mutation::Kind::truncate: truncate(op.path, static_cast<std::size_t>(op.length)); break;
      case Mutation::Kind::fallocate:  // KEEP_SIZE: no content changes
        break;
      case Mutation::Kind::fsync:  // a directory's: its entries, which persist anyway here
        if (Inode* ino = file(op.path)) ino->durable = ino->data;
        break;
      case Mutation::Kind::close_written:
        if (Inode* ino = file(op.path); ino && ino->flush_on_close) {
          ino->durable = ino->data;
          ino->flush_on_close = false;
        }
        break;
      case Mutation::Kind::mkdir: {
        std::string prefix;
        for (const auto& part : fs::path(op.path)) {
          prefix = prefix.empty() ? part.native() : prefix + "/" + part.native();
          if (!names_.count(prefix)) names_[prefix] = add({.dir = true});
        }
        break;
      }
      case Mutation::Kind::rename:
        if (Inode* target = file(op.to_path); target && model_ == Model::ext4_ordered) {
          if (Inode* source = file(op.path)) source->durable = source->data;  // auto_da_alloc
        }
        remove(op.to_path);
        move(op.path, op.to_path);
        break;
      case Mutation::Kind::rename_noreplace: move(op.path, op.to_path); break;
      case Mutation::Kind::rename_exchange:
        move(op.path, "\x01swap");
        move(op.to_path, op.path);
        move("\x01swap", op.to_path);
        break;
      case Mutation::Kind::link:
        if (names_.count(op.path)) names_[op.to_path] = names_[op.path];
        break;
      case Mutation::Kind::unlink: remove(op.path); break;
    }
  }

  // The files whose data may still be lost, in path order (a file under two names once).
  std::vector<std::string> unsynced() const {
    std::vector<std::string> out;
    std::set<std::size_t> seen;
    for (const auto& [path, id] : names_) {
      const Inode& ino = inodes_[id];
      if (!ino.dir && ino.data != ino.durable && seen.insert(id).second) out.push_back(path);
    }
    return out;
  }

  enum class Fate { kept, lost, torn };
  // The tree with each unsynced file's data kept, lost or torn: `fate(path)` says which.
  Tree tree(const std::function<Fate(const std::string&)>& fate) const {
    std::map<std::size_t, Fate> fates;
    for (const auto& path : unsynced()) fates[names_.at(path)] = fate(path);
    Tree out;
    for (const auto& [path, id] : names_) {
      const Inode& ino = inodes_[id];
      if (ino.dir) {
        out[path] = std::nullopt;
        continue;
      }
      auto f = fates.find(id);
      if (f == fates.end() || f->second == Fate::kept) {
        out[path] = ino.data;
      } else if (f->second == Fate::lost) {
        out[path] = ino.durable;
      } else {  // torn: the durable bytes' common prefix with the data, and half of the rest
        std::size_t common = 0;
        while (common < ino.durable.size() && common < ino.data.size() &&
               ino.durable[common] == ino.data[common]) {
          ++common;
        }
        out[path] = ino.data.substr(0, common + (ino.data.size() - common) / 2);
      }
    }
    return out;
  }

 private:
  std::size_t add(Inode ino) {
    inodes_.push_back(std::move(ino));
    return inodes_.size() - 1;
  }
  Inode* file(const std::string& path) {
    auto it = names_.find(path);
    if (it == names_.end() || inodes_[it->second].dir) return nullptr;
    return &inodes_[it->second];
  }
  void truncate(const std::string& path, std::size_t size) {
    Inode* ino = file(path);
    if (ino == nullptr) return;
    if (size == 0 && !ino->data.empty() && model_ == Model::ext4_ordered) {
      ino->flush_on_close = true;
    }
    ino->data.resize(size, '\0');
  }
  // The entry at `path` and everything under it.
  std::vector<std::string> subtree(const std::string& path) const {
    std::vector<std::string> out;
    for (auto it = names_.lower_bound(path); it != names_.end(); ++it) {
      if (it->first != path && it->first.compare(0, path.size() + 1, path + "/") != 0) {
        if (it->first.compare(0, path.size(), path) != 0) break;
        continue;
      }
      out.push_back(it->first);
    }
    return out;
  }
  void remove(const std::string& path) {
    for (const auto& p : subtree(path)) names_.erase(p);
  }
  void move(const std::string& from, const std::string& to) {
    std::vector<std::pair<std::string, std::size_t>> moved;
    for (const auto& p : subtree(from)) {
      moved.emplace_back(to + p.substr(from.size()), names_[p]);
      names_.erase(p);
    }
    for (auto& [p, id] : moved) names_[p] = id;
  }

  Model model_;
  std::vector<Inode> inodes_;
  std::map<std::string, std::size_t> names_;
};

// Files alone lost (or alone kept) per crash point: bounds the state count.
constexpr std::size_t kMaxSingled = 6;

struct CrashState {
  Tree tree;
  std::string where;  // the crash point and what was lost, for a failure message
};

// Every distinct state a crash after each prefix of `ops` can leave, under `model`.
std::vector<CrashState> crash_states(const Tree& before, const std::vector<TraceOp>& ops,
                                     Model model) {
  std::vector<CrashState> out;
  std::set<Tree> seen;
  Replay replay(before, model);
  auto add = [&](Tree t, std::string where) {
    if (seen.insert(t).second) out.push_back({std::move(t), std::move(where)});
  };
  for (std::size_t i = 0; i <= ops.size(); ++i) {
    if (i > 0) replay.apply(ops[i - 1]);
    const std::string point =
        i == 0 ? std::string("before the first call")
               : "after call " + std::to_string(i) + " (" + describe(ops[i - 1]) + ")";
    using Fate = Replay::Fate;
    add(replay.tree([](const std::string&) { return Fate::kept; }), point + ", all data kept");
    const auto unsynced = replay.unsynced();
    if (unsynced.empty()) continue;
    add(replay.tree([](const std::string&) { return Fate::lost; }),
        point + ", all unsynced data lost");
    add(replay.tree([](const std::string&) { return Fate::torn; }),
        point + ", all unsynced data torn");
    for (std::size_t j = 0; j < unsynced.size() && j < kMaxSingled; ++j) {
      const std::string& one = unsynced[j];
      add(replay.tree([&](const std::string& p) { return p == one ? Fate::lost : Fate::kept; }),
          point + ", only " + one + " lost");
      add(replay.tree([&](const std::string& p) { return p == one ? Fate::kept : Fate::lost; }),
          point + ", only " + one + " kept");
    }
  }
  return out;
}

Tree snapshot(const fs::path& root) {
  Tree t;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string rel = e.path().lexically_relative(root).native();
    if (e.is_directory()) {
      t[rel] = std::nullopt;
    } else {
      t[rel] = lockdb::test::read_text(e.path());
    }
  }
  return t;
}

void materialise(const Tree& tree, const fs::path& root) {
  for (const auto& [path, content] : tree) {  // parents sort before their entries
    if (!content) {
      fs::create_directories(root / path);
    } else {
      fs::create_directories((root / path).parent_path());
      lockdb::test::write_text(root / path, *content);
    }
  }
}

// ---- 3. checking ----

// Problems found in a crash state; none: it keeps the promises.
using Check = std::function<std::vector<std::string>(const fs::path& dir)>;

struct Scenario {
  fs::path root;                      // what is recorded (the store, or a helper's directory)
  std::function<void()> setup;        // before the snapshot: not recorded
  std::function<void()> run;          // recorded
  std::function<Check()> make_check;  // after the run (may read what the run left)
};

struct Outcome {
  std::size_t calls = 0;
  std::size_t states = 0;
  std::vector<std::string> failures;  // "<state>: <problem>"
};

// Where crash states are written to be checked: memory (tmpfs) where there is one, as the checks
// only read and write them (the recorded scenario runs on $TMPDIR, whose filesystem it shows).
TempDir state_dir() {
  const fs::path shm = "/dev/shm";
  if (::access(shm.c_str(), W_OK) == 0) return TempDir(shm);
  return TempDir();
}

// Where a scenario runs, for a model: ext4's on $TMPDIR (ext4 here: renames over a file flush
// it, and the store relies on that); the stricter one on tmpfs, where the store behaves as on
// every filesystem that does not flush on rename (xfs, btrfs, NFS: it fsyncs before renaming).
TempDir scenario_dir(Model model) {
  if (model == Model::unsynced_lost) return state_dir();
  return TempDir();
}

Outcome explore(const Scenario& s, Model model) {
  s.setup();
  const Tree before = snapshot(s.root);
  std::vector<TraceOp> ops;
  {
    TraceRecorder recorder(s.root);
    s.run();
    REQUIRE_FALSE(recorder.failed());
    ops = recorder.ops();
  }
  const Check check = s.make_check();
  Outcome out;
  out.calls = ops.size();
  const auto states = crash_states(before, ops, model);
  out.states = states.size();
  for (const auto& state : states) {
    TempDir dir = state_dir();
    const fs::path at = dir / "crashed";
    fs::create_directories(at);
    materialise(state.tree, at);
    // A power cut is followed by a reboot: the store finds another boot id than the one it
    // recorded (the store runs its recovery once per boot).
    if (fs::exists(at / "lockdb-store.json")) {
      std::ofstream(at / "boot-id") << "00000000-0000-0000-0000-crash-state\n";
    }
    for (const auto& problem : check(at)) out.failures.push_back(state.where + ": " + problem);
  }
  return out;
}

// The report of a run: its size, and its first failures.
std::string summary(const Outcome& o, Model model) {
  std::ostringstream s;
  s << model_name(model) << ": " << o.calls << " calls, " << o.states << " crash states, "
    << o.failures.size() << " problems";
  const char* show = std::getenv("LOCKDB_CRASH_SHOW");  // how many problems to list
  const std::size_t limit = show != nullptr ? std::strtoul(show, nullptr, 10) : 8;
  for (std::size_t i = 0; i < o.failures.size() && i < limit; ++i) s << "\n  " << o.failures[i];
  return s.str();
}

Durability durability_under_test() {
  const char* env = std::getenv("LOCKDB_CRASH_DURABILITY");
  const std::string d = env != nullptr ? env : "";
  if (d == "file") return Durability::file;
  if (d == "full") return Durability::full;
  if (d == "none") return Durability::none;
  return StoreOptions{}.durability;
}

std::string show(const std::optional<json>& v) { return v ? v->dump() : "(absent)"; }

// What a store must hold after any crash of a scenario.
struct StoreExpectations {
  StoreOptions options;
  // Per key, every value it really had (nullopt: absent).
  std::map<std::string, std::vector<std::optional<json>>> had;
  // Keys written together (update_many): all hold their `before` values or all their `after`.
  std::vector<std::string> together;
  std::map<std::string, std::optional<json>> before, after;
};

// Findings that are not a disagreement between keys and log: a crash's leftovers.
bool crash_debris(lockdb::Finding::Kind k) {
  return k == lockdb::Finding::Kind::orphan_temp || k == lockdb::Finding::Kind::torn_log_line;
}

std::vector<std::string> check_store(const fs::path& dir, const StoreExpectations& want) {
  std::vector<std::string> problems;
  StoreOptions options = want.options;
  options.create = false;
  std::optional<Store> store;
  try {
    store.emplace(dir, options);
  } catch (const std::exception& e) {
    return {std::string("the store does not open: ") + e.what()};
  }
  std::map<std::string, std::optional<json>> now;
  for (const auto& [key, had] : want.had) {
    try {
      now[key] = store->get(key);
    } catch (const std::exception& e) {
      problems.push_back("get(" + key + ") throws: " + e.what());
      continue;
    }
    bool known = false;
    for (const auto& v : had) known = known || v == now[key];
    if (!known) problems.push_back(key + " holds " + show(now[key]) + ", a value it never had");
  }
  for (const auto& key : store->keys()) {
    if (!want.had.count(key)) problems.push_back("a key that never existed: " + key);
  }
  if (!want.together.empty() && problems.empty()) {
    bool all_before = true, all_after = true;
    std::string values;
    for (const auto& key : want.together) {
      all_before = all_before && now[key] == want.before.at(key);
      all_after = all_after && now[key] == want.after.at(key);
      values += " " + key + "=" + show(now[key]);
    }
    if (!all_before && !all_after) {
      problems.push_back("update_many left some keys old and some new:" + values);
    }
  }
  for (const auto& f : store->verify()) {
    if (!crash_debris(f.kind)) {
      problems.push_back(std::string("verify: ") + lockdb::finding_kind_name(f.kind) + " " + f.key +
                         ": " + f.detail);
    }
  }
  for (const auto& [key, had] : want.had) {
    try {
      store->put(key, json("written after the crash"));
      if (store->get(key) != json("written after the crash")) {
        problems.push_back("put(" + key + ") after the crash does not read back");
      }
    } catch (const std::exception& e) {
      problems.push_back("put(" + key + ") after the crash throws: " + e.what());
    }
  }
  return problems;
}

// A store scenario: setup writes `initial` (and runs `prepare`), the recorded run is `run`;
// every key's values over the run are taken from what `run` reports through `note`.
struct StoreScenario {
  StoreOptions options;
  std::map<std::string, json> initial;
  std::function<void(Store&)> prepare;  // after initial, before the snapshot
  std::function<void(Store&)> run;
  std::vector<std::string> together;  // keys update_many writes in the run
};

Outcome explore_store(const StoreScenario& sc, Model model) {
  TempDir tmp = scenario_dir(model);
  const fs::path dir = tmp / "store";
  StoreExpectations want;
  want.options = sc.options;
  Scenario s;
  s.root = dir;
  s.setup = [&] {
    Store store(dir, sc.options);
    for (const auto& [k, v] : sc.initial) store.put(k, v);
    if (sc.prepare) sc.prepare(store);
    for (const auto& k : store.keys()) want.had[k].push_back(store.get(k));
  };
  s.run = [&] {
    Store store(dir, sc.options);
    sc.run(store);
  };
  s.make_check = [&]() -> Check {
    // Every value each key had: from the log of the run (a record per change).
    lockdb::History history(dir);
    for (const auto& r : history.records()) {
      if (!r.prev_version) want.had[r.key].push_back(std::nullopt);  // absent before it
      want.had[r.key].push_back(r.value);
    }
    for (const auto& k : sc.together) {
      want.before[k] = want.had[k].front();
      want.after[k] = want.had[k].back();
    }
    want.together = sc.together;
    return [&want](const fs::path& at) { return check_store(at, want); };
  };
  return explore(s, model);
}

StoreOptions store_options() {
  StoreOptions o;
  o.durability = durability_under_test();
  return o;
}

void require_clean(const Outcome& o, Model model) {
  INFO(summary(o, model));
  CHECK(o.states > 1);
  REQUIRE(o.failures.empty());
}

// The files.hpp helpers: after any crash the file holds its old or its new bytes.
Outcome explore_file(const std::function<void(const fs::path&)>& write, const std::string& old,
                     Model model) {
  TempDir tmp = scenario_dir(model);
  const fs::path dir = tmp / "files";
  const fs::path file = dir / "data.json";
  Scenario s;
  s.root = dir;
  s.setup = [&] {
    fs::create_directories(dir);
    lockdb::atomic_write(file, old, {.durability = Durability::full});
  };
  s.run = [&] { write(file); };
  s.make_check = [&]() -> Check {
    const std::string now = lockdb::test::read_text(file);
    return [now, old, name = file.filename()](const fs::path& at) -> std::vector<std::string> {
      if (!fs::exists(at / name)) return {"the file is gone"};
      const std::string got = lockdb::test::read_text(at / name);
      if (got == old || got == now) return {};
      if (got.empty()) return {"the file is empty"};
      return {"the file holds neither its old nor its new bytes: \"" + got + "\""};
    };
  };
  return explore(s, model);
}

}  // namespace

// ---- the explorer itself ----

TEST_CASE("crash states: the recorder sees an atomic_write as create write fsync close rename",
          "[crash]") {
  TempDir tmp;
  const fs::path file = tmp / "f";
  lockdb::test::write_text(file, "old");
  std::vector<TraceOp> ops;
  {
    TraceRecorder recorder(tmp.path());
    lockdb::atomic_write(file, "new", {.durability = Durability::file, .take_lock = false});
    ops = recorder.ops();
  }
  std::vector<std::string> seen;
  for (const auto& op : ops) seen.push_back(kind_name(op.kind));
  REQUIRE(seen ==
          std::vector<std::string>{"create_temp", "write", "fsync", "close_written", "rename"});
  CHECK(ops[1].data == "new");
  CHECK(ops[1].offset == 0);
  CHECK(ops[0].path == ops[1].path);
  CHECK(ops[4].path == ops[0].path);
  CHECK(ops[4].to_path == "f");
}

TEST_CASE(
    "crash states: a write and rename without fsync can leave an empty file when unsynced "
    "data is lost and the checker flags it",
    "[crash]") {
  // The known-bad pattern, through the seam: temp file, write, close, rename over the target.
  auto write = [](const fs::path& f) {
    const std::string temp = f.native() + ".tmp";
    auto fd = lockdb::os::open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(fd.ok());
    REQUIRE(lockdb::os::write_all(fd.value, "{\"n\": 2}\n").ok());
    REQUIRE(lockdb::os::close_written(fd.value).ok());
    REQUIRE(lockdb::os::rename(temp, f).ok());
  };
  auto empty_flagged = [](const Outcome& o) {
    for (const auto& f : o.failures) {
      if (f.find("the file is empty") != std::string::npos) return true;
    }
    return false;
  };
  const Outcome lost = explore_file(write, "{\"n\": 1}\n", Model::unsynced_lost);
  INFO(summary(lost, Model::unsynced_lost));
  CHECK(empty_flagged(lost));
  // ext4's auto_da_alloc flushes a file renamed over another: the same pattern is safe there.
  const Outcome ext4 = explore_file(write, "{\"n\": 1}\n", Model::ext4_ordered);
  INFO(summary(ext4, Model::ext4_ordered));
  CHECK(ext4.failures.empty());
}

TEST_CASE(
    "crash states: a rename over an existing file flushes its data under ext4 auto_da_alloc "
    "and a RENAME_EXCHANGE does not",
    "[crash]") {
  const Tree before = {{"f", std::string("old")}};
  auto trace = [](Mutation::Kind put_in_place) {
    std::vector<TraceOp> ops;
    ops.push_back({.kind = Mutation::Kind::create_temp, .path = "t"});
    ops.push_back({.kind = Mutation::Kind::write, .path = "t", .data = "new"});
    ops.push_back({.kind = Mutation::Kind::close_written, .path = "t"});
    ops.push_back({.kind = put_in_place, .path = "t", .to_path = "f"});
    if (put_in_place == Mutation::Kind::rename_exchange) {
      ops.push_back({.kind = Mutation::Kind::unlink, .path = "t"});
    }
    return ops;
  };
  auto contents_of_f = [&](Mutation::Kind k, Model m) {
    std::set<std::string> out;
    for (const auto& s : crash_states(before, trace(k), m)) {
      if (auto it = s.tree.find("f"); it != s.tree.end() && it->second) out.insert(*it->second);
    }
    return out;
  };
  using K = Mutation::Kind;
  CHECK(contents_of_f(K::rename, Model::ext4_ordered) == std::set<std::string>{"old", "new"});
  CHECK(contents_of_f(K::rename, Model::unsynced_lost) ==
        std::set<std::string>{"old", "new", "", "n"});
  CHECK(contents_of_f(K::rename_exchange, Model::ext4_ordered) ==
        std::set<std::string>{"old", "new", "", "n"});
}

// ---- the store ----
// The store's promise at its default durability (DESIGN.md "The store contract"): a power cut
// leaves every key a value it really had, never an empty or partial file, the store writable
// without manual repair, keys and log in agreement (verify), update_many all or nothing.

namespace {

void store_put(Model model) {
  StoreScenario sc;
  sc.options = store_options();
  sc.initial = {{"a", 1}, {"b", 1}, {"c", 1}};
  sc.run = [](Store& s) {
    s.put("a", 2);
    s.put("b", json{{"two", 2}});
    s.put("d", "new key");
  };
  require_clean(explore_store(sc, model), model);
}

void store_increment(Model model) {
  StoreScenario sc;
  sc.options = store_options();
  sc.initial = {{"n", 1}};
  sc.run = [](Store& s) {
    s.increment("n");
    s.increment("n");
    s.increment("m", 5);
  };
  require_clean(explore_store(sc, model), model);
}

void store_erase(Model model) {
  StoreScenario sc;
  sc.options = store_options();
  sc.initial = {{"a", 1}, {"b", 1}};
  sc.run = [](Store& s) { s.erase("a"); };
  require_clean(explore_store(sc, model), model);
}

void store_update_many(Model model) {
  StoreScenario sc;
  sc.options = store_options();
  sc.initial = {{"a", 1}, {"b", 1}, {"c", 1}};
  sc.together = {"a", "b", "c"};
  sc.run = [](Store& s) {
    s.update_many({"a", "b", "c"}, [](std::map<std::string, json>& m) {
      for (auto& [k, v] : m) v = 5;
    });
  };
  require_clean(explore_store(sc, model), model);
}

void store_log_rotation(Model model) {
  StoreScenario sc;
  sc.options = store_options();
  sc.options.log_segment_bytes = 300;  // a record or two per segment
  sc.initial = {{"a", 1}, {"b", 1}};
  sc.run = [](Store& s) {
    for (int i = 2; i <= 5; ++i) s.put(i % 2 == 0 ? "a" : "b", i);
  };
  require_clean(explore_store(sc, model), model);
}

void store_compaction(Model model) {
  StoreScenario sc;
  sc.options = store_options();
  sc.options.log_segment_bytes = 400;
  sc.initial = {{"a", 1}, {"b", 1}};
  sc.prepare = [](Store& s) {
    for (int i = 2; i <= 6; ++i) s.put("a", i);
    s.erase("b");
  };
  sc.run = [](Store& s) { lockdb::compact_history_keep_last(s.dir(), 1); };
  require_clean(explore_store(sc, model), model);
}

}  // namespace

TEST_CASE("crash states: put leaves each key a value it had and verify clean (ext4 ordered)",
          "[crash][ext4]") {
  store_put(Model::ext4_ordered);
}
TEST_CASE("crash states: put leaves each key a value it had and verify clean (unsynced data lost)",
          "[crash][unsynced]") {
  store_put(Model::unsynced_lost);
}
TEST_CASE("crash states: increment leaves a count it had and verify clean (ext4 ordered)",
          "[crash][ext4]") {
  store_increment(Model::ext4_ordered);
}
TEST_CASE("crash states: increment leaves a count it had and verify clean (unsynced data lost)",
          "[crash][unsynced]") {
  store_increment(Model::unsynced_lost);
}
TEST_CASE("crash states: erase leaves the key present or gone and verify clean (ext4 ordered)",
          "[crash][ext4]") {
  store_erase(Model::ext4_ordered);
}
TEST_CASE(
    "crash states: erase leaves the key present or gone and verify clean (unsynced data lost)",
    "[crash][unsynced]") {
  store_erase(Model::unsynced_lost);
}
TEST_CASE("crash states: update_many leaves all keys old or all new (ext4 ordered)",
          "[crash][ext4]") {
  store_update_many(Model::ext4_ordered);
}
TEST_CASE("crash states: update_many leaves all keys old or all new (unsynced data lost)",
          "[crash][unsynced]") {
  store_update_many(Model::unsynced_lost);
}
TEST_CASE("crash states: log rotation keeps keys and log in agreement (ext4 ordered)",
          "[crash][ext4]") {
  store_log_rotation(Model::ext4_ordered);
}
TEST_CASE("crash states: log rotation keeps keys and log in agreement (unsynced data lost)",
          "[crash][unsynced]") {
  store_log_rotation(Model::unsynced_lost);
}
TEST_CASE("crash states: history compaction keeps every key and a clean log (ext4 ordered)",
          "[crash][ext4]") {
  store_compaction(Model::ext4_ordered);
}
TEST_CASE("crash states: history compaction keeps every key and a clean log (unsynced data lost)",
          "[crash][unsynced]") {
  store_compaction(Model::unsynced_lost);
}

// ---- the files.hpp helpers (their promise holds under the ext4 model) ----

TEST_CASE(
    "crash states: atomic_write leaves the old or the new bytes and never an empty file "
    "(ext4 ordered)",
    "[crash][ext4]") {
  const Outcome o = explore_file([](const fs::path& f) { lockdb::atomic_write(f, "{\"n\": 2}\n"); },
                                 "{\"n\": 1}\n", Model::ext4_ordered);
  require_clean(o, Model::ext4_ordered);
}

TEST_CASE(
    "crash states: atomic_json_update leaves the old or the new document and never an empty "
    "file (ext4 ordered)",
    "[crash][ext4]") {
  const Outcome o = explore_file(
      [](const fs::path& f) { lockdb::atomic_json_update(f, [](json& d) { d["n"] = 2; }); },
      "{\"n\": 1}\n", Model::ext4_ordered);
  require_clean(o, Model::ext4_ordered);
}
