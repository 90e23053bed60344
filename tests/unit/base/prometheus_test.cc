#include "base/prometheus.h"

#include <gtest/gtest.h>

namespace weft::prom {
namespace {

TEST(Prometheus, LabelValuesAreEscaped) {
  Labels l{{"listener", "a\"b\\c\nd"}};
  EXPECT_EQ(l.text(), "listener=\"a\\\"b\\\\c\\nd\"");
  EXPECT_EQ(l.With("class", "2xx").text(), "listener=\"a\\\"b\\\\c\\nd\",class=\"2xx\"");
}

TEST(Prometheus, FamiliesAreGroupedWithOneHelpAndTypeEach) {
  Writer w;
  w.Counter("x_total", "Things.", {{"k", "1"}}, 3);
  w.Gauge("y", "Level.", {}, -2);
  w.Counter("x_total", "Things.", {{"k", "2"}}, 4);
  w.Sample("h_seconds", "histogram", "Time.", "h_seconds_count", {}, "7");
  EXPECT_EQ(
      w.Finish(),
      "# HELP x_total Things.\n# TYPE x_total counter\nx_total{k=\"1\"} 3\nx_total{k=\"2\"} 4\n"
      "# HELP y Level.\n# TYPE y gauge\ny -2\n"
      "# HELP h_seconds Time.\n# TYPE h_seconds histogram\nh_seconds_count 7\n");
}

TEST(Prometheus, OpenMetricsNamesCountersWithoutTotalAndCarriesExemplars) {
  Writer w(true);
  w.Counter("x_total", "Things \"quoted\".", {{"k", "1"}}, 3);
  w.Sample("h_seconds", "histogram", "Time.", "h_seconds_bucket", Labels{{"le", "0.5"}}, "7",
           "{trace_id=\"ab\"} 0.25 1700000000.123");
  EXPECT_EQ(w.Finish(),
            "# HELP x Things \\\"quoted\\\".\n# TYPE x counter\nx_total{k=\"1\"} 3\n"
            "# HELP h_seconds Time.\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"0.5\"} 7 # {trace_id=\"ab\"} 0.25 1700000000.123\n# EOF\n");
  // The text format has no exemplars.
  Writer t;
  t.Sample("h_seconds", "histogram", "Time.", "h_seconds_bucket", Labels{{"le", "0.5"}}, "7",
           "{trace_id=\"ab\"} 0.25 1700000000.123");
  EXPECT_EQ(t.Finish(),
            "# HELP h_seconds Time.\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.5\"} 7\n");
  EXPECT_TRUE(WantsOpenMetrics("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"));
  EXPECT_FALSE(WantsOpenMetrics("text/plain"));
}

}  // namespace
}  // namespace weft::prom
