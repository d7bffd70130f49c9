#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include <lockdb/error.hpp>

#include "helper.hpp"

namespace lockdb::test {

static std::map<std::string, HelperCommand>& registry() {
  static std::map<std::string, HelperCommand> commands;
  return commands;
}

RegisterHelper::RegisterHelper(const std::string& name, HelperCommand fn) {
  // Two commands of one name: one would silently run in place of the other.
  if (!registry().emplace(name, std::move(fn)).second) {
    std::fprintf(stderr, "lockdb_test_helper: two commands are named %s\n", name.c_str());
    std::abort();
  }
}

void say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

void wait_for_line() {
  std::string line;
  std::getline(std::cin, line);
}

}  // namespace lockdb::test

int main(int argc, char** argv) {
  using namespace lockdb::test;
  if (argc < 2 || !registry().count(argv[1])) {
    std::fprintf(stderr, "usage: %s COMMAND ARGS... (commands:", argv[0]);
    for (auto& [name, fn] : registry()) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, ")\n");
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    return registry()[argv[1]](args);
  } catch (const lockdb::Error& e) {
    say(std::string("ERROR ") + lockdb::errc_name(e.code()) + " " + e.what());
    return 3;
  } catch (const std::exception& e) {
    say(std::string("ERROR other ") + e.what());
    return 3;
  }
}
