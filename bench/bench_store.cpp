// bench_store: lockdb::Store against the alternatives, in one run, with ratios.
//
// Increments per second of one shared key with 1, 2, 4, 8 processes, and of distinct keys (each
// process its own 16 keys), for:
//   lockdb        Store::increment, durability none (the default) / power_loss_unsafe / full
//   raw           a C loop of the store's system calls and nothing else (the design's limit):
//                 flock on a kept-open lock fd, open+read+close the key file, open a temp
//                 (O_EXCL), write, [fsync], close, rename, [fsync dir], write one log line to an
//                 O_APPEND fd, [fsync it], unlock. Same directory layout as the store.
//   python        the seed's pattern: filelock.FileLock(path + ".lock"), json.load, +1,
//                 write a temp file, os.replace (no fsync) — /usr/bin/python3 processes
//   sqlite        WAL, synchronous=NORMAL, busy_timeout, BEGIN IMMEDIATE; one UPDATE; COMMIT
//   lmdb          one write transaction per increment, with sync (default) / MDB_NOSYNC
// on the disk filesystem (a directory under /var/tmp) and on tmpfs (/dev/shm). Then update_many
// transfers of 2 and 8 keys (1 and 4 processes, durability none and power_loss_unsafe) beside
// the raw loop of update_many's system calls and beside N put()s (see "update_many: transfers"
// below), and get/put latency (p50/p99) with 1k, 100k and 1M keys in the store.
//
// Every process is released at once through a pipe (after it set itself up) and runs for
// --seconds; throughput = all increments / wall time; every run checks the final value(s)
// against the increments the workers reported. Ratios compare variants of the same run (same
// filesystem, same process count, measured minutes apart): absolute numbers on this shared VM
// move by 2x between runs, ratios much less (see the reference NOTES).
//
//   bench_store [--seconds S] [--rounds R] [--procs 1,2,4,8] [--fs disk,tmpfs] [--disk DIR]
//               [--tmpfs DIR] [--max-keys N] [--disk-max-keys N] [--only lockdb,raw,...]
//               [--no-latency] [--no-transfers | --transfers-only] [--transfer-seconds S]
//               [--transfer-rounds R]
#include <lockdb/store.hpp>

#include <nlohmann/json.hpp>

#ifdef LOCKDB_BENCH_HAVE_SQLITE
#include <sqlite3.h>
#endif
#ifdef LOCKDB_BENCH_HAVE_LMDB
#include <lmdb.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_support.hpp"
#include "os.hpp"
#include "replace.hpp"

namespace fs = std::filesystem;
using lockdb::bench::median;
using lockdb::bench::paired_ratio;
using lockdb::bench::rate;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
  double seconds = 0.3;
  int rounds = 3;
  std::vector<int> procs = {1, 2, 4, 8};
  fs::path disk = "/var/tmp";
  fs::path tmpfs = "/dev/shm";
  std::size_t max_keys = 1000000;      // latency: largest store on tmpfs
  std::size_t disk_max_keys = 100000;  // latency: largest store on disk
  std::set<std::string> only;          // empty: all variants
  bool latency = true;
  bool increments = true;  // --transfers-only turns off increments and latency
  bool transfers = true;   // --no-transfers
  double transfer_seconds = 0.1;
  int transfer_rounds = 2;
  bool on_disk = true;  // --fs disk,tmpfs
  bool on_tmpfs = true;
  std::string python = "/usr/bin/python3";
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_store: %s (%s)\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void check(bool ok, const std::string& what) {
  if (!ok) die(what);
}

// ---------------------------------------------------------------------------------------------
// Running P processes

// A worker: set itself up in `prepare`, then do increments until the deadline; returns the
// number done. Runs in a forked child.
struct Worker {
  std::function<void(int index)> prepare;
  std::function<long(int index, Clock::time_point deadline)> work;
};

// Forks `procs` children running `worker`, releases them together, returns total ops/s and the
// ops each reported.
struct RunResult {
  double ops_per_sec = 0;
  long ops = 0;
  bool ok = true;
};

// Child side of the hand-shake, shared by C++ workers and (through their argv) Python workers:
// write 'R' to ready_fd, block reading gate_fd until the parent closes it, run, write "<ops>\n"
// to result_fd.
RunResult run_procs(
    int procs, double seconds,
    const std::function<void(int index, int ready_fd, int gate_fd, int result_fd)>& child) {
  int ready[2], gate[2], result[2];
  check(::pipe(ready) == 0 && ::pipe(gate) == 0 && ::pipe(result) == 0, "pipe");
  std::vector<pid_t> pids;
  for (int i = 0; i < procs; ++i) {
    pid_t pid = ::fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
      ::close(ready[0]);
      ::close(gate[1]);
      ::close(result[0]);
      child(i, ready[1], gate[0], result[1]);
      ::_exit(0);
    }
    pids.push_back(pid);
  }
  ::close(ready[1]);
  ::close(gate[0]);
  ::close(result[1]);
  for (int i = 0; i < procs; ++i) {
    char c;
    if (::read(ready[0], &c, 1) != 1) die("a worker failed to start");
  }
  const auto t0 = Clock::now();
  ::close(gate[1]);  // go
  std::string text;
  char buf[256];
  for (;;) {
    ssize_t n = ::read(result[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  const auto t1 = Clock::now();
  RunResult r;
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) r.ok = false;
  }
  ::close(ready[0]);
  ::close(result[0]);
  std::istringstream in(text);
  long ops = 0;
  int reported = 0;
  while (in >> ops) {
    r.ops += ops;
    ++reported;
  }
  if (reported != procs) r.ok = false;
  (void)seconds;
  r.ops_per_sec = static_cast<double>(r.ops) / std::chrono::duration<double>(t1 - t0).count();
  return r;
}

RunResult run_workers(int procs, double seconds, const Worker& worker) {
  return run_procs(procs, seconds, [&](int index, int ready_fd, int gate_fd, int result_fd) {
    try {
      worker.prepare(index);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker %d: %s\n", index, e.what());
      ::_exit(1);
    }
    char c = 'R';
    if (::write(ready_fd, &c, 1) != 1) ::_exit(1);
    while (::read(gate_fd, &c, 1) > 0) {
    }
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(seconds));
    long ops = 0;
    try {
      ops = worker.work(index, deadline);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker %d: %s\n", index, e.what());
      ::_exit(1);
    }
    std::string line = std::to_string(ops) + "\n";
    if (::write(result_fd, line.data(), line.size()) < 0) ::_exit(1);
  });
}

// ---------------------------------------------------------------------------------------------
// The workload: which keys each process increments.

struct Workload {
  bool shared = true;  // one key for all, or 16 own keys per process
  static constexpr int kOwnKeys = 16;
  std::vector<std::string> keys_of(int index) const {
    if (shared) return {"counter"};
    std::vector<std::string> out;
    for (int k = 0; k < kOwnKeys; ++k)
      out.push_back("p" + std::to_string(index) + "-k" + std::to_string(k));
    return out;
  }
  std::vector<std::string> all_keys(int procs) const {
    std::vector<std::string> out;
    for (int i = 0; i < (shared ? 1 : procs); ++i) {
      auto k = keys_of(i);
      out.insert(out.end(), k.begin(), k.end());
    }
    return out;
  }
};

fs::path fresh_dir(const fs::path& base, const std::string& name) {
  std::string tmpl = (base / ("lockdb-bench-" + name + "-XXXXXX")).string();
  check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp in " + base.string());
  return tmpl;
}

// ---- lockdb ----
RunResult bench_lockdb(const fs::path& dir, int procs, const Workload& w, double seconds,
                       lockdb::Durability durability) {
  lockdb::StoreOptions options;
  options.durability = durability;
  {
    lockdb::Store store(dir, options);
    for (const auto& k : w.all_keys(procs)) store.put(k, 0);
  }
  std::unique_ptr<lockdb::Store> store;
  // Set up as the raw loop is before the start: its lock files and the log open (an increment by
  // 0 of each key writes, and logs, the same value), so the timed part is the steady state.
  Worker worker{[&](int index) {
                  store = std::make_unique<lockdb::Store>(dir, options);
                  for (const auto& k : w.keys_of(index)) store->increment(k, 0);
                },
                [&](int index, Clock::time_point deadline) {
                  auto keys = w.keys_of(index);
                  long n = 0;
                  while (Clock::now() < deadline) {
                    store->increment(keys[static_cast<std::size_t>(n) % keys.size()]);
                    ++n;
                  }
                  return n;
                }};
  RunResult r = run_workers(procs, seconds, worker);
  lockdb::Store check_store(dir, options);
  long total = 0;
  for (const auto& k : w.all_keys(procs)) total += check_store.get(k).value().get<long>();
  r.ok = r.ok && total == r.ops;
  return r;
}

// ---- raw loop ----
// Two raw loops. `same` makes exactly the system calls Store::increment makes (strace):
//   flock(key lock, EX); fstat(key lock) (still linked: format 2 removes erased keys' lock
//   files); open(key, O_NOFOLLOW); read; [read (EOF): not where a short read is
//   the end, os::short_reads_end]; close;
//   open(temp, O_CREAT|O_EXCL|O_NOFOLLOW); write; [fsync]; close;
//   none: [fsync temp unless the rename flushes it (ext4)]; where it flushes: link(key, old);
//   rename(temp, key); unlink(old) | else renameat2(temp, key, RENAME_EXCHANGE); unlink(temp);
//   power_loss_unsafe on ext4/btrfs: renameat2(temp, key, RENAME_EXCHANGE); unlink(temp);
//   file/full: rename (the fsynced temp);
//   [open(dir); fsync; close]; flock(log lock, SH); write(log); flock(log lock, UN);
//   [fsync(log)]; flock(key lock, UN)
// so the ratio lockdb / raw is the library's own cost. `minimal` is the least a design of
// "lock, read, write temp, rename, append a line" needs: no EOF read, no log lock (nothing
// coordinates log rotation), directory fd kept open, and rename over the key file (the seed's
// pattern and the reference's c_flock_rename: on ext4 that costs a writeback per rename).
RunResult bench_raw(const fs::path& dir, int procs, const Workload& w, double seconds,
                    lockdb::Durability durability, bool minimal) {
  const bool durable = durability == lockdb::Durability::full;
  // The same layout as the store: key files and lock files where the store puts them.
  std::map<std::string, fs::path> files;
  {
    lockdb::Store store(dir);
    for (const auto& k : w.all_keys(procs)) {
      files[k] = store.file_path(k);
      fs::create_directories(files[k].parent_path());
      std::ofstream(files[k]) << "0";
    }
  }
  const fs::path log_path = dir / "raw.log";
  const fs::path log_lock_path = dir / "raw.log.lock";
  // How the store puts key files in place (replace.hpp): power_loss_unsafe swaps them in where
  // that pays; none renames over the key file where that flushes it (keeping the old one by a
  // second name until the write is logged), else fsyncs the temp file and swaps.
  const long magic = lockdb::os::fs_magic(dir.native());
  const bool unsafe = durability == lockdb::Durability::power_loss_unsafe;
  const bool none = durability == lockdb::Durability::none;
  int dir_probe = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool flushes = lockdb::os::rename_flushes_data(dir_probe);
  ::close(dir_probe);
  const bool link_aside = none && !minimal && flushes;
  const bool sync_temp = durable || (none && !flushes);
  const bool swap_in =
      !minimal && ((unsafe && lockdb::detail::swap_in_pays(magic)) || (none && !flushes));
  const bool eof_read = !minimal && !lockdb::os::short_reads_end(magic);
  struct State {
    std::vector<int> lock_fds;
    std::vector<int> dir_fds;
    std::vector<std::string> paths, temps, olds, dirs;
    int log_fd = -1;
    int log_lock_fd = -1;
  };
  State st;
  Worker worker{
      [&](int index) {
        for (const auto& k : w.keys_of(index)) {
          const fs::path& f = files.at(k);
          st.paths.push_back(f.string());
          st.dirs.push_back(f.parent_path().string());
          st.temps.push_back((f.parent_path() / ("." + f.filename().string() + "." +
                                                 std::to_string(::getpid()) + ".tmp"))
                                 .string());
          st.olds.push_back(st.temps.back() + ".old");
          st.lock_fds.push_back(
              ::open((f.string() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666));
          st.dir_fds.push_back(::open(f.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        }
        st.log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
        st.log_lock_fd = ::open(log_lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        check(st.log_fd >= 0 && st.log_lock_fd >= 0, "open log");
      },
      [&](int, Clock::time_point deadline) {
        long n = 0;
        char buf[64];
        char line[256];
        const int pid = ::getpid();
        while (Clock::now() < deadline) {
          const std::size_t k = static_cast<std::size_t>(n) % st.paths.size();
          const char* path = st.paths[k].c_str();
          check(::flock(st.lock_fds[k], LOCK_EX) == 0, "flock");
          if (!minimal) {
            struct stat lock_st;
            check(::fstat(st.lock_fds[k], &lock_st) == 0 && lock_st.st_nlink > 0, "fstat lock");
          }
          int fd = ::open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
          check(fd >= 0, "open key");
          ssize_t got = ::read(fd, buf, sizeof buf - 1);
          check(got > 0, "read key");
          if (eof_read) check(::read(fd, line, sizeof line) == 0, "read key (EOF)");
          ::close(fd);
          buf[got] = '\0';
          const long v = std::strtol(buf, nullptr, 10) + 1;
          const int len = std::snprintf(buf, sizeof buf, "%ld", v);
          int tfd =
              ::open(st.temps[k].c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
          check(tfd >= 0, "open temp");
          check(::write(tfd, buf, static_cast<std::size_t>(len)) == len, "write temp");
          if (sync_temp) check(::fsync(tfd) == 0, "fsync temp");
          ::close(tfd);
          if (link_aside) {  // as the store: keep the old file, rename over (flushes), drop it
            check(::link(path, st.olds[k].c_str()) == 0, "link old");
            check(::rename(st.temps[k].c_str(), path) == 0, "rename");
          } else if (swap_in) {  // as the store: swap in, unlink the old
            check(::renameat2(AT_FDCWD, st.temps[k].c_str(), AT_FDCWD, path, RENAME_EXCHANGE) == 0,
                  "renameat2");
            check(::unlink(st.temps[k].c_str()) == 0, "unlink old");
          } else {
            check(::rename(st.temps[k].c_str(), path) == 0, "rename");
          }
          if (durable && minimal) check(::fsync(st.dir_fds[k]) == 0, "fsync dir");
          if (durable && !minimal) {
            int dfd = ::open(st.dirs[k].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            check(dfd >= 0 && ::fsync(dfd) == 0, "fsync dir");
            ::close(dfd);
          }
          const int ll = std::snprintf(
              line, sizeof line, "{\"key\":\"%s\",\"op\":\"increment\",\"pid\":%d,\"value\":%ld}\n",
              path, pid, v);
          if (!minimal) check(::flock(st.log_lock_fd, LOCK_SH) == 0, "flock log");
          check(::write(st.log_fd, line, static_cast<std::size_t>(ll)) == ll, "write log");
          if (!minimal) check(::flock(st.log_lock_fd, LOCK_UN) == 0, "unlock log");
          if (link_aside) check(::unlink(st.olds[k].c_str()) == 0, "unlink old");
          if (durable) check(::fsync(st.log_fd) == 0, "fsync log");
          check(::flock(st.lock_fds[k], LOCK_UN) == 0, "unlock");
          ++n;
        }
        return n;
      }};
  RunResult r = run_workers(procs, seconds, worker);
  long total = 0;
  for (const auto& [k, f] : files) {
    std::ifstream in(f);
    long v = 0;
    in >> v;
    total += v;
  }
  r.ok = r.ok && total == r.ops;
  return r;
}

// ---- the seed's Python pattern ----
const char* kPythonWorker = R"PY(
import json, os, sys, time
from filelock import FileLock
ready_fd, gate_fd, result_fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seconds = float(sys.argv[4])
paths = sys.argv[5:]
locks = [FileLock(p + ".lock") for p in paths]
os.write(ready_fd, b"R")
while os.read(gate_fd, 1):
    pass
deadline = time.monotonic() + seconds
n = 0
while time.monotonic() < deadline:
    k = n % len(paths)
    path = paths[k]
    with locks[k]:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        tmp = path + ".tmp" + str(os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(value + 1))
        os.replace(tmp, path)
    n += 1
os.write(result_fd, f"{n}\n".encode())
)PY";

RunResult bench_python(const fs::path& dir, int procs, const Workload& w, double seconds,
                       const std::string& python) {
  std::map<std::string, fs::path> files;
  {
    lockdb::Store store(dir);
    for (const auto& k : w.all_keys(procs)) {
      files[k] = store.file_path(k);
      fs::create_directories(files[k].parent_path());
      std::ofstream(files[k]) << "0";
    }
  }
  const fs::path script = dir / "worker.py";
  std::ofstream(script) << kPythonWorker;
  RunResult r = run_procs(procs, seconds, [&](int index, int ready_fd, int gate_fd, int result_fd) {
    std::vector<std::string> args = {python,
                                     script.string(),
                                     std::to_string(ready_fd),
                                     std::to_string(gate_fd),
                                     std::to_string(result_fd),
                                     std::to_string(seconds)};
    for (const auto& k : w.keys_of(index)) args.push_back(files.at(k).string());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(python.c_str(), argv.data());
    ::_exit(127);
  });
  long total = 0;
  for (const auto& [k, f] : files) {
    std::ifstream in(f);
    long v = 0;
    in >> v;
    total += v;
  }
  r.ok = r.ok && total == r.ops;
  return r;
}

#ifdef LOCKDB_BENCH_HAVE_SQLITE
// ---- SQLite ----
void sqlite_exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    die(std::string("sqlite: ") + sql + ": " + msg);
  }
}

RunResult bench_sqlite(const fs::path& dir, int procs, const Workload& w, double seconds) {
  const std::string db_path = (dir / "bench.db").string();
  {
    sqlite3* db = nullptr;
    check(sqlite3_open(db_path.c_str(), &db) == SQLITE_OK, "sqlite open");
    sqlite_exec(db, "PRAGMA journal_mode=WAL");
    sqlite_exec(db, "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
    for (const auto& k : w.all_keys(procs)) {
      sqlite_exec(db, ("INSERT INTO kv VALUES ('" + k + "', 0)").c_str());
    }
    sqlite3_close(db);
  }
  sqlite3* db = nullptr;
  sqlite3_stmt *begin = nullptr, *update = nullptr, *commit = nullptr;
  Worker worker{
      [&](int) {
        check(sqlite3_open(db_path.c_str(), &db) == SQLITE_OK, "sqlite open");
        sqlite3_busy_timeout(db, 10000);
        sqlite_exec(db, "PRAGMA synchronous=NORMAL");
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, nullptr);
        sqlite3_prepare_v2(db, "UPDATE kv SET v = v + 1 WHERE k = ?1", -1, &update, nullptr);
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, nullptr);
      },
      [&](int index, Clock::time_point deadline) {
        auto keys = w.keys_of(index);
        long n = 0;
        while (Clock::now() < deadline) {
          const std::string& k = keys[static_cast<std::size_t>(n) % keys.size()];
          int rc;
          while ((rc = sqlite3_step(begin)) == SQLITE_BUSY) sqlite3_reset(begin);
          check(rc == SQLITE_DONE, "sqlite begin");
          sqlite3_reset(begin);
          sqlite3_bind_text(update, 1, k.c_str(), static_cast<int>(k.size()), SQLITE_STATIC);
          check(sqlite3_step(update) == SQLITE_DONE, "sqlite update");
          sqlite3_reset(update);
          while ((rc = sqlite3_step(commit)) == SQLITE_BUSY) sqlite3_reset(commit);
          check(rc == SQLITE_DONE, "sqlite commit");
          sqlite3_reset(commit);
          ++n;
        }
        return n;
      }};
  RunResult r = run_workers(procs, seconds, worker);
  sqlite3* check_db = nullptr;
  sqlite3_open(db_path.c_str(), &check_db);
  sqlite3_stmt* sum = nullptr;
  sqlite3_prepare_v2(check_db, "SELECT SUM(v) FROM kv", -1, &sum, nullptr);
  long total = sqlite3_step(sum) == SQLITE_ROW ? sqlite3_column_int64(sum, 0) : -1;
  sqlite3_finalize(sum);
  sqlite3_close(check_db);
  r.ok = r.ok && total == r.ops;
  return r;
}
#endif

#ifdef LOCKDB_BENCH_HAVE_LMDB
// ---- LMDB ----
RunResult bench_lmdb(const fs::path& dir, int procs, const Workload& w, double seconds, bool sync) {
  const unsigned flags = sync ? 0u : static_cast<unsigned>(MDB_NOSYNC);
  auto open_env = [&](MDB_env** env) {
    check(mdb_env_create(env) == 0, "mdb_env_create");
    mdb_env_set_mapsize(*env, 64u << 20);
    check(mdb_env_open(*env, dir.c_str(), flags, 0664) == 0, "mdb_env_open");
  };
  {
    MDB_env* env = nullptr;
    open_env(&env);
    MDB_txn* txn = nullptr;
    MDB_dbi dbi;
    mdb_txn_begin(env, nullptr, 0, &txn);
    mdb_dbi_open(txn, nullptr, 0, &dbi);
    for (const auto& k : w.all_keys(procs)) {
      long zero = 0;
      MDB_val key{k.size(), const_cast<char*>(k.data())}, val{sizeof zero, &zero};
      mdb_put(txn, dbi, &key, &val, 0);
    }
    check(mdb_txn_commit(txn) == 0, "mdb commit");
    mdb_env_close(env);
  }
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  Worker worker{[&](int) {
                  open_env(&env);
                  MDB_txn* txn = nullptr;
                  mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
                  mdb_dbi_open(txn, nullptr, 0, &dbi);
                  mdb_txn_commit(txn);
                },
                [&](int index, Clock::time_point deadline) {
                  auto keys = w.keys_of(index);
                  long n = 0;
                  while (Clock::now() < deadline) {
                    const std::string& k = keys[static_cast<std::size_t>(n) % keys.size()];
                    MDB_txn* txn = nullptr;
                    check(mdb_txn_begin(env, nullptr, 0, &txn) == 0, "mdb begin");
                    MDB_val key{k.size(), const_cast<char*>(k.data())}, val;
                    check(mdb_get(txn, dbi, &key, &val) == 0, "mdb get");
                    long v;
                    std::memcpy(&v, val.mv_data, sizeof v);
                    ++v;
                    MDB_val nv{sizeof v, &v};
                    check(mdb_put(txn, dbi, &key, &nv, 0) == 0, "mdb put");
                    check(mdb_txn_commit(txn) == 0, "mdb commit");
                    ++n;
                  }
                  return n;
                }};
  RunResult r = run_workers(procs, seconds, worker);
  MDB_env* check_env = nullptr;
  open_env(&check_env);
  MDB_txn* txn = nullptr;
  mdb_txn_begin(check_env, nullptr, MDB_RDONLY, &txn);
  MDB_dbi check_dbi;
  mdb_dbi_open(txn, nullptr, 0, &check_dbi);
  long total = 0;
  for (const auto& k : w.all_keys(procs)) {
    MDB_val key{k.size(), const_cast<char*>(k.data())}, val;
    if (mdb_get(txn, check_dbi, &key, &val) == 0) {
      long v;
      std::memcpy(&v, val.mv_data, sizeof v);
      total += v;
    }
  }
  mdb_txn_abort(txn);
  mdb_env_close(check_env);
  r.ok = r.ok && total == r.ops;
  return r;
}
#endif

// ---------------------------------------------------------------------------------------------
// Reporting

struct Variant {
  std::string name;
  std::string note;
  std::function<RunResult(const fs::path& dir, int procs, const Workload& w)> run;
};

void settle(bool disk) {
  // Writeback left by one disk-heavy run slows the next one: flush it first (reference NOTES).
  if (disk) ::sync();
}

void increments(const Options& opt, const std::string& fs_name, const fs::path& base, bool disk,
                const std::vector<Variant>& variants) {
  for (bool shared : {true, false}) {
    Workload w;
    w.shared = shared;
    // Interleave: per P and round, every variant once, so slow drifts of the VM hit all alike;
    // ratios are taken within a round, then the median over rounds is reported. The order turns
    // every round, so no variant always runs right after the same one (on a disk, the previous
    // run's writeback and discards are still going on).
    std::map<std::string, std::map<int, std::vector<RunResult>>> results;
    for (int p : opt.procs) {
      for (int round = 0; round < opt.rounds; ++round) {
        for (std::size_t k = 0; k < variants.size(); ++k) {
          const Variant& v = variants[(k + static_cast<std::size_t>(round)) % variants.size()];
          settle(disk);
          const fs::path dir = fresh_dir(base, v.name);
          results[v.name][p].push_back(v.run(dir, p, w));
          std::error_code ec;
          fs::remove_all(dir, ec);
        }
      }
    }
    auto ops = [&](const std::string& name, int p) {
      std::vector<double> out;
      auto it = results.find(name);
      if (it != results.end()) {
        for (const auto& r : it->second[p]) out.push_back(r.ops_per_sec);
      }
      return out;
    };
    // Median over rounds of a / b measured in the same round; 0 when either is missing.
    auto ratio_of = [&](const std::string& a, const std::string& b, int p) {
      return paired_ratio(ops(a, p), ops(b, p));
    };
    auto show = [](double r) {
      char buf[32];
      if (r <= 0) return std::string("-");
      std::snprintf(buf, sizeof buf, r >= 10 ? "%.1fx" : "%.2fx", r);
      return std::string(buf);
    };

    std::printf("\n### %s: increments/s, %s (median of %d rounds)\n\n", fs_name.c_str(),
                shared ? "one shared key" : "distinct keys (16 per process)", opt.rounds);
    std::printf("| variant |");
    for (int p : opt.procs) std::printf(" P=%d |", p);
    for (int p : opt.procs) std::printf(" P=%d vs raw |", p);
    for (int p : opt.procs) std::printf(" P=%d vs python |", p);
    std::printf("\n|---|");
    for (std::size_t i = 0; i < 3 * opt.procs.size(); ++i) std::printf("---:|");
    std::printf("\n");
    for (const auto& v : variants) {
      std::printf("| %s |", v.name.c_str());
      for (int p : opt.procs) {
        bool ok = true;
        for (const auto& r : results[v.name][p]) ok = ok && r.ok;
        std::printf(" %s%s |", rate(median(ops(v.name, p))).c_str(), ok ? "" : " (WRONG TOTAL)");
      }
      const std::string raw = v.name.find("full") != std::string::npos     ? "raw full"
                              : v.name.find("unsafe") != std::string::npos ? "raw power_loss_unsafe"
                                                                           : "raw none";
      for (int p : opt.procs) std::printf(" %s |", show(ratio_of(v.name, raw, p)).c_str());
      for (int p : opt.procs) std::printf(" %s |", show(ratio_of(v.name, "python", p)).c_str());
      std::printf("\n");
    }
    std::printf(
        "\n\"vs raw\": against the raw loop of the same durability (\"raw\": the store's "
        "exact system calls).\n");
    for (const char* line : {"lockdb none|raw-minimal none", "lockdb full|raw-minimal full",
                             "lockdb none|lockdb power_loss_unsafe"}) {
      std::string a(line), b = a.substr(a.find('|') + 1);
      a = a.substr(0, a.find('|'));
      if (ops(b, opt.procs.front()).empty()) continue;
      std::printf("%s / %s:", a.c_str(), b.c_str());
      for (int p : opt.procs) std::printf("  P=%d %s", p, show(ratio_of(a, b, p)).c_str());
      std::printf("\n");
    }
    std::fflush(stdout);
  }
}

// ---------------------------------------------------------------------------------------------
// update_many: transfers between accounts
//
// kAccounts keys ("accounts", all 0 at the start) shared by every process. A transfer of N keys
// takes N - 1 from the first key of a window of N accounts and gives 1 to each other one, so the
// accounts always sum to 0 (checked after each run). Three ways to do it:
//   update_many   Store::update_many over the N keys (all or nothing, across crashes too)
//   raw           a C loop of update_many's system calls (strace) and nothing else: flock each
//                 key's lock (kept open) in lock-path order; fstat txn/; per key open + fstat +
//                 read + close; per key open its directory (O_PATH), write a temp file in it
//                 [fsync where the store does: tmpfs and other filesystems where a rename does
//                 not flush]; the intent: mkdir txn/.<id>.tmp, open + flock it, write intent.json
//                 [fsync], rename the directory to txn/<id> [fsync txn/] (no fsync with
//                 power_loss_unsafe); the N log lines in one write under the log lock (shared),
//                 after an fstat + fallocate of the room where a line crosses an allocation
//                 block; rename each temp file over its key (power_loss_unsafe on ext4/btrfs:
//                 swap it in and unlink the old file); unlink intent.json, rmdir, unlock
//   put()s        N separate Store::get + Store::put (each key locked, written and logged on its
//                 own: no transaction; concurrent transfers may lose updates, so the sum is
//                 checked with one process only)
struct Transfer {
  static constexpr int kAccounts = 16;
  int keys = 2;  // N

  static std::string account(int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "acct%02d", i);
    return buf;
  }
  // The accounts of transfer number n of process `index`: N neighbours from a moving start.
  std::vector<int> pick(int index, long n) const {
    const long start = (static_cast<long>(index) * 5 + n * 7) % kAccounts;
    std::vector<int> out;
    for (int i = 0; i < keys; ++i) out.push_back(static_cast<int>((start + i) % kAccounts));
    return out;
  }
  // What transfer `accounts` adds to the i-th of them.
  long delta(std::size_t i) const { return i == 0 ? -(keys - 1) : 1; }
};

void fill_accounts(const fs::path& dir, const lockdb::StoreOptions& options) {
  lockdb::Store store(dir, options);
  for (int a = 0; a < Transfer::kAccounts; ++a) store.put(Transfer::account(a), 0);
}

// The accounts' sum, read through a Store.
long accounts_sum(const fs::path& dir) {
  lockdb::Store store(dir);
  long sum = 0;
  for (int a = 0; a < Transfer::kAccounts; ++a) {
    sum += store.get(Transfer::account(a)).value().get<long>();
  }
  return sum;
}

RunResult bench_update_many(const fs::path& dir, int procs, const Transfer& t, double seconds,
                            lockdb::Durability durability) {
  lockdb::StoreOptions options;
  options.durability = durability;
  fill_accounts(dir, options);
  std::unique_ptr<lockdb::Store> store;
  std::vector<std::string> all;
  for (int a = 0; a < Transfer::kAccounts; ++a) all.push_back(Transfer::account(a));
  // As the raw loop before the start: every key's lock file open (an update_many that changes
  // nothing locks them all and writes nothing) and the log open (a put of the same value).
  Worker worker{[&](int) {
                  store = std::make_unique<lockdb::Store>(dir, options);
                  store->update_many(all, [](std::map<std::string, nlohmann::json>&) {});
                  store->put(all[0], store->get(all[0]).value());
                },
                [&](int index, Clock::time_point deadline) {
                  long n = 0;
                  std::vector<std::string> keys;
                  while (Clock::now() < deadline) {
                    const auto picked = t.pick(index, n);
                    keys.clear();
                    for (int a : picked) keys.push_back(Transfer::account(a));
                    store->update_many(keys, [&](std::map<std::string, nlohmann::json>& m) {
                      for (std::size_t i = 0; i < keys.size(); ++i) {
                        m[keys[i]] = m[keys[i]].get<long>() + t.delta(i);
                      }
                    });
                    ++n;
                  }
                  return n;
                }};
  RunResult r = run_workers(procs, seconds, worker);
  r.ok = r.ok && accounts_sum(dir) == 0;
  return r;
}

RunResult bench_transfer_puts(const fs::path& dir, int procs, const Transfer& t, double seconds,
                              lockdb::Durability durability) {
  lockdb::StoreOptions options;
  options.durability = durability;
  fill_accounts(dir, options);
  std::unique_ptr<lockdb::Store> store;
  Worker worker{[&](int) {
                  store = std::make_unique<lockdb::Store>(dir, options);
                  for (int a = 0; a < Transfer::kAccounts; ++a) {
                    const std::string key = Transfer::account(a);
                    store->put(key, store->get(key).value());
                  }
                },
                [&](int index, Clock::time_point deadline) {
                  long n = 0;
                  while (Clock::now() < deadline) {
                    const auto picked = t.pick(index, n);
                    for (std::size_t i = 0; i < picked.size(); ++i) {
                      const std::string key = Transfer::account(picked[i]);
                      store->put(key, store->get(key).value().get<long>() + t.delta(i));
                    }
                    ++n;
                  }
                  return n;
                }};
  RunResult r = run_workers(procs, seconds, worker);
  if (procs == 1) r.ok = r.ok && accounts_sum(dir) == 0;
  return r;
}

RunResult bench_transfer_raw(const fs::path& dir, int procs, const Transfer& t, double seconds,
                             lockdb::Durability durability) {
  fill_accounts(dir, {});
  struct Account {
    std::string file, dir, name, lock, temp;
  };
  std::vector<Account> accounts;
  {
    lockdb::Store store(dir);
    for (int a = 0; a < Transfer::kAccounts; ++a) {
      const fs::path f = store.file_path(Transfer::account(a));
      accounts.push_back(
          {f.string(), f.parent_path().string(), f.filename().string(), f.string() + ".lock", ""});
    }
  }
  const long magic = lockdb::os::fs_magic(dir.native());
  const bool unsafe = durability == lockdb::Durability::power_loss_unsafe;
  int dir_probe = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool flushes = lockdb::os::rename_flushes_data(dir_probe);
  ::close(dir_probe);
  const bool sync_temp = !unsafe && !flushes;
  const bool swap_in = unsafe && lockdb::detail::swap_in_pays(magic);
  const bool eof_read = !lockdb::os::short_reads_end(magic);
  const std::uint64_t block = magic == 0x01021994 ? 4096 : magic == 0xEF53 ? 1024 : 512;
  const fs::path log_path = dir / "raw.log";
  const fs::path log_lock_path = dir / "raw.log.lock";
  const fs::path txn_path = dir / "txn";
  struct State {
    std::vector<int> lock_fds;
    int txn_fd = -1, log_fd = -1, log_lock_fd = -1;
    std::uint64_t appended = 0;  // this process's estimate of the log's size
  };
  State st;
  Worker worker{
      [&](int) {
        for (auto& a : accounts) {
          a.temp = "." + a.name + "." + std::to_string(::getpid()) + ".tmp";
          st.lock_fds.push_back(::open(a.lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666));
          check(st.lock_fds.back() >= 0, "open lock");
        }
        st.txn_fd = ::open(txn_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        st.log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
        st.log_lock_fd = ::open(log_lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        check(st.txn_fd >= 0 && st.log_fd >= 0 && st.log_lock_fd >= 0, "open txn/, log");
      },
      [&](int index, Clock::time_point deadline) {
        long n = 0;
        char buf[64];
        struct stat sb {};
        std::vector<int> keys;
        std::vector<long> values;
        std::vector<int> dir_fds;
        std::string intent, lines;
        const int pid = ::getpid();
        while (Clock::now() < deadline) {
          const auto picked = t.pick(index, n);
          // Lock order: the lock files' paths, as the store sorts them.
          keys.assign(picked.begin(), picked.end());
          std::sort(keys.begin(), keys.end(), [&](int a, int b) {
            return accounts[static_cast<std::size_t>(a)].lock <
                   accounts[static_cast<std::size_t>(b)].lock;
          });
          for (int k : keys)
            check(::flock(st.lock_fds[static_cast<std::size_t>(k)], LOCK_EX) == 0, "flock");
          check(::fstat(st.txn_fd, &sb) == 0, "fstat txn/");
          values.clear();
          for (int k : picked) {
            const Account& a = accounts[static_cast<std::size_t>(k)];
            int fd = ::open(a.file.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
            check(fd >= 0 && ::fstat(fd, &sb) == 0, "open key");
            const ssize_t got = ::read(fd, buf, sizeof buf - 1);
            check(got > 0, "read key");
            if (eof_read) check(::read(fd, buf + got, 1) == 0, "read key (EOF)");
            ::close(fd);
            buf[got] = '\0';
            values.push_back(std::strtol(buf, nullptr, 10) + t.delta(values.size()));
          }
          // Stage the new files.
          dir_fds.clear();
          char id[32];
          std::snprintf(id, sizeof id, "%08x%08lx", static_cast<unsigned>(pid),
                        static_cast<unsigned long>(n));
          intent = std::string("{\"txn\":\"") + id + "\",\"changes\":[";
          lines.clear();
          for (std::size_t i = 0; i < picked.size(); ++i) {
            const Account& a = accounts[static_cast<std::size_t>(picked[i])];
            const int dfd = ::open(a.dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            check(dfd >= 0, "open key dir");
            dir_fds.push_back(dfd);
            const int len = std::snprintf(buf, sizeof buf, "%ld", values[i]);
            const int tfd = ::openat(dfd, a.temp.c_str(),
                                     O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
            check(tfd >= 0, "open temp");
            check(::write(tfd, buf, static_cast<std::size_t>(len)) == len, "write temp");
            if (sync_temp) check(::fsync(tfd) == 0, "fsync temp");
            ::close(tfd);
            intent += std::string(i ? "," : "") + "{\"key\":\"" + Transfer::account(picked[i]) +
                      "\",\"prev\":\"0123456789abcdef\",\"version\":\"0123456789abcdef\","
                      "\"bytes\":\"" +
                      buf + "\"}";
            char line[320];
            const int ll = std::snprintf(
                line, sizeof line,
                "{\"time\":\"2026-12-07T00:00:00.000000Z\",\"key\":\"%s\",\"op\":\"update_many\","
                "\"prev\":\"0123456789abcdef\",\"version\":\"0123456789abcdef\",\"txn\":\"%s\","
                "\"pid\":%d,\"host\":\"host\",\"value\":%s}\n",
                Transfer::account(picked[i]).c_str(), id, pid, buf);
            lines.append(line, static_cast<std::size_t>(ll));
          }
          intent += "]}\n";
          // The intent: decided once its directory is renamed into place.
          const std::string temp_dir = std::string(".") + id + ".tmp";
          check(::mkdirat(st.txn_fd, temp_dir.c_str(), 0777) == 0, "mkdir intent");
          const int mfd = ::openat(st.txn_fd, temp_dir.c_str(),
                                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          check(mfd >= 0 && ::flock(mfd, LOCK_EX | LOCK_NB) == 0, "lock intent");
          const int ifd =
              ::openat(mfd, "intent.json",
                       O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
          check(ifd >= 0, "open intent");
          check(::write(ifd, intent.data(), intent.size()) == static_cast<ssize_t>(intent.size()),
                "write intent");
          if (!unsafe) check(::fsync(ifd) == 0, "fsync intent");
          ::close(ifd);
          check(::renameat(st.txn_fd, temp_dir.c_str(), st.txn_fd, id) == 0, "rename intent");
          if (!unsafe) check(::fsync(st.txn_fd) == 0, "fsync txn/");
          // The records, in one write.
          check(::flock(st.log_lock_fd, LOCK_SH) == 0, "flock log");
          if (st.appended % block + lines.size() > block) {
            check(::fstat(st.log_fd, &sb) == 0, "fstat log");
            check(::fallocate(st.log_fd, FALLOC_FL_KEEP_SIZE, sb.st_size,
                              static_cast<off_t>(lines.size())) == 0,
                  "fallocate log");
          }
          check(
              ::write(st.log_fd, lines.data(), lines.size()) == static_cast<ssize_t>(lines.size()),
              "write log");
          st.appended += lines.size();
          check(::flock(st.log_lock_fd, LOCK_UN) == 0, "unlock log");
          // In place, then the intent goes.
          for (std::size_t i = 0; i < picked.size(); ++i) {
            const Account& a = accounts[static_cast<std::size_t>(picked[i])];
            if (swap_in) {
              check(::renameat2(dir_fds[i], a.temp.c_str(), dir_fds[i], a.name.c_str(),
                                RENAME_EXCHANGE) == 0,
                    "renameat2");
              check(::unlinkat(dir_fds[i], a.temp.c_str(), 0) == 0, "unlink old");
            } else {
              check(::renameat(dir_fds[i], a.temp.c_str(), dir_fds[i], a.name.c_str()) == 0,
                    "rename");
            }
          }
          check(::unlinkat(mfd, "intent.json", 0) == 0, "unlink intent");
          check(::unlinkat(st.txn_fd, id, AT_REMOVEDIR) == 0, "rmdir intent");
          ::close(mfd);
          for (int dfd : dir_fds) ::close(dfd);
          for (int k : keys) ::flock(st.lock_fds[static_cast<std::size_t>(k)], LOCK_UN);
          ++n;
        }
        return n;
      }};
  RunResult r = run_workers(procs, seconds, worker);
  r.ok = r.ok && accounts_sum(dir) == 0;
  return r;
}

// Transfers of 2 and 8 keys with 1 and 4 processes, at durability none (the default) and
// power_loss_unsafe: update_many beside its raw loop and beside N put()s, interleaved per round
// as the increments are.
void transfers(const Options& opt, const std::string& fs_name, const fs::path& base, bool disk) {
  struct Row {
    int keys, procs;
    lockdb::Durability durability;
  };
  std::vector<Row> rows;
  for (int keys : {2, 8}) {
    for (int procs : {1, 4}) {
      for (auto d : {lockdb::Durability::none, lockdb::Durability::power_loss_unsafe}) {
        rows.push_back({keys, procs, d});
      }
    }
  }
  using Bench = RunResult (*)(const fs::path&, int, const Transfer&, double, lockdb::Durability);
  const std::vector<std::pair<const char*, Bench>> variants = {{"update_many", bench_update_many},
                                                               {"raw", bench_transfer_raw},
                                                               {"puts", bench_transfer_puts}};
  std::printf(
      "\n### %s: transfers/s between %d accounts (update_many of N keys; median of %d rounds of "
      "%.2f s)\n\n",
      fs_name.c_str(), Transfer::kAccounts, opt.transfer_rounds, opt.transfer_seconds);
  std::printf(
      "| keys | P | durability | update_many | raw loop | N put()s | update_many / raw | "
      "update_many / N put()s |\n|---:|---:|---|---:|---:|---:|---:|---:|\n");
  for (const Row& row : rows) {
    Transfer t;
    t.keys = row.keys;
    std::map<std::string, std::vector<double>> ops;
    bool ok = true;
    for (int round = 0; round < opt.transfer_rounds; ++round) {
      for (std::size_t k = 0; k < variants.size(); ++k) {
        const auto& [name, bench] =
            variants[(k + static_cast<std::size_t>(round)) % variants.size()];
        settle(disk);
        const fs::path dir = fresh_dir(base, "transfers");
        const RunResult r = bench(dir, row.procs, t, opt.transfer_seconds, row.durability);
        ok = ok && r.ok;
        ops[name].push_back(r.ops_per_sec);
        std::error_code ec;
        fs::remove_all(dir, ec);
      }
    }
    auto show = [](double r) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2fx", r);
      return std::string(buf);
    };
    const bool unsafe = row.durability == lockdb::Durability::power_loss_unsafe;
    std::printf("| %d | %d | %s | %s | %s | %s | %s | %s |%s\n", row.keys, row.procs,
                unsafe ? "power_loss_unsafe" : "none", rate(median(ops["update_many"])).c_str(),
                rate(median(ops["raw"])).c_str(), rate(median(ops["puts"])).c_str(),
                show(paired_ratio(ops["update_many"], ops["raw"])).c_str(),
                show(paired_ratio(ops["update_many"], ops["puts"])).c_str(),
                ok ? "" : " WRONG SUM");
    std::fflush(stdout);
  }
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

void latency(const std::string& fs_name, const fs::path& base, std::size_t max_keys) {
  std::printf("\n### %s: get/put latency vs number of keys (1 process, durability none)\n\n",
              fs_name.c_str());
  std::printf("| keys | fill (s) | get p50 us | get p99 us | put p50 us | put p99 us |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  for (std::size_t n : {std::size_t{1000}, std::size_t{100000}, std::size_t{1000000}}) {
    if (n > max_keys) continue;
    const fs::path dir = fresh_dir(base, "latency");
    lockdb::Store store(dir);
    // Fill: the key files are plain JSON files, so they are written directly (as a bulk import
    // would); the measured gets and puts then go through the store.
    const auto f0 = Clock::now();
    std::set<fs::path> made;
    for (std::size_t i = 0; i < n; ++i) {
      const std::string key = "user:" + std::to_string(i);
      const fs::path file = store.file_path(key);
      if (made.insert(file.parent_path()).second) fs::create_directories(file.parent_path());
      const std::string text = nlohmann::json{{"id", i}, {"name", key}}.dump(2);
      int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
      check(fd >= 0, "fill open");
      check(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()), "fill");
      ::close(fd);
    }
    const double fill = std::chrono::duration<double>(Clock::now() - f0).count();
    settle(true);
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<std::size_t> pick(0, n - 1);
    std::vector<double> gets, puts;
    const int samples = 3000;
    for (int i = 0; i < samples; ++i) {
      const std::string key = "user:" + std::to_string(pick(rng));
      const auto t0 = Clock::now();
      auto v = store.get(key);
      gets.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      check(v.has_value(), "get");
    }
    for (int i = 0; i < samples; ++i) {
      const std::size_t id = pick(rng);
      const std::string key = "user:" + std::to_string(id);
      const auto t0 = Clock::now();
      store.put(key, nlohmann::json{{"id", id}, {"name", key}, {"seen", i}});
      puts.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::printf("| %zu | %.1f | %.1f | %.1f | %.1f | %.1f |\n", n, fill, percentile(gets, 0.5),
                percentile(gets, 0.99), percentile(puts, 0.5), percentile(puts, 0.99));
    std::fflush(stdout);
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::istringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--seconds") {
      opt.seconds = std::stod(next());
    } else if (a == "--rounds") {
      opt.rounds = std::stoi(next());
    } else if (a == "--procs") {
      opt.procs = parse_list(next());
    } else if (a == "--disk") {
      opt.disk = next();
    } else if (a == "--tmpfs") {
      opt.tmpfs = next();
    } else if (a == "--max-keys") {
      opt.max_keys = std::stoul(next());
    } else if (a == "--disk-max-keys") {
      opt.disk_max_keys = std::stoul(next());
    } else if (a == "--python") {
      opt.python = next();
    } else if (a == "--fs") {
      const std::string v = next();
      opt.on_disk = v.find("disk") != std::string::npos;
      opt.on_tmpfs = v.find("tmpfs") != std::string::npos;
    } else if (a == "--no-latency") {
      opt.latency = false;
    } else if (a == "--no-transfers") {
      opt.transfers = false;
    } else if (a == "--transfers-only") {
      opt.increments = false;
      opt.latency = false;
    } else if (a == "--transfer-seconds") {
      opt.transfer_seconds = std::stod(next());
    } else if (a == "--transfer-rounds") {
      opt.transfer_rounds = std::stoi(next());
    } else if (a == "--only") {
      std::istringstream in(next());
      std::string item;
      while (std::getline(in, item, ',')) opt.only.insert(item);
    } else {
      std::fprintf(stderr,
                   "usage: bench_store [--seconds S] [--rounds R] [--procs 1,2,4,8]\n"
                   "                   [--fs disk,tmpfs] [--disk DIR] [--tmpfs DIR]\n"
                   "                   [--max-keys N] [--disk-max-keys N] [--python PATH]\n"
                   "                   [--only lockdb,raw,python,sqlite,lmdb] [--no-latency]\n"
                   "                   [--no-transfers | --transfers-only]\n"
                   "                   [--transfer-seconds S] [--transfer-rounds R]\n");
      return 2;
    }
  }
  const bool have_python =
      ::access(opt.python.c_str(), X_OK) == 0 &&
      std::system((opt.python + " -c 'import filelock' 2>/dev/null").c_str()) == 0;

  std::vector<Variant> variants;
  auto want = [&](const std::string& family) { return opt.only.empty() || opt.only.count(family); };
  if (want("lockdb")) {
    variants.push_back({"lockdb none", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_lockdb(d, p, w, opt.seconds, lockdb::Durability::none);
                        }});
    variants.push_back(
        {"lockdb power_loss_unsafe", "", [&](const fs::path& d, int p, const Workload& w) {
           return bench_lockdb(d, p, w, opt.seconds, lockdb::Durability::power_loss_unsafe);
         }});
  }
  if (want("raw")) {
    variants.push_back({"raw none", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_raw(d, p, w, opt.seconds, lockdb::Durability::none, false);
                        }});
    variants.push_back(
        {"raw power_loss_unsafe", "", [&](const fs::path& d, int p, const Workload& w) {
           return bench_raw(d, p, w, opt.seconds, lockdb::Durability::power_loss_unsafe, false);
         }});
    variants.push_back({"raw-minimal none", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_raw(d, p, w, opt.seconds, lockdb::Durability::none, true);
                        }});
  }
  if (want("python") && have_python) {
    variants.push_back({"python", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_python(d, p, w, opt.seconds, opt.python);
                        }});
  }
#ifdef LOCKDB_BENCH_HAVE_SQLITE
  if (want("sqlite")) {
    variants.push_back({"sqlite wal normal", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_sqlite(d, p, w, opt.seconds);
                        }});
  }
#endif
#ifdef LOCKDB_BENCH_HAVE_LMDB
  if (want("lmdb")) {
    variants.push_back({"lmdb nosync", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_lmdb(d, p, w, opt.seconds, false);
                        }});
  }
#endif
  if (want("lockdb")) {
    variants.push_back({"lockdb full", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_lockdb(d, p, w, opt.seconds, lockdb::Durability::full);
                        }});
  }
  if (want("raw")) {
    variants.push_back({"raw full", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_raw(d, p, w, opt.seconds, lockdb::Durability::full, false);
                        }});
    variants.push_back({"raw-minimal full", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_raw(d, p, w, opt.seconds, lockdb::Durability::full, true);
                        }});
  }
#ifdef LOCKDB_BENCH_HAVE_LMDB
  if (want("lmdb")) {
    variants.push_back({"lmdb sync", "", [&](const fs::path& d, int p, const Workload& w) {
                          return bench_lmdb(d, p, w, opt.seconds, true);
                        }});
  }
#endif

  std::printf("# bench_store\n\n%.2f s per run, %d rounds; processes:", opt.seconds, opt.rounds);
  for (int p : opt.procs) std::printf(" %d", p);
  std::printf("; disk dir %s, tmpfs dir %s; python %s\n", opt.disk.c_str(), opt.tmpfs.c_str(),
              have_python ? opt.python.c_str() : "(not available)");
  if (opt.transfers) {
    std::printf("transfers: %.2f s per run, %d rounds\n", opt.transfer_seconds,
                opt.transfer_rounds);
  }
  const auto t0 = Clock::now();
  if (opt.increments && opt.on_disk) {
    increments(opt, "disk (" + opt.disk.string() + ")", opt.disk, true, variants);
  }
  if (opt.increments && opt.on_tmpfs) {
    increments(opt, "tmpfs (" + opt.tmpfs.string() + ")", opt.tmpfs, false, variants);
  }
  if (opt.transfers && opt.on_disk) {
    transfers(opt, "disk (" + opt.disk.string() + ")", opt.disk, true);
  }
  if (opt.transfers && opt.on_tmpfs) {
    transfers(opt, "tmpfs (" + opt.tmpfs.string() + ")", opt.tmpfs, false);
  }
  if (opt.latency && opt.on_disk) {
    latency("disk (" + opt.disk.string() + ")", opt.disk, opt.disk_max_keys);
  }
  if (opt.latency && opt.on_tmpfs) {
    latency("tmpfs (" + opt.tmpfs.string() + ")", opt.tmpfs, opt.max_keys);
  }
  std::printf("\ntotal time %.0f s\n", std::chrono::duration<double>(Clock::now() - t0).count());
  return 0;
}
