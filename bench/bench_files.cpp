// bench_files: atomic_json_update increments per second, 1/2/4/8 processes, on one shared file
// and on one file per process, against
//   python   the seed's Python pattern: its own atomic_json_update (python3 + filelock, json,
//            os.replace), one interpreter per process;
//   raw      a raw C loop of exactly the system calls atomic_json_update makes (strace), no JSON
//            library: the lock file opened, its filesystem asked (fstatfs) and fstat'ed (a regular
//            file) on every call and closed after it (no descriptor is kept between calls), fstat
//            after flock (the lock file still has a name), fstat + one read of the data file (its
//            size and the permission bits kept), the temp file created with those bits and
//            fstat'ed (the umask took none), then rename, or where lockdb swaps files in (ext4,
//            btrfs: replace.hpp) renameat2 RENAME_EXCHANGE + unlink. This is the design's limit:
//            lockdb/raw is the library's own cost, and the target applies to it (as bench_store's
//            "raw");
//   raw-unsafe / lockdb-unsafe  the same with Durability::power_loss_unsafe: swapped in on
//            ext4/btrfs, never fsynced (the default, none, renames over where that flushes
//            (ext4) and fsyncs the temp file elsewhere);
//   raw-minimal  the least a "flock + read + write temp + rename" loop needs: no check of the lock
//            file, no permission bits kept, a second read to see the end of the file, rename
//            over the data file (the seed's pattern; on ext4 that starts writeback of every new
//            file). raw/raw-minimal is the price of the two checks and of the kept permissions.
// All write without fsync where the filesystem allows (atomic_json_update's default, `none`), in
// the same directory, in one run; the variants are interleaved, the median of the rounds is
// printed, and each ratio is the median of the rounds' ratios (a round's variants run back to back,
// so load that comes and goes between rounds cancels out). Every run checks its final counters. It
// runs in the temp directory and, where that is not tmpfs, in /dev/shm (tmpfs: the disk out of the
// picture); --dir (repeatable) names the directories instead.
//
//   bench_files [--seconds 0.1] [--rounds 5] [--dir DIR]... [--procs 1,2,4,8] [--python PATH]
#include <lockdb/files.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_support.hpp"
#include "os.hpp"
#include "replace.hpp"
#include "seed_python.hpp"

namespace fs = std::filesystem;
using lockdb::bench::median;
using lockdb::bench::paired_ratio;
using lockdb::bench::rate;
using Clock = std::chrono::steady_clock;

namespace {

// The seed's atomic_json_update, verbatim, in a timed loop.
const std::string kPythonWorker = std::string(lockdb::test::kSeedAtomicJsonUpdate) + R"PY(
def bump(data):
    data["n"] = data.get("n", 0) + 1
    return data

print("READY", flush=True)
sys.stdin.readline()
end = time.monotonic() + float(sys.argv[2])
count = 0
while time.monotonic() < end:
    atomic_json_update(sys.argv[1], bump)
    count += 1
print(count, flush=True)
)PY";

// ---- workers (this program re-executed with --worker) ----

void ready_and_wait() {
  std::printf("READY\n");
  std::fflush(stdout);
  char c;
  while (::read(0, &c, 1) == 1 && c != '\n') {
  }
}

long lockdb_worker(const std::string& name, double seconds, lockdb::Durability durability) {
  const fs::path path(name);  // made once, as a program that updates one file keeps its path
  ready_and_wait();
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  long count = 0;
  while (Clock::now() < end) {
    lockdb::atomic_json_update(path, [](nlohmann::json& doc) { doc["n"] = doc.value("n", 0L) + 1; },
                               {.durability = durability});
    ++count;
  }
  return count;
}

long raw_minimal_worker(const std::string& path, double seconds) {
  const std::string lock = path + ".lock", temp = path + ".tmp" + std::to_string(::getpid());
  const int lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (lock_fd < 0) throw std::runtime_error("raw-minimal: cannot open " + lock);
  ready_and_wait();
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  long count = 0;
  char in[4096], out[64];
  while (Clock::now() < end) {
    if (::flock(lock_fd, LOCK_EX) != 0) throw std::runtime_error("raw-minimal: flock");
    long value = 0;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      // To the end of the file: a read that returns less than asked for may not be the end.
      std::size_t len = 0;
      for (ssize_t n; (n = ::read(fd, in + len, sizeof in - 1 - len)) > 0;) {
        len += static_cast<std::size_t>(n);
      }
      ::close(fd);
      in[len] = '\0';
      const char* digits = std::strpbrk(in, "0123456789");
      if (digits) value = std::strtol(digits, nullptr, 10);
    }
    const int len = std::snprintf(out, sizeof out, "{\n  \"n\": %ld\n}\n", value + 1);
    const int t = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (t < 0 || ::write(t, out, static_cast<std::size_t>(len)) != len) {
      throw std::runtime_error("raw-minimal: cannot write " + temp);
    }
    ::close(t);
    if (::rename(temp.c_str(), path.c_str()) != 0) throw std::runtime_error("raw-minimal: rename");
    ::flock(lock_fd, LOCK_UN);
    ++count;
  }
  return count;
}

// The system calls of one atomic_json_update, in its order (see "raw" at the top).
long raw_worker(const std::string& path, double seconds, bool unsafe) {
  const std::string lock = path + ".lock";
  char pid_hex[16];
  const auto hex_end = std::to_chars(pid_hex, pid_hex + sizeof pid_hex, ::getpid(), 16).ptr;
  const std::string temp = fs::path(path).parent_path().string() + "/." +
                           fs::path(path).filename().string() + "." +
                           std::string(pid_hex, hex_end) + ".tmp";
  ready_and_wait();
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  long count = 0;
  char in[16384], out[64];
  struct stat st {};
  while (Clock::now() < end) {
    // The lock file is opened (and its filesystem asked) anew each time: no descriptor is kept.
    const int lock_fd =
        ::open(lock.c_str(), O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
    if (lock_fd < 0) throw std::runtime_error("raw: cannot open " + lock);
    const bool swap_in = unsafe && lockdb::detail::swap_in_pays(lockdb::os::fs_magic(lock_fd));
    if (::fstat(lock_fd, &st) != 0 || !S_ISREG(st.st_mode)) throw std::runtime_error("raw: lock");
    if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0 && ::flock(lock_fd, LOCK_EX) != 0) {
      throw std::runtime_error("raw: flock");
    }
    if (::fstat(lock_fd, &st) != 0 || st.st_nlink == 0) throw std::runtime_error("raw: lock");
    long value = 0;
    unsigned mode = 0644;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      std::size_t size = sizeof in - 2;
      if (::fstat(fd, &st) == 0) {
        mode = st.st_mode & 07777;
        size = std::min(size, static_cast<std::size_t>(st.st_size));
      }
      const ssize_t n = ::read(fd, in, size + 1);
      ::close(fd);
      in[n > 0 ? n : 0] = '\0';
      const char* digits = std::strpbrk(in, "0123456789");
      if (digits) value = std::strtol(digits, nullptr, 10);
    }
    const int len = std::snprintf(out, sizeof out, "{\n  \"n\": %ld\n}\n", value + 1);
    const int t = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (t < 0 || ::write(t, out, static_cast<std::size_t>(len)) != len) {
      throw std::runtime_error("raw: cannot write " + temp);
    }
    if (::fstat(t, &st) != 0 || (st.st_mode & 07777) != mode) ::fchmod(t, mode);
    // none: fsync unless a rename over the existing file flushes it (ext4: fstatfs, fstat).
    if (!unsafe && (fd < 0 || !lockdb::os::rename_flushes_data(t))) ::fsync(t);
    ::close(t);
    if (swap_in &&
        ::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str(), RENAME_EXCHANGE) == 0) {
      ::unlink(temp.c_str());  // the old content, now under the temp name
    } else if (::rename(temp.c_str(), path.c_str()) != 0) {
      throw std::runtime_error("raw: rename");
    }
    ::flock(lock_fd, LOCK_UN);
    ::close(lock_fd);
    ++count;
  }
  return count;
}

// ---- the driver ----

// A worker process with its stdin and stdout on pipes.
class Proc {
 public:
  explicit Proc(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe failed");
    }
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~Proc() {
    ::close(to_);
    ::close(from_);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;

  std::string read_line() {
    std::string line;
    char c;
    while (::read(from_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }
  void go() {
    if (::write(to_, "\n", 1) != 1) throw std::runtime_error("cannot start a worker");
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
};

struct Options {
  double seconds = 0.1;
  int rounds = 5;
  std::vector<fs::path> dirs;  // empty: the temp directory, and /dev/shm if another filesystem
  std::vector<int> procs = {1, 2, 4, 8};
  std::string python;
};

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

std::string find_python(const std::string& preferred) {
  for (const std::string& py :
       {preferred, std::string("/usr/bin/python3"), std::string("python3")}) {
    if (py.empty()) continue;
    const std::string cmd = py + " -c 'import filelock' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return {};
}

std::string fs_name(const fs::path& dir) {
  switch (static_cast<unsigned long>(lockdb::os::fs_magic(dir.native()))) {
    case 0: return "?";  // statfs failed
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794c7630: return "overlayfs";
    default: return "other";
  }
}

long read_counter(const fs::path& p) {
  std::FILE* f = std::fopen(p.c_str(), "r");
  if (!f) return 0;
  char buf[256] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* digits = std::strpbrk(buf, "0123456789");
  return digits ? std::strtol(digits, nullptr, 10) : 0;
}

// One timed run: `procs` workers of `variant`, on one file or one file each. Returns ops/s.
double run_once(const Options& o, const fs::path& base, const std::string& variant, int procs,
                bool one_file) {
  std::string tmpl = (base / "bench-files-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed in " + base.string());
  const fs::path dir = tmpl;
  std::vector<fs::path> files;
  for (int i = 0; i < procs; ++i) {
    files.push_back(dir / (one_file ? "counter.json" : "counter" + std::to_string(i) + ".json"));
  }
  const std::string secs = std::to_string(o.seconds);
  std::vector<std::unique_ptr<Proc>> workers;
  for (int i = 0; i < procs; ++i) {
    const std::string file = files[static_cast<std::size_t>(i)].string();
    if (variant == "python") {
      workers.push_back(std::make_unique<Proc>(
          std::vector<std::string>{o.python, "-c", kPythonWorker, file, secs}));
    } else {
      workers.push_back(std::make_unique<Proc>(
          std::vector<std::string>{self_exe(), "--worker", variant, file, secs}));
    }
  }
  for (auto& w : workers) {
    if (w->read_line() != "READY") throw std::runtime_error(variant + " worker failed to start");
  }
  if (fs_name(base) != "tmpfs") {
    ::sync();  // writeback left by the previous run slows the next one (reference NOTES)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto t0 = Clock::now();
  for (auto& w : workers) w->go();
  long total = 0;
  std::map<std::string, long> per_file;
  for (int i = 0; i < procs; ++i) {
    const std::string line = workers[static_cast<std::size_t>(i)]->read_line();
    if (line.empty() || line.find_first_not_of("0123456789") != std::string::npos) {
      throw std::runtime_error(variant + " worker failed: '" + line + "'");
    }
    total += std::stol(line);
    per_file[files[static_cast<std::size_t>(i)].string()] += std::stol(line);
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  workers.clear();
  for (const auto& [file, count] : per_file) {
    if (read_counter(file) != count) {
      throw std::runtime_error(variant + ": lost updates in " + file + ": " +
                               std::to_string(read_counter(file)) + " != " + std::to_string(count));
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return static_cast<double>(total) / elapsed;
}

void drive_dir(const Options& o, const fs::path& base) {
  std::vector<std::string> variants = {"lockdb", "lockdb-unsafe", "raw", "raw-unsafe",
                                       "raw-minimal"};
  if (!o.python.empty()) variants.push_back("python");
  std::printf(
      "\n%s (%s): atomic_json_update increments/s, median of %d rounds of %.2f s; ratios: median "
      "of the rounds' ratios\n",
      base.c_str(), fs_name(base).c_str(), o.rounds, o.seconds);

  // results[layout][procs][variant] -> one value per round
  std::map<bool, std::map<int, std::map<std::string, std::vector<double>>>> results;
  for (int round = 0; round < o.rounds; ++round) {
    for (bool one_file : {true, false}) {
      for (int p : o.procs) {
        for (std::size_t k = 0; k < variants.size(); ++k) {  // rotate the order every round
          const std::string& v = variants[(k + static_cast<std::size_t>(round)) % variants.size()];
          results[one_file][p][v].push_back(run_once(o, base, v, p, one_file));
        }
      }
    }
  }

  std::printf("%-14s %5s %8s %8s %8s %8s %8s %11s %14s %11s %19s %14s\n", "layout", "procs",
              "lockdb", "unsafe", "python", "raw", "raw-uns", "raw-minimal", "lockdb/python",
              "lockdb/raw", "lockdb/raw-minimal", "lockdb/unsafe");
  for (bool one_file : {true, false}) {
    for (int p : o.procs) {
      auto& r = results[one_file][p];
      const auto& lk = r["lockdb"];
      char py_ratio[32] = "n/a";
      if (!r["python"].empty()) {
        std::snprintf(py_ratio, sizeof py_ratio, "%.2fx", paired_ratio(lk, r["python"]));
      }
      std::printf("%-14s %5d %8s %8s %8s %8s %8s %11s %14s %10.2fx %18.2fx %13.2fx\n",
                  one_file ? "one file" : "file per proc", p, rate(median(lk)).c_str(),
                  rate(median(r["lockdb-unsafe"])).c_str(), rate(median(r["python"])).c_str(),
                  rate(median(r["raw"])).c_str(), rate(median(r["raw-unsafe"])).c_str(),
                  rate(median(r["raw-minimal"])).c_str(), py_ratio, paired_ratio(lk, r["raw"]),
                  paired_ratio(lk, r["raw-minimal"]), paired_ratio(lk, r["lockdb-unsafe"]));
    }
  }
}

int drive(Options o) {
  if (o.dirs.empty()) {
    o.dirs.push_back(fs::temp_directory_path());
    std::error_code ec;
    if (fs::is_directory("/dev/shm", ec) && fs_name("/dev/shm") == "tmpfs" &&
        fs_name(o.dirs[0]) != "tmpfs") {
      o.dirs.push_back("/dev/shm");
    }
  }
  std::printf("bench_files: durability none (unsafe: power_loss_unsafe); python: %s\n",
              o.python.empty() ? "not found (needs python3 with filelock)" : o.python.c_str());
  for (const auto& dir : o.dirs) drive_dir(o, dir);
  std::printf(
      "\ntargets: lockdb/python >= 3x, lockdb/raw >= 0.85x (raw: atomic_json_update's own system "
      "calls); all final counters checked\n");
  if (o.dirs.size() == 1 && fs_name(o.dirs.front()) != "tmpfs") {
    std::printf("(--dir %s --dir /dev/shm also measures on tmpfs, without the disk)\n",
                o.dirs.front().c_str());
  }
  return 0;
}

std::vector<int> parse_procs(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 4 && args[0] == "--worker") {
      const double secs = std::stod(args[3]);
      long count = 0;
      if (args[1] == "lockdb") {
        count = lockdb_worker(args[2], secs, lockdb::Durability::none);
      } else if (args[1] == "lockdb-unsafe") {
        count = lockdb_worker(args[2], secs, lockdb::Durability::power_loss_unsafe);
      } else if (args[1] == "raw") {
        count = raw_worker(args[2], secs, false);
      } else if (args[1] == "raw-unsafe") {
        count = raw_worker(args[2], secs, true);
      } else if (args[1] == "raw-minimal") {
        count = raw_minimal_worker(args[2], secs);
      } else {
        throw std::invalid_argument("unknown worker " + args[1]);
      }
      std::printf("%ld\n", count);
      return 0;
    }
    Options o;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& opt = args[i];
      if (i + 1 >= args.size()) throw std::invalid_argument(opt + " needs a value");
      const std::string& value = args[++i];
      if (opt == "--seconds") {
        o.seconds = std::stod(value);
      } else if (opt == "--rounds") {
        o.rounds = std::stoi(value);
      } else if (opt == "--dir") {
        o.dirs.emplace_back(value);
      } else if (opt == "--procs") {
        o.procs = parse_procs(value);
      } else if (opt == "--python") {
        o.python = value;
      } else {
        throw std::invalid_argument("unknown option " + opt);
      }
    }
    o.python = find_python(o.python);
    return drive(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_files: %s\n", e.what());
    return 1;
  }
}
