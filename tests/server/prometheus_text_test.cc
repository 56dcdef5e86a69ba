#include "server/prometheus_text.h"

#include <gtest/gtest.h>

namespace asflow {
namespace {

TEST(PrometheusTextTest, WritesFamiliesAndEscapesLabels) {
  PrometheusText out;
  out.Family("asflow_x_total", "counter", "Things\\done\nwell.");
  out.Sample("asflow_x_total", {{"task", "a\"b\\c\nd"}, {"state", "done"}}, 3);
  out.Sample("asflow_x_total", {}, 0.25);
  EXPECT_EQ(out.text(),
            "# HELP asflow_x_total Things\\\\done\\nwell.\n"
            "# TYPE asflow_x_total counter\n"
            "asflow_x_total{task=\"a\\\"b\\\\c\\nd\",state=\"done\"} 3\n"
            "asflow_x_total 0.25\n");
}

TEST(PrometheusTextTest, HistogramBucketsAreCumulative) {
  Histogram h;
  h.Observe(absl::Microseconds(50));   // <= 0.0001
  h.Observe(absl::Milliseconds(3));    // <= 0.005
  h.Observe(absl::Milliseconds(3));
  h.Observe(absl::Seconds(10));        // +Inf
  PrometheusText out;
  out.HistogramSamples("asflow_commit_seconds", {}, h.Read());
  const std::string& t = out.text();
  EXPECT_NE(t.find("asflow_commit_seconds_bucket{le=\"0.0001\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("asflow_commit_seconds_bucket{le=\"0.0025\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("asflow_commit_seconds_bucket{le=\"0.005\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("asflow_commit_seconds_bucket{le=\"2.5\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("asflow_commit_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos) << t;
  EXPECT_NE(t.find("asflow_commit_seconds_sum 10.00605\n"), std::string::npos) << t;
  EXPECT_NE(t.find("asflow_commit_seconds_count 4\n"), std::string::npos) << t;
}

TEST(PrometheusTextTest, FormatsValuesAsPrometheusDoes) {
  EXPECT_EQ(PrometheusText::FormatValue(0), "0");
  EXPECT_EQ(PrometheusText::FormatValue(12345678901), "12345678901");
  EXPECT_EQ(PrometheusText::FormatValue(0.1), "0.1");
  EXPECT_EQ(PrometheusText::FormatValue(1.0 / 0.0), "+Inf");
}

}  // namespace
}  // namespace asflow
