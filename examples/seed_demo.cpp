// The seed's Python demo, in C++: a counter shared by 4 processes, atomic_json_update,
// SingletonGuard, and a JSONL event log. It prints the same lines as the Python demo (values are
// shown the way Python prints them: {'alice': 30}, True, False).
//
//   build/examples/seed_demo
#include <lockdb/lockdb.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

// Python's repr() of the value a JSON document parses to.
std::string py_str(const std::string& s) {
  const char quote =
      s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\' || c == static_cast<unsigned char>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + quote;
}

template <class Json>
std::string py_repr(const Json& v) {
  if (v.is_object()) {
    std::string out = "{";
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it != v.begin()) out += ", ";
      out += py_str(it.key()) + ": " + py_repr(it.value());
    }
    return out + "}";
  }
  if (v.is_array()) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + py_repr(v[i]);
    return out + "]";
  }
  if (v.is_string()) return py_str(v.template get<std::string>());
  if (v.is_boolean()) return v.template get<bool>() ? "True" : "False";
  if (v.is_null()) return "None";
  return v.dump();
}

const char* py_bool(bool b) { return b ? "True" : "False"; }

// The seed's increment(): read, pause, write, under the counter's lock. The pause makes a race
// visible if the lock did not work.
void increment(const fs::path& counter_path, int n) {
  for (int i = 0; i < n; ++i) {
    lockdb::FileLock lock(lockdb::lock_file_for(counter_path));
    auto guard = lock.acquire();
    const int val = std::stoi(read_text(counter_path));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    write_text(counter_path, std::to_string(val + 1));
  }
}

int run(const fs::path& tmpdir) {
  const fs::path counter_path = tmpdir / "counter.txt";
  write_text(counter_path, "0");

  std::printf("=== Concurrent counter (4 processes × 5 increments) ===\n");
  std::fflush(stdout);  // the children must not inherit unflushed output
  std::vector<pid_t> pool;
  for (int p = 0; p < 4; ++p) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      int code = 0;
      try {
        increment(counter_path, 5);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "worker: %s\n", e.what());
        code = 1;
      }
      std::_Exit(code);
    }
    pool.push_back(pid);
  }
  for (pid_t pid : pool) {
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw std::runtime_error("a worker process failed");
    }
  }
  const int final_value = std::stoi(read_text(counter_path));
  std::printf(" Expected: 20 | Got: %d | Correct: %s\n", final_value, py_bool(final_value == 20));

  std::printf("\n=== atomic_json_update ===\n");
  const fs::path json_path = tmpdir / "scores.json";
  auto add_score = [](nlohmann::json data) {
    data["alice"] = data.value("alice", 0) + 10;
    return data;
  };
  nlohmann::json result;
  for (int i = 0; i < 3; ++i) result = lockdb::atomic_json_update(json_path, add_score);
  std::printf(" After 3 updates: %s\n", py_repr(result).c_str());

  std::printf("\n=== SingletonGuard ===\n");
  {
    auto guard = lockdb::SingletonGuard::hold("demo", tmpdir);
    const bool already_running = lockdb::SingletonGuard("demo", tmpdir).acquire();
    std::printf(" Second acquire while first held: %s\n", py_bool(already_running));
  }
  const bool second_try = lockdb::SingletonGuard("demo", tmpdir).acquire();
  std::printf(" Acquire after first released: %s\n", py_bool(second_try));

  std::printf("\n=== locked_append_json (JSONL log) ===\n");
  const fs::path log_path = tmpdir / "events.jsonl";
  for (int i = 0; i < 3; ++i) lockdb::locked_append_json(log_path, {{"event", "click"}, {"i", i}});
  std::vector<std::string> lines;
  std::istringstream in(read_text(log_path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::printf(" %zu lines written\n", lines.size());
  for (const auto& line : lines) {
    std::printf(" %s\n", py_repr(nlohmann::ordered_json::parse(line)).c_str());
  }
  return 0;
}

}  // namespace

int main() {
  std::string tmpl = (fs::temp_directory_path() / "seed-demo-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    std::perror("mkdtemp");
    return 1;
  }
  const fs::path tmpdir = tmpl;
  int code = 1;
  try {
    code = run(tmpdir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seed_demo: %s\n", e.what());
  }
  std::error_code ec;
  fs::remove_all(tmpdir, ec);
  return code;
}
