// What the benchmarks share: the statistics they report and how they print a rate.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace lockdb::bench {

// The median (the mean of the middle two for an even count); 0 for none.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The median of the per-round ratios a[i] / b[i]; 0 when there is none. A round runs its
// variants back to back, so its ratio is not skewed by load that came and went between rounds.
inline double paired_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> ratios;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (b[i] > 0) ratios.push_back(a[i] / b[i]);
  }
  return median(std::move(ratios));
}

// "1.23M", "45.6k", "789"; "n/a" for no rate.
inline std::string rate(double per_second) {
  char buf[32];
  if (per_second <= 0) return "n/a";
  if (per_second >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2fM", per_second / 1e6);
  } else if (per_second >= 1e3) {
    std::snprintf(buf, sizeof buf, "%.1fk", per_second / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f", per_second);
  }
  return buf;
}

}  // namespace lockdb::bench
