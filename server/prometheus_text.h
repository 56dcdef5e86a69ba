// PrometheusText: writes metrics in Prometheus' text exposition format
// (version 0.0.4): "# HELP" and "# TYPE" once per family, then its samples,
// label values escaped. Not thread-safe; one per scrape.
#ifndef ASFLOW_SERVER_PROMETHEUS_TEXT_H_
#define ASFLOW_SERVER_PROMETHEUS_TEXT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/histogram.h"

namespace asflow {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class PrometheusText {
 public:
  static constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

  // Starts family `name` of `type` ("counter", "gauge", "histogram").
  void Family(absl::string_view name, absl::string_view type, absl::string_view help);
  // One sample of the current family (a histogram's name gets its suffix
  // from Histogram()).
  void Sample(absl::string_view name, const MetricLabels& labels, double value);
  // The _bucket (cumulative, le in seconds), _sum and _count samples of
  // `h` under `name`.
  void HistogramSamples(absl::string_view name, const MetricLabels& labels, const Histogram::Snapshot& h);

  const std::string& text() const { return out_; }

  // A sample value as Prometheus writes it: integers without a fraction,
  // "+Inf", "NaN".
  static std::string FormatValue(double value);

 private:
  std::string out_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_PROMETHEUS_TEXT_H_
