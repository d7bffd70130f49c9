// Helper commands for the files and guards tests (test_files.cpp, test_guards.cpp).
// Commands that race others print READY and wait for a line on stdin before starting, so that
// the test releases them together.
#include <lockdb/files.hpp>
#include <lockdb/guards.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <poll.h>
#include <unistd.h>

#include "helper.hpp"

namespace lockdb::test {
namespace {

// The versions atomic-write readers must see whole (the test writes them; keep in step with
// test_files.cpp): "<k>\n", a body whose length and letter depend on k, "\nend <k>\n".
std::string version_text(long k) {
  const auto len = static_cast<std::size_t>(40000 + (k * 7919) % 40000);
  return std::to_string(k) + "\n" + std::string(len, static_cast<char>('a' + k % 26)) + "\nend " +
         std::to_string(k) + "\n";
}

bool is_complete_version(const std::string& text) {
  auto nl = text.find('\n');
  if (nl == std::string::npos || nl == 0 || nl > 12) return false;
  long k = 0;
  try {
    k = std::stol(text.substr(0, nl));
  } catch (...) {
    return false;
  }
  return text == version_text(k);
}

bool stdin_has_line() {
  pollfd p{0, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

bool drop_to(const std::string& uid) {
  const auto id = static_cast<uid_t>(std::stoul(uid));
  return ::setgid(static_cast<gid_t>(id)) == 0 && ::setuid(id) == 0;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// json-incr PATH M [KEY]: M atomic_json_update increments of "total" (and of KEY when given),
// alternating the mutate form and the return-the-new-document form.
RegisterHelper json_incr("json-incr", [](const std::vector<std::string>& a) {
  const std::string path = a.at(0);
  const int m = std::stoi(a.at(1));
  const std::string key = a.size() > 2 ? a[2] : "";
  say("READY");
  wait_for_line();
  for (int i = 0; i < m; ++i) {
    if (i % 2 == 0) {
      atomic_json_update(path, [&](nlohmann::json& doc) {
        doc["total"] = doc.value("total", 0) + 1;
        if (!key.empty()) doc[key] = doc.value(key, 0) + 1;
      });
    } else {
      atomic_json_update(path, [&](nlohmann::json doc) {
        doc["total"] = doc.value("total", 0) + 1;
        if (!key.empty()) doc[key] = doc.value(key, 0) + 1;
        return doc;
      });
    }
  }
  say("DONE");
  return 0;
});

// append-lines PATH M: M locked_append_json records {"pid", "i", "pad"}.
RegisterHelper append_lines("append-lines", [](const std::vector<std::string>& a) {
  const std::string path = a.at(0);
  const int m = std::stoi(a.at(1));
  const long pid = static_cast<long>(::getpid());
  const std::string pad(static_cast<std::size_t>(100 + pid % 50), 'x');  // varied lengths
  say("READY");
  wait_for_line();
  for (int i = 0; i < m; ++i) {
    locked_append_json(path, {{"pid", pid}, {"i", i}, {"pad", pad}});
  }
  say("DONE");
  return 0;
});

// read-loop PATH: reads PATH without any lock until a line arrives on stdin; then says
// "READS <n> BAD <bad>" (bad: a read that is not one complete version).
RegisterHelper read_loop("read-loop", [](const std::vector<std::string>& a) {
  const std::string path = a.at(0);
  long reads = 0, bad = 0;
  say("READY");
  while (!stdin_has_line()) {
    const std::string text = slurp(path);
    ++reads;
    if (!is_complete_version(text)) ++bad;
  }
  say("READS " + std::to_string(reads) + " BAD " + std::to_string(bad));
  return 0;
});

// write-as UID FUNC PATH DATA: drop to UID, call FUNC (atomic_write, locked_write,
// locked_append, atomic_json_update: sets key "v" to DATA), say OK (errors: see helper_main).
RegisterHelper write_as("write-as", [](const std::vector<std::string>& a) {
  if (!drop_to(a.at(0))) {
    say("SETUID-FAILED");
    return 4;
  }
  const std::string& func = a.at(1);
  const std::string& path = a.at(2);
  const std::string& data = a.at(3);
  if (func == "atomic_write") {
    atomic_write(path, data);
  } else if (func == "locked_write") {
    locked_write(path, data);
  } else if (func == "locked_append") {
    locked_append(path, data);
  } else if (func == "atomic_json_update") {
    atomic_json_update(path, [&](nlohmann::json& doc) { doc["v"] = data; });
  } else {
    say("UNKNOWN " + func);
    return 2;
  }
  say("OK");
  return 0;
});

// update-at-exit PATH: one atomic_json_update adding 1 to "n", say OK, then from an atexit
// handler (which runs after this thread's thread_local objects were destroyed) two more, an
// atomic_write of PATH.copy and a locked_append to PATH.log.
RegisterHelper update_at_exit("update-at-exit", [](const std::vector<std::string>& a) {
  static std::string path;
  path = a.at(0);
  static const auto bump = [] {
    atomic_json_update(path, [](nlohmann::json& doc) { doc["n"] = doc.value("n", 0) + 1; });
  };
  bump();
  std::atexit([] {
    bump();
    bump();
    atomic_write(path + ".copy", slurp(path));
    locked_append(path + ".log", "at exit");
  });
  say("OK");
  return 0;
});

// try-write PATH DATA: say 1 when try_locked_write wrote, 0 when the lock was held.
RegisterHelper try_write("try-write", [](const std::vector<std::string>& a) {
  say(try_locked_write(a.at(0), a.at(1)) ? "1" : "0");
  return 0;
});

// singleton-hold NAME DIR: SingletonGuard::hold, say HELD, wait for a line, release, RELEASED.
RegisterHelper singleton_hold("singleton-hold", [](const std::vector<std::string>& a) {
  auto guard = SingletonGuard::hold(a.at(0), a.at(1));
  say("HELD");
  wait_for_line();
  guard.release();
  say("RELEASED");
  return 0;
});

// singleton-try NAME DIR [UID]: (drop to UID,) say 1 if acquire() succeeded, else 0.
RegisterHelper singleton_try("singleton-try", [](const std::vector<std::string>& a) {
  if (a.size() > 2 && !drop_to(a[2])) {
    say("SETUID-FAILED");
    return 4;
  }
  SingletonGuard guard(a.at(0), a.at(1));
  say(guard.acquire() ? "1" : "0");
  return 0;
});

// keyed-hold DIR STRIPES KEY...: lock_many(KEYS), say LOCKED, wait for a line, say RELEASED.
RegisterHelper keyed_hold("keyed-hold", [](const std::vector<std::string>& a) {
  KeyedLockRegistry registry(a.at(0), std::chrono::seconds(30), std::stoul(a.at(1)));
  auto guard = registry.lock_many(std::vector<std::string>(a.begin() + 2, a.end()));
  say("LOCKED");
  wait_for_line();
  guard.release();
  say("RELEASED");
  return 0;
});

// keyed-try DIR STRIPES KEY: say 1 if KEY's lock could be had at once, else 0.
RegisterHelper keyed_try("keyed-try", [](const std::vector<std::string>& a) {
  KeyedLockRegistry registry(a.at(0), std::chrono::seconds(30), std::stoul(a.at(1)));
  FileLock& lock = registry.get_lock(a.at(2));
  const bool got = lock.try_lock();
  if (got) lock.unlock();
  say(got ? "1" : "0");
  return 0;
});

long read_long(const std::string& path) {
  std::ifstream in(path);
  long v = 0;
  in >> v;
  return v;
}

// keyed-incr DIR STRIPES M KEY...: M times: lock_many(KEYS), then add 1 to the plain counter file
// DIR/count-<key> of every distinct key (a non-atomic read and rewrite: overlap loses
// counts). The counter is rewritten in place, fixed width, to keep the disk out of the loop.
RegisterHelper keyed_incr("keyed-incr", [](const std::vector<std::string>& a) {
  KeyedLockRegistry registry(a.at(0), std::chrono::seconds(60), std::stoul(a.at(1)));
  const int m = std::stoi(a.at(2));
  const std::vector<std::string> keys(a.begin() + 3, a.end());
  const std::set<std::string> distinct(keys.begin(), keys.end());
  say("READY");
  wait_for_line();
  for (int i = 0; i < m; ++i) {
    auto guard = registry.lock_many(keys);
    for (const auto& key : distinct) {
      const std::string counter = a.at(0) + "/count-" + key;
      const long v = read_long(counter);
      std::fstream out(counter, std::ios::in | std::ios::out);
      if (!out) out.open(counter, std::ios::out);
      out << std::setw(20) << v + 1;
    }
  }
  say("DONE");
  return 0;
});

}  // namespace
}  // namespace lockdb::test
