// bench_etcd: Store::increment on an etcd location against a raw gateway request loop doing the
// same work, with 1, 4 and 8 processes, on one shared key and on a key per process.
//
// The same work: per increment, a range read of the key, then one transaction "if mod_revision
// is unchanged put the new value and an audit record, else read the key" (retried with what
// the failure branch returned), over libcurl with a kept-alive connection; the raw loop builds
// and scans the JSON by hand. That is the limit for this protocol; the ratio shows what lockdb
// adds on top. It starts its own etcd member on a loopback port (etcd's defaults otherwise).
//
//   bench_etcd [--seconds S] [--rounds R]
#include <lockdb/store.hpp>

#include <curl/curl.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "bench_support.hpp"
#include "etcd_client.hpp"
#include "etcd_cluster.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace etcd = lockdb::detail::etcd;

size_t collect(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

// The text of `"field":"<digits>"` after `from`; 0 when absent.
long long field_after(const std::string& s, const char* field, std::size_t from = 0) {
  const std::string pattern = std::string("\"") + field + "\":\"";
  const std::size_t at = s.find(pattern, from);
  if (at == std::string::npos) return 0;
  return std::atoll(s.c_str() + at + pattern.size());
}

// The raw loop: increments `key` under `prefix` for `seconds`; returns the number done.
long raw_increments(const std::string& endpoint, const std::string& prefix, const std::string& key,
                    double seconds) {
  CURL* curl = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  std::string answer;
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
  const std::string range_url = "http://" + endpoint + "/v3/kv/range";
  const std::string txn_url = "http://" + endpoint + "/v3/kv/txn";
  const std::string k64 = etcd::base64_encode(prefix + "/k/" + key);
  const std::string range_body = "{\"key\":\"" + k64 + "\"}";
  auto post = [&](const std::string& url, const std::string& body) {
    answer.clear();
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    if (curl_easy_perform(curl) != CURLE_OK) std::abort();
  };
  // The value and mod_revision in a range answer (or a txn's failure branch).
  auto parse = [&](long long& value, long long& mod) {
    const std::size_t kvs = answer.find("\"kvs\"");
    if (kvs == std::string::npos) {
      value = 0;
      mod = 0;
      return;
    }
    mod = field_after(answer, "mod_revision", kvs);
    value = std::atoll(
        etcd::base64_decode(answer.substr(answer.find("\"value\":\"", kvs) + 9,
                                          answer.find('"', answer.find("\"value\":\"", kvs) + 9) -
                                              answer.find("\"value\":\"", kvs) - 9))
            .c_str());
  };
  long done = 0;
  long long value = 0, mod = 0;
  post(range_url, range_body);
  parse(value, mod);
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  const std::string pid = std::to_string(::getpid());
  long serial = 0;
  while (Clock::now() < end) {
    const std::string next = std::to_string(value + 1);
    const std::string record = "{\"time\":\"2026-12-06T07:00:00.000000Z\",\"key\":\"" + key +
                               "\",\"op\":\"increment\",\"prev\":\"" + std::to_string(mod) +
                               "\",\"pid\":" + pid + ",\"host\":\"h\",\"value\":" + next + "}";
    const std::string log_key = prefix + "/log/raw-" + pid + "-" + std::to_string(serial++);
    const std::string body =
        "{\"compare\":[{\"key\":\"" + k64 +
        "\",\"target\":\"MOD\",\"result\":\"EQUAL\",\"mod_revision\":\"" + std::to_string(mod) +
        "\"}],\"success\":[{\"request_put\":{\"key\":\"" + k64 + "\",\"value\":\"" +
        etcd::base64_encode(next) + "\"}},{\"request_put\":{\"key\":\"" +
        etcd::base64_encode(log_key) + "\",\"value\":\"" + etcd::base64_encode(record) +
        "\"}}],\"failure\":[{\"request_range\":{\"key\":\"" + k64 + "\"}}]}";
    post(txn_url, body);
    if (answer.find("\"succeeded\":true") != std::string::npos) {
      ++done;
      // The same work as Store::increment: the next increment reads the key first.
      post(range_url, range_body);
    }
    parse(value, mod);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return done;
}

long store_increments(const std::string& location, const std::string& key, double seconds) {
  lockdb::Store store(location);
  long done = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    store.increment(key);
    ++done;
  }
  return done;
}

// Runs `procs` processes for `seconds`; returns increments per second in all.
template <class Work>
double run_processes(int procs, double seconds, Work work) {
  std::vector<std::pair<pid_t, int>> kids;
  for (int i = 0; i < procs; ++i) {
    int fds[2];
    if (::pipe(fds) != 0) std::abort();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      const long n = work(i);
      if (::write(fds[1], &n, sizeof n) != sizeof n) ::_exit(1);
      ::_exit(0);
    }
    ::close(fds[1]);
    kids.emplace_back(pid, fds[0]);
  }
  long total = 0;
  for (auto& [pid, fd] : kids) {
    long n = 0;
    if (::read(fd, &n, sizeof n) == sizeof n) total += n;
    ::close(fd);
    ::waitpid(pid, nullptr, 0);
  }
  return static_cast<double>(total) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.5;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
  }
  if (!lockdb::test::EtcdCluster::available()) {
    std::printf("bench_etcd: /usr/bin/etcd is not installed (apt-get install etcd-server)\n");
    return 1;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  lockdb::test::EtcdCluster cluster(1);
  const std::string endpoint = cluster.endpoint(0);
  std::printf("bench_etcd: increments per second, one etcd member on %s, %d rounds of %.1f s\n",
              endpoint.c_str(), rounds, seconds);
  std::printf("%-6s %-9s %12s %12s %8s\n", "procs", "keys", "lockdb", "raw loop", "ratio");
  int cell = 0;
  for (int procs : {1, 4, 8}) {
    for (bool shared : {true, false}) {
      std::vector<double> ours, raw;
      for (int r = 0; r < rounds; ++r) {
        const std::string prefix = "bench" + std::to_string(cell) + "-" + std::to_string(r);
        const std::string location = cluster.location(prefix);
        { lockdb::Store create(location); }
        auto key = [&](int i) { return shared ? std::string("k") : "k" + std::to_string(i); };
        ours.push_back(run_processes(
            procs, seconds, [&](int i) { return store_increments(location, key(i), seconds); }));
        raw.push_back(run_processes(procs, seconds, [&](int i) {
          return raw_increments(endpoint, "/" + prefix + "-raw", key(i), seconds);
        }));
      }
      ++cell;
      std::printf("%-6d %-9s %12s %12s %7.2fx\n", procs, shared ? "one" : "distinct",
                  lockdb::bench::rate(lockdb::bench::median(ours)).c_str(),
                  lockdb::bench::rate(lockdb::bench::median(raw)).c_str(),
                  lockdb::bench::paired_ratio(ours, raw));
      std::fflush(stdout);
    }
  }
  return 0;
}
