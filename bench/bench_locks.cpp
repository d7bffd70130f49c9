// Lock-layer benchmark: compares lockdb's FileLock with the alternatives in one run and prints
// figures and ratios (the machines are shared and noisy: compare ratios, not absolute numbers).
//
// 1. Uncontended acquire+release per second, one process:
//      raw flock   flock(LOCK_EX)+flock(LOCK_UN) on an open descriptor (the limit)
//      FileLock    lock()+unlock() of one lockdb::FileLock
//      py filelock filelock.FileLock acquire()+release() (same object), if python3 has it
//    Targets: FileLock >= 1 M/s, >= 0.5x raw flock, >= 7x Python filelock.
// 2. Hand-off latency under contention: a holder releases while a waiter is blocked in acquire;
//    latency = waiter holds - holder released (CLOCK_MONOTONIC, shared through a mapped file).
//    Waiter: a lockdb::FileLock in another process, or Python filelock. Target: p50 < 100 us.
//
//   bench_locks [--seconds S] [--handoffs N] [--python PATH]
#include <lockdb/lockdb.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Runs `op` in batches until `seconds` passed; returns operations per second.
template <class Op>
double rate(double seconds, Op op) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  std::uint64_t n = 0;
  auto start = Clock::now();
  while (Clock::now() < end) {
    for (int i = 0; i < 1000; ++i) op();
    n += 1000;
  }
  return static_cast<double>(n) / std::chrono::duration<double>(Clock::now() - start).count();
}

std::string find_python(const std::string& preferred) {
  for (std::string py : {preferred, std::string("/usr/bin/python3"), std::string("python3")}) {
    if (py.empty()) continue;
    std::string cmd = py + " -c 'import filelock' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return {};
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  return out;
}

// Shared state of the hand-off protocol, in a file both sides map (Python uses mmap + struct).
// Layout (int64 each): round (holder: "I hold the lock for round r"), ready (waiter: "I am about
// to wait in round r"), t_release (ns), done (waiter: "round r finished"), stop.
struct Shared {
  std::atomic<std::int64_t> round, ready, t_release, done, stop;
};
constexpr std::size_t kSharedBytes = sizeof(Shared);

const char* kPythonUncontended = R"(
import sys, time, filelock
lock = filelock.FileLock(sys.argv[1])
secs = float(sys.argv[2])
n = 0
start = time.perf_counter()
end = start + secs
while time.perf_counter() < end:
    for _ in range(1000):
        lock.acquire()
        lock.release()
    n += 1000
print(n / (time.perf_counter() - start))
)";

const char* kPythonWaiter = R"(
import sys, time, mmap, struct, filelock
lock = filelock.FileLock(sys.argv[1])
f = open(sys.argv[2], 'r+b')
m = mmap.mmap(f.fileno(), 40)
def get(i): return struct.unpack_from('q', m, i * 8)[0]
def put(i, v): struct.pack_into('q', m, i * 8, v)
lat = []
r = 1
while True:
    while get(0) != r and get(4) == 0: pass
    if get(4): break
    put(1, r)
    lock.acquire()
    t = time.monotonic_ns()
    lat.append(t - get(2))
    lock.release()
    put(3, r)
    r += 1
print(' '.join(str(x) for x in lat))
)";

struct Stats {
  double p50_us = 0, p99_us = 0, max_us = 0;
  std::size_t n = 0;
};

Stats summarize(std::vector<std::int64_t> ns) {
  Stats s;
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    return static_cast<double>(ns[std::min(
               ns.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ns.size())))]) /
           1000.0;
  };
  s.p50_us = at(0.50);
  s.p99_us = at(0.99);
  s.max_us = static_cast<double>(ns.back()) / 1000.0;
  s.n = ns.size();
  return s;
}

// The holder side of the hand-off protocol: each round, hold the lock until the waiter says it
// is about to wait, give it time to block in the kernel, note the time, release, and wait until
// the waiter has finished the round.
void hold_rounds(lockdb::FileLock& lock, Shared* sh, int rounds) {
  for (std::int64_t r = 1; r <= rounds; ++r) {
    lock.lock();
    sh->round.store(r);
    while (sh->ready.load() != r) {
    }
    const auto until = Clock::now() + std::chrono::microseconds(300);  // let it block
    while (Clock::now() < until) {
    }
    sh->t_release.store(now_ns());
    lock.unlock();
    while (sh->done.load() != r) {
    }
  }
  sh->stop.store(1);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0.5;
  int handoffs = 2000, py_handoffs = 60;
  std::string python;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    if (a == "--handoffs") handoffs = std::atoi(argv[i + 1]);
    if (a == "--python") python = argv[i + 1];
  }
  python = find_python(python);
  auto dir = std::filesystem::temp_directory_path() / ("lockdb-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto lock_path = dir / "bench.lock";

  // Child mode: the FileLock waiter of the hand-off protocol.
  if (argc == 4 && std::string(argv[1]) == "--waiter") {
    lockdb::FileLock lock(argv[2]);
    int fd = ::open(argv[3], O_RDWR);
    auto* sh = static_cast<Shared*>(
        mmap(nullptr, kSharedBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    std::vector<std::int64_t> lat;
    for (std::int64_t r = 1;; ++r) {
      while (sh->round.load() != r && sh->stop.load() == 0) {
      }
      if (sh->stop.load()) break;
      sh->ready.store(r);
      lock.lock();
      lat.push_back(now_ns() - sh->t_release.load());
      lock.unlock();
      sh->done.store(r);
    }
    for (auto v : lat) std::printf("%lld ", static_cast<long long>(v));
    std::printf("\n");
    return 0;
  }

  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("lockdb lock benchmark (%.1f s per rate, %d hand-offs)\n\n", seconds, handoffs);

  // ---- 1. uncontended ----
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  double raw = rate(seconds, [&] {
    flock(fd, LOCK_EX);
    flock(fd, LOCK_UN);
  });
  lockdb::FileLock lock(lock_path);
  double ours = rate(seconds, [&] {
    lock.lock();
    lock.unlock();
  });
  double guard_rate = rate(seconds, [&] { auto g = lock.acquire(); });
  double py = 0;
  if (!python.empty()) {
    std::string cmd = python + " -c \"$LOCKDB_PY\" " + lock_path.string() + " " +
                      std::to_string(seconds) + " 2>/dev/null";
    setenv("LOCKDB_PY", kPythonUncontended, 1);
    py = std::atof(run_capture(cmd).c_str());
  }
  std::printf("1. uncontended acquire+release, 1 process\n");
  std::printf("   %-28s %12s %10s %10s\n", "variant", "ops/s", "us/op", "x raw");
  auto row = [&](const char* name, double r) {
    std::printf("   %-28s %12.0f %10.3f %10.2f\n", name, r, 1e6 / r, r / raw);
  };
  row("raw flock (limit)", raw);
  row("lockdb FileLock lock/unlock", ours);
  row("lockdb FileLock acquire()", guard_rate);
  if (py > 0) row("python filelock", py);
  std::printf("   FileLock: %.2f M/s (target >= 1), %.2fx raw (target >= 0.5)", ours / 1e6,
              ours / raw);
  if (py > 0) std::printf(", %.1fx python filelock (target >= 7)", ours / py);
  std::printf("\n\n");

  // ---- 2. hand-off latency ----
  const auto shm_path = dir / "shared";
  {
    int sfd = ::open(shm_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (ftruncate(sfd, kSharedBytes) != 0) return 1;
    ::close(sfd);
  }
  auto run_handoff = [&](const std::string& waiter_cmd, int rounds) {
    int sfd = ::open(shm_path.c_str(), O_RDWR | O_CLOEXEC);
    auto* sh = static_cast<Shared*>(
        mmap(nullptr, kSharedBytes, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0));
    std::memset(static_cast<void*>(sh), 0, kSharedBytes);
    FILE* waiter = popen(waiter_cmd.c_str(), "r");
    lockdb::FileLock holder(lock_path);
    hold_rounds(holder, sh, rounds);
    std::vector<std::int64_t> lat;
    long long v;
    while (std::fscanf(waiter, "%lld", &v) == 1) lat.push_back(v);
    pclose(waiter);
    munmap(sh, kSharedBytes);
    ::close(sfd);
    return summarize(lat);
  };
  Stats cpp = run_handoff(
      std::string(argv[0]) + " --waiter " + lock_path.string() + " " + shm_path.string(), handoffs);
  Stats pys;
  if (!python.empty()) {
    setenv("LOCKDB_PY", kPythonWaiter, 1);
    pys = run_handoff(python + " -c \"$LOCKDB_PY\" " + lock_path.string() + " " + shm_path.string(),
                      py_handoffs);
  }
  std::printf("2. hand-off latency: holder releases -> blocked waiter holds\n");
  std::printf("   %-28s %8s %10s %10s %10s\n", "waiter", "n", "p50 us", "p99 us", "max us");
  std::printf("   %-28s %8zu %10.1f %10.1f %10.1f\n", "lockdb FileLock", cpp.n, cpp.p50_us,
              cpp.p99_us, cpp.max_us);
  if (pys.n > 0) {
    std::printf("   %-28s %8zu %10.1f %10.1f %10.1f\n", "python filelock", pys.n, pys.p50_us,
                pys.p99_us, pys.max_us);
    std::printf("   python p50 / lockdb p50 = %.0fx\n", pys.p50_us / cpp.p50_us);
  }
  std::printf("   FileLock p50 %.1f us (target < 100)\n", cpp.p50_us);
  if (python.empty()) std::printf("   (python3 with filelock not found: python rows skipped)\n");
  std::filesystem::remove_all(dir);
  return 0;
}
