#include "nvs/metrics/exposition.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace nvs::metrics {
namespace {

TEST(Exposition, WritesHelpTypeAndSamplesWithEscapedLabels) {
  Exposition page;
  page.Family("nvs_verdicts_total", MetricType::kCounter, "Verdicts by kind.\nSecond line \\ backslash.");
  page.Sample("nvs_verdicts_total", {{"verdict", "COMMIT"}}, 3);
  page.Sample("nvs_verdicts_total", {{"verdict", "a \"quoted\" \\ value\nwith a newline"}}, 0.5);
  page.Gauge("nvs_ready", "Whether nvsd serves.", 1);
  EXPECT_EQ(page.Take(),
            "# HELP nvs_verdicts_total Verdicts by kind.\\nSecond line \\\\ backslash.\n"
            "# TYPE nvs_verdicts_total counter\n"
            "nvs_verdicts_total{verdict=\"COMMIT\"} 3\n"
            "nvs_verdicts_total{verdict=\"a \\\"quoted\\\" \\\\ value\\nwith a newline\"} 0.5\n"
            "# HELP nvs_ready Whether nvsd serves.\n"
            "# TYPE nvs_ready gauge\n"
            "nvs_ready 1\n");
}

TEST(Exposition, ValuesAreWrittenShortestAndSpecialValuesByName) {
  EXPECT_EQ(Exposition::FormatValue(0), "0");
  EXPECT_EQ(Exposition::FormatValue(42), "42");
  EXPECT_EQ(Exposition::FormatValue(0.1), "0.1");
  EXPECT_EQ(Exposition::FormatValue(0.00025), "0.00025");
  EXPECT_EQ(Exposition::FormatValue(0.0001), "0.0001") << "a bucket bound as other exporters write it";
  EXPECT_EQ(Exposition::FormatValue(2.5e-9), "2.5e-09");
  EXPECT_EQ(Exposition::FormatValue(1e300), "1e+300");
  EXPECT_EQ(Exposition::FormatValue(-3.5), "-3.5");
  EXPECT_EQ(Exposition::FormatValue(18446744073709551615.0), "18446744073709551616");
  EXPECT_EQ(Exposition::FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(Exposition::FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(Exposition::FormatValue(std::nan("")), "NaN");
}

TEST(Exposition, AHistogramIsCumulativeWithInfSumAndCount) {
  Histogram h({0.001, 0.01, 0.1});
  for (double v : {0.0005, 0.001, 0.002, 0.05, 3.0}) h.Observe(v);
  Exposition page;
  page.Family("nvs_command_duration_seconds", MetricType::kHistogram, "Latency.");
  page.Observations("nvs_command_duration_seconds", {{"kind", "command"}}, h);
  EXPECT_EQ(page.Take(),
            "# HELP nvs_command_duration_seconds Latency.\n"
            "# TYPE nvs_command_duration_seconds histogram\n"
            "nvs_command_duration_seconds_bucket{kind=\"command\",le=\"0.001\"} 2\n"
            "nvs_command_duration_seconds_bucket{kind=\"command\",le=\"0.01\"} 3\n"
            "nvs_command_duration_seconds_bucket{kind=\"command\",le=\"0.1\"} 4\n"
            "nvs_command_duration_seconds_bucket{kind=\"command\",le=\"+Inf\"} 5\n"
            "nvs_command_duration_seconds_sum{kind=\"command\"} 3.0535\n"
            "nvs_command_duration_seconds_count{kind=\"command\"} 5\n");
}

TEST(Exposition, MistakesAreRefusedNotWritten) {
  Exposition page;
  EXPECT_THROW(page.Family("1bad", MetricType::kGauge, "x"), std::logic_error);
  EXPECT_THROW(page.Family("nvs-bad", MetricType::kGauge, "x"), std::logic_error);
  EXPECT_THROW(page.Family("nvs_commits", MetricType::kCounter, "a counter ends in _total"), std::logic_error);
  page.Family("nvs_a", MetricType::kGauge, "x");
  EXPECT_THROW(page.Family("nvs_a", MetricType::kGauge, "twice"), std::logic_error);
  EXPECT_THROW(page.Sample("nvs_b", {}, 1), std::logic_error) << "not the family started last";
  EXPECT_THROW(page.Sample("nvs_a", {{"__reserved", "x"}}, 1), std::logic_error);
  EXPECT_THROW(page.Sample("nvs_a", {{"bad-label", "x"}}, 1), std::logic_error);
  EXPECT_THROW(page.Sample("nvs_a", {{"v", "x"}, {"v", "y"}}, 1), std::logic_error);
  page.Family("nvs_h_seconds", MetricType::kHistogram, "x");
  EXPECT_THROW(page.Sample("nvs_h_seconds", {}, 1), std::logic_error) << "a histogram's samples are its buckets";
  EXPECT_THROW(page.Observations("nvs_h_seconds", {{"le", "1"}}, Histogram({1})), std::logic_error);
  EXPECT_THROW(Histogram({}), std::logic_error);
  EXPECT_THROW(Histogram({2, 1}), std::logic_error);
  EXPECT_THROW(Histogram({1, 1}), std::logic_error);
}

TEST(Exposition, TakeStartsAFreshPage) {
  Exposition page;
  page.Gauge("nvs_a", "x", 1);
  page.Take();
  page.Gauge("nvs_a", "x", 2);  // (the same name again on the next page)
  EXPECT_EQ(page.Take(), "# HELP nvs_a x\n# TYPE nvs_a gauge\nnvs_a 2\n");
}

}  // namespace
}  // namespace nvs::metrics
