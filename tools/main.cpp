// lockdb: inspect and operate a lockdb store from the shell.
//
// One CLI::App, one subcommand per verb (registered by the cmd_*.cpp files). Every failure ends
// here: it becomes exactly one line on stderr, "lockdb: context: path: cause", and the exit code
// of its kind (lockdb::exit_code, the table in error.hpp; usage errors exit 2).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli_common.hpp"

#ifndef LOCKDB_VERSION
#error "LOCKDB_VERSION must be defined by the build"
#endif

namespace {

constexpr const char* kFooter = R"(Times (--since, --until, --at, --before):
  RFC 3339 with T or a space (2026-11-30T18:00:00Z, '2026-11-30 19:00:00.5+01:00'),
  a date alone (2026-11-30, its midnight UTC), epoch seconds (1764525600), now,
  or a time ago: a number and s, m, h, d or w (30s, 10m, 2h, 3d, 1w; also '3d ago').

Exit codes:
  0 ok, 1 not found (not a store, no such key, no value), 2 usage or bad input (option,
  JSON, time, key), 4 lock timeout, 5 already running, 6 corrupt (and verify with findings),
  7 I/O error, 8 permission denied, 9 locks unsupported, 10 not owner, 11 conflict (a lost
  cas, an import onto existing keys), 12 newer store format; run: the command's own status.

Examples:
  lockdb init ./state
  lockdb put ./state config '{"workers": 4}'
  lockdb put ./state greeting --string 'hello world'
  lockdb get ./state greeting -r
  lockdb incr ./state jobs_done
  lockdb keys ./state 'job/*'
  lockdb log ./state --key config --since 1h --json | jq .value
  lockdb log ./state --follow
  lockdb watch ./state config --count 1
  lockdb run ./state deploy -- ./deploy.sh
  lockdb export ./state > dump.jsonl && lockdb import ./copy < dump.jsonl
  lockdb verify ./state || lockdb repair ./state

Run 'lockdb COMMAND --help' for a command's options and examples.)";

// One line: newlines and other control characters of a message are escaped.
std::string one_line(const std::string& text) {
  std::string line;
  for (char c : text) {
    if (c == '\n')
      line += "\\n";
    else if (c == '\r')
      line += "\\r";
    else if (c == '\t')
      line += ' ';
    else
      line += c;
  }
  return line;
}

// Library messages are written for programs ("repair()", nlohmann's "[json.exception...] "
// tags); a person at the shell gets the command to run and the cause alone.
std::string for_people(std::string text) {
  for (std::size_t at; (at = text.find("[json.exception.")) != std::string::npos;) {
    const std::size_t end = text.find("] ", at);
    if (end == std::string::npos) break;
    text.erase(at, end + 2 - at);
  }
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"repair()", "'lockdb repair'"},
                                 {"verify()", "'lockdb verify'"}}) {
    for (std::size_t at; (at = text.find(from)) != std::string::npos;)
      text.replace(at, from.size(), to);
  }
  return text;
}

void report(const std::string& message) {
  std::fflush(stdout);  // what was printed before the failure comes first on a shared terminal
  std::fprintf(stderr, "lockdb: %s\n", one_line(for_people(message)).c_str());
}

int exit_code_for_errno(int err) {
  switch (err) {
    case ENOENT: return lockdb::exit_code(lockdb::Errc::not_found);
    case EACCES:
    case EPERM:
    case EROFS: return lockdb::exit_code(lockdb::Errc::permission);
    default: return lockdb::exit_code(lockdb::Errc::io);
  }
}

// Runs the chosen command; any exception becomes its one stderr line and exit code.
int run_command(const std::function<int()>& run) {
  try {
    return run();
  } catch (const lockdb::Error& e) {
    report(e.what());
    return lockdb::exit_code(e.code());
  } catch (const std::filesystem::filesystem_error& e) {
    const std::string path = e.path1().empty() ? std::string() : e.path1().string() + ": ";
    report(path + e.code().message());
    return exit_code_for_errno(e.code().value());
  } catch (const std::bad_alloc&) {
    report("out of memory");
    return lockdb::exit_code(lockdb::Errc::io);
  } catch (const std::exception& e) {
    report(e.what());
    return lockdb::exit_code(lockdb::Errc::io);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lockdb::cli;
  CLI::App app(
      "lockdb: inspect and operate a lockdb store (a directory of JSON values with a "
      "change log)",
      "lockdb");
  app.set_version_flag("--version", std::string("lockdb ") + LOCKDB_VERSION);
  app.require_subcommand(1);
  app.footer(kFooter);

  Commands commands;
  add_value_commands(app, commands);
  add_log_commands(app, commands);
  add_lock_commands(app, commands);
  add_check_commands(app, commands);
  add_stats_commands(app, commands);
  add_compact_commands(app, commands);
  add_data_commands(app, commands);

  // "lockdb frobnicate ...": name the unknown command rather than CLI11's generic complaint.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto& [command, run] : commands.actions) {
      known = known || command->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + command->get_name();
    }
    if (!known) {
      report(std::string("unknown command \"") + argv[1] + "\" (commands: " + names +
             "; see 'lockdb --help')");
      return lockdb::exit_code(lockdb::Errc::invalid_argument);
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return app.exit(e);  // --help, --version: printed on stdout, exit 0
    }
    std::string where = "lockdb";
    for (const CLI::App* command : app.get_subcommands()) where += " " + command->get_name();
    report(std::string(e.what()) + " (see '" + where + " --help')");
    return lockdb::exit_code(lockdb::Errc::invalid_argument);
  }

  int code = 0;
  for (const auto& [command, run] : commands.actions) {
    if (command->parsed()) code = run_command(run);
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    const int err = errno;
    if (code == 0) {
      std::fprintf(stderr, "lockdb: stdout: %s\n", std::strerror(err));
      code = lockdb::exit_code(lockdb::Errc::io);
    }
  }
  return code;
}
