// Test support: temp directories, and child processes driven through pipes.
#pragma once

#include <lockdb/store.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace lockdb::test {

// A fresh directory removed (recursively) on destruction. Tests never share paths.
class TempDir {
 public:
  TempDir();  // in the temp directory ($TMPDIR, else /tmp)
  explicit TempDir(const std::filesystem::path& base);  // in `base`
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The helper binary (tests/helper.cpp); its path comes from the build (LOCKDB_TEST_HELPER).
std::string helper_path();

// A child process running `argv`, with its stdin and stdout connected to pipes.
// Hand-shakes happen over these pipes: read_line() blocks until the child says something.
class Child {
 public:
  explicit Child(std::vector<std::string> argv);
  ~Child();  // kills (SIGKILL) and reaps a child still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // One line of the child's stdout without the newline; nullopt at EOF.
  std::optional<std::string> read_line();
  // Reads lines until one equals `want`; false at EOF first.
  bool expect_line(const std::string& want);
  void write_line(const std::string& line);
  void close_stdin();
  // Waits for exit; returns the exit code, or 128 + signal.
  int wait();
  void kill(int sig);

 private:
  pid_t pid_ = -1;
  int in_fd_ = -1;   // child's stdin (we write)
  int out_fd_ = -1;  // child's stdout (we read)
  std::string buffer_;
  std::optional<int> status_;
};

// Runs a command to completion; returns exit code (or 128 + signal) and its stdout+stderr.
struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};
RunResult run(const std::vector<std::string>& argv, const std::string& stdin_text = {});

// The interpreter that can `import filelock`, or empty when none can.
std::string python_with_filelock();

// One line per finding ("<kind> <key> <path>: <detail>"), for a failed test's INFO.
std::string describe(const std::vector<lockdb::Finding>& findings);

std::string read_text(const std::filesystem::path& p);
void write_text(const std::filesystem::path& p, const std::string& text);

}  // namespace lockdb::test
