#include <lockdb/error.hpp>
#include <lockdb/time.hpp>

#include <system_error>

namespace lockdb {
namespace {

std::string compose(const std::string& context, const std::filesystem::path& path,
                    const std::string& cause) {
  std::string msg = context;
  if (!path.empty()) msg += ": " + path.string();
  if (!cause.empty()) msg += ": " + cause;
  return msg;
}

}  // namespace

const char* errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::timeout: return "timeout";
    case Errc::already_running: return "already_running";
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::corrupt: return "corrupt";
    case Errc::io: return "io";
    case Errc::permission: return "permission";
    case Errc::lock_unsupported: return "lock_unsupported";
    case Errc::not_owner: return "not_owner";
    case Errc::conflict: return "conflict";
    case Errc::version: return "version";
  }
  return "unknown";
}

int exit_code(Errc code) noexcept {
  switch (code) {
    case Errc::not_found: return 1;
    case Errc::invalid_argument: return 2;
    case Errc::timeout: return 4;
    case Errc::already_running: return 5;
    case Errc::corrupt: return 6;
    case Errc::io: return 7;
    case Errc::permission: return 8;
    case Errc::lock_unsupported: return 9;
    case Errc::not_owner: return 10;
    case Errc::conflict: return 11;
    case Errc::version: return 12;
  }
  return 7;
}

Error::Error(Errc code, std::string context, std::filesystem::path path, int sys_errno)
    : std::runtime_error(
          compose(context, path, sys_errno ? std::generic_category().message(sys_errno) : "")),
      code_(code),
      path_(std::move(path)),
      errno_(sys_errno) {}

Error::Error(Errc code, std::string context, std::filesystem::path path, std::string cause)
    : std::runtime_error(compose(context, path, cause)), code_(code), path_(std::move(path)) {}

Error::Error(Errc code, std::string context, std::filesystem::path path, std::string cause,
             int sys_errno)
    : std::runtime_error(compose(context, path, cause)),
      code_(code),
      path_(std::move(path)),
      errno_(sys_errno) {}

Error::Error(const Error& error, std::string_view note)
    : std::runtime_error(std::string(error.what()) + std::string(note)),
      code_(error.code_),
      path_(error.path_),
      errno_(error.errno_) {}

std::string LockHolder::describe() const {
  if (pid == 0 && host.empty()) return "unknown holder";
  std::string s;
  if (pid != 0) s = "pid " + std::to_string(pid);
  if (!program.empty()) s += " (" + program + ")";
  if (!host.empty()) s.append(s.empty() ? "on " : " on ").append(host);
  if (since) s += " since " + format_time(*since);
  return s;
}

Timeout::Timeout(std::filesystem::path lock_path, std::chrono::nanoseconds waited,
                 std::optional<LockHolder> holder)
    : Timeout(std::string(), std::move(lock_path), waited, std::move(holder)) {}

Timeout::Timeout(const std::string& context, std::filesystem::path lock_path,
                 std::chrono::nanoseconds waited, std::optional<LockHolder> holder)
    : Error(Errc::timeout,
            (context.empty() ? std::string() : context + ": ") +
                (waited.count() == 0
                     ? std::string("lock is held")
                     : "lock not acquired within " +
                           std::to_string(
                               std::chrono::duration_cast<std::chrono::milliseconds>(waited)
                                   .count()) +
                           " ms"),
            std::move(lock_path), holder ? "held by " + holder->describe() : std::string()),
      holder_(std::move(holder)) {}

AlreadyRunning::AlreadyRunning(std::string name, std::filesystem::path lock_path,
                               std::optional<LockHolder> holder)
    : Error(Errc::already_running, "another instance of '" + name + "' is running",
            std::move(lock_path), holder ? "held by " + holder->describe() : std::string()),
      holder_(std::move(holder)) {}

}  // namespace lockdb
