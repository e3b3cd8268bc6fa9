#include "nvs/metrics/exposition.h"

#include <algorithm>
#include <cmath>
#include <charconv>
#include <set>
#include <stdexcept>

namespace nvs::metrics {
namespace {

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

void CheckMetricName(std::string_view name) {
  bool ok = !name.empty() && (IsNameStart(name[0]) || name[0] == ':');
  for (char c : name) ok = ok && (IsNameStart(c) || IsDigit(c) || c == ':');
  if (!ok) throw std::logic_error("not a metric name: '" + std::string(name) + "'");
}

void CheckLabelName(std::string_view name) {
  bool ok = !name.empty() && IsNameStart(name[0]) && name.substr(0, 2) != "__";
  for (char c : name) ok = ok && (IsNameStart(c) || IsDigit(c));
  if (!ok) throw std::logic_error("not a label name: '" + std::string(name) + "'");
}

bool EndsWith(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  if (bounds_.empty() || !std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end() || std::isinf(bounds_.back())) {
    throw std::logic_error("a histogram's bounds must be finite, increasing and at least one");
  }
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::Observe(double value) {
  const auto at = std::lower_bound(bounds_.begin(), bounds_.end(), value);  // first bound >= value
  ++counts_[static_cast<std::size_t>(at - bounds_.begin())];
  sum_ += value;
  ++count_;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::string Exposition::FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[400];
  // The shortest text that reads back as the same double (0.1, not
  // 0.1000000000000000055), in plain decimals as Prometheus's own clients
  // write bucket bounds (le="0.0001", not "1e-04": series from several
  // exporters then line up), except for the very small and very large.
  const double magnitude = std::fabs(value);
  const auto format = value != 0 && (magnitude < 1e-6 || magnitude >= 1e21) ? std::chars_format::general
                                                                               : std::chars_format::fixed;
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value, format);
  return std::string(buffer, error == std::errc() ? end : buffer);
}

std::string Exposition::EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Exposition::Family(std::string_view name, MetricType type, std::string_view help) {
  CheckMetricName(name);
  if (std::find(names_.begin(), names_.end(), name) != names_.end()) {
    throw std::logic_error("metric family '" + std::string(name) + "' written twice");
  }
  if (type == MetricType::kCounter && !EndsWith(name, "_total")) {
    throw std::logic_error("a counter's name ends in _total: '" + std::string(name) + "'");
  }
  names_.emplace_back(name);
  current_ = name;
  current_type_ = type;
  std::string escaped;
  for (char c : help) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  text_ += "# HELP " + current_ + " " + escaped + "\n";
  text_ += "# TYPE " + current_ + " " +
           (type == MetricType::kCounter ? "counter" : type == MetricType::kGauge ? "gauge" : "histogram") + "\n";
}

void Exposition::Line(std::string_view name, const Labels& labels, std::string_view extra_label,
                      std::string_view extra_value, double value) {
  std::set<std::string_view> seen;
  std::string line(name);
  const auto add = [&](std::string_view label, std::string_view label_value) {
    CheckLabelName(label);
    if (!seen.insert(label).second) throw std::logic_error("label '" + std::string(label) + "' given twice");
    line += line.size() == name.size() ? "{" : ",";
    line += label;
    line += "=\"";
    line += EscapeLabelValue(label_value);
    line += '"';
  };
  for (const auto& [label, label_value] : labels) add(label, label_value);
  if (!extra_label.empty()) add(extra_label, extra_value);
  if (line.size() != name.size()) line += '}';
  text_ += line + " " + FormatValue(value) + "\n";
}

void Exposition::Sample(std::string_view name, const Labels& labels, double value) {
  if (current_.empty() || name != current_ || current_type_ == MetricType::kHistogram) {
    throw std::logic_error("sample '" + std::string(name) + "' is not of the family started last ('" + current_ +
                           "', a counter or gauge)");
  }
  Line(name, labels, "", "", value);
}

void Exposition::Observations(std::string_view name, const Labels& labels, const Histogram& histogram) {
  if (current_.empty() || name != current_ || current_type_ != MetricType::kHistogram) {
    throw std::logic_error("histogram '" + std::string(name) + "' is not the family started last ('" + current_ + "')");
  }
  for (const auto& [label, value] : labels) {
    if (label == "le") throw std::logic_error("a histogram's own labels may not include 'le'");
  }
  const std::string base(name);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < histogram.upper_bounds().size(); ++i) {
    cumulative += histogram.counts()[i];
    Line(base + "_bucket", labels, "le", FormatValue(histogram.upper_bounds()[i]), static_cast<double>(cumulative));
  }
  Line(base + "_bucket", labels, "le", "+Inf", static_cast<double>(histogram.count()));
  Line(base + "_sum", labels, "", "", histogram.sum());
  Line(base + "_count", labels, "", "", static_cast<double>(histogram.count()));
}

void Exposition::Counter(std::string_view name, std::string_view help, double value) {
  Family(name, MetricType::kCounter, help);
  Sample(name, {}, value);
}

void Exposition::Gauge(std::string_view name, std::string_view help, double value) {
  Family(name, MetricType::kGauge, help);
  Sample(name, {}, value);
}

std::string Exposition::Take() {
  names_.clear();
  current_.clear();
  return std::move(text_);
}

}  // namespace nvs::metrics
