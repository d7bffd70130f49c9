#include <lockdb/error.hpp>

#include <cerrno>
#include <cstdio>
#include <ctime>

#include "os.hpp"
#include "util.hpp"

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
    : std::runtime_error(compose(context, path, sys_errno ? os::error_text(sys_errno) : "")),
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
  if (since) s += " since " + util::format_utc(*since);
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

namespace os {
Errc errc_for_errno(int err) noexcept {
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS: return Errc::permission;
    case ENOENT: return Errc::not_found;
    case ENOLCK:
    case EOPNOTSUPP: return Errc::lock_unsupported;
    case EISDIR:
    case ENOTDIR:
    case ELOOP:
    case ENAMETOOLONG:
    case EINVAL: return Errc::invalid_argument;
    default: return Errc::io;
  }
}

[[noreturn]] void throw_errno(std::string context, const std::filesystem::path& path, int err) {
  throw Error(errc_for_errno(err), std::move(context), path, err);
}
}  // namespace os

namespace util {

std::string format_utc(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(us / 1000000);
  long frac = static_cast<long>(us % 1000000);
  if (frac < 0) {
    frac += 1000000;
    secs -= 1;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view text) {
  int y, mo, d, h, mi, s, n = 0;
  std::string str(text);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6 ||
      n != 19) {
    if (std::sscanf(str.c_str(), "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6 ||
        n != 19)
      return std::nullopt;
  }
  std::string_view rest = text.substr(19);
  long micros = 0;
  if (!rest.empty() && rest[0] == '.') {
    std::size_t i = 1;
    long scale = 100000;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') {
      if (scale > 0) micros += (rest[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == 1) return std::nullopt;
    rest = rest.substr(i);
  }
  long offset_s = 0;
  if (rest == "Z" || rest == "z") {
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int oh = 0, om = 0;
    if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &oh, &om) != 2)
      return std::nullopt;
    offset_s = (oh * 3600 + om * 60) * (rest[0] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  std::time_t secs = timegm(&tm);
  return std::chrono::system_clock::time_point(std::chrono::seconds(secs - offset_s) +
                                               std::chrono::microseconds(micros));
}

}  // namespace util
}  // namespace lockdb
