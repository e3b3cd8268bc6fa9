// Prometheus's text exposition format, version 0.0.4, written by nvs:
// Prometheus has no C++ client library in Debian 12, and what nvsd and
// nvs-videohub expose fits in this much. A page is built in one go from
// the program's own counters (nothing here is shared between threads):
//
//   Exposition page;
//   page.Family("nvs_commits_total", MetricType::kCounter, "Commands committed.");
//   page.Sample("nvs_commits_total", {}, 42);
//   std::string text = page.Take();
//
// Names, label names and the order of a family's lines are checked: a
// mistake throws std::logic_error (a bug in the caller, found by the tests),
// never a page Prometheus would refuse.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nvs::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

// The content type a scrape is answered with.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// A histogram's buckets: counts per upper bound (cumulative when written),
// their sum and count. Observe is O(buckets).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Observations <= upper_bounds()[i] (not cumulative), then those above all.
  const std::vector<std::uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  std::uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;  // one per bound, plus one for +Inf
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

// Bounds for a latency in seconds, 100 us to 10 s.
std::vector<double> LatencyBuckets();

class Exposition {
 public:
  // Starts a family: its # HELP and # TYPE lines. Each name once.
  void Family(std::string_view name, MetricType type, std::string_view help);
  // One sample of the family started last (its name, or for a histogram
  // use Observations).
  void Sample(std::string_view name, const Labels& labels, double value);
  // A histogram family's _bucket, _sum and _count lines for one label set.
  void Observations(std::string_view name, const Labels& labels, const Histogram& histogram);
  // A family and one sample, for the common case.
  void Counter(std::string_view name, std::string_view help, double value);
  void Gauge(std::string_view name, std::string_view help, double value);

  std::string Take();

  // How a value is written: integers without a fraction, +Inf, -Inf, NaN.
  static std::string FormatValue(double value);
  // A label value with \, " and newline escaped.
  static std::string EscapeLabelValue(std::string_view value);

 private:
  void Line(std::string_view name, const Labels& labels, std::string_view extra_label, std::string_view extra_value,
            double value);
  std::string text_;
  std::vector<std::string> names_;  // families so far
  std::string current_;             // the family samples go to
  MetricType current_type_ = MetricType::kGauge;
};

}  // namespace nvs::metrics
