// The test helper binary: one program, many small commands, each registered by a
// helper_<module>.cpp file. Tests run it as a real process: `lockdb_test_helper CMD ARGS...`.
// Commands hand-shake over stdout/stdin lines (e.g. print "LOCKED", then wait for a line).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace lockdb::test {

using HelperCommand = std::function<int(const std::vector<std::string>& args)>;

struct RegisterHelper {
  RegisterHelper(const std::string& name, HelperCommand fn);
};

// Prints `line` and a newline to stdout, flushed.
void say(const std::string& line);
// Blocks until a line (or EOF) arrives on stdin.
void wait_for_line();

}  // namespace lockdb::test
