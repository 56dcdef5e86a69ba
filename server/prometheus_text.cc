#include "server/prometheus_text.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace asflow {
namespace {

std::string EscapeHelp(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string EscapeLabel(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void AppendLabels(const MetricLabels& labels, std::string* out) {
  if (labels.empty()) return;
  out->push_back('{');
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out->push_back(',');
    absl::StrAppend(out, labels[i].first, "=\"", EscapeLabel(labels[i].second), "\"");
  }
  out->push_back('}');
}

}  // namespace

std::string PrometheusText::FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 9e15) return absl::StrCat(static_cast<int64_t>(value));
  // The shortest of 15 or 17 digits that reads back as the same double.
  std::string short_form = absl::StrFormat("%.15g", value);
  if (std::strtod(short_form.c_str(), nullptr) == value) return short_form;
  return absl::StrFormat("%.17g", value);
}

void PrometheusText::Family(absl::string_view name, absl::string_view type, absl::string_view help) {
  absl::StrAppend(&out_, "# HELP ", name, " ", EscapeHelp(help), "\n# TYPE ", name, " ", type, "\n");
}

void PrometheusText::Sample(absl::string_view name, const MetricLabels& labels, double value) {
  out_.append(name.data(), name.size());
  AppendLabels(labels, &out_);
  absl::StrAppend(&out_, " ", FormatValue(value), "\n");
}

void PrometheusText::HistogramSamples(absl::string_view name, const MetricLabels& labels,
                                      const Histogram::Snapshot& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    MetricLabels with_le = labels;
    with_le.emplace_back("le", i < Histogram::kLatencyBounds.size()
                                   ? FormatValue(Histogram::kLatencyBounds[i])
                                   : std::string("+Inf"));
    Sample(absl::StrCat(name, "_bucket"), with_le, static_cast<double>(cumulative));
  }
  Sample(absl::StrCat(name, "_sum"), labels, h.sum_seconds);
  Sample(absl::StrCat(name, "_count"), labels, static_cast<double>(cumulative));
}

}  // namespace asflow
