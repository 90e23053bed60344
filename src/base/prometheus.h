// The Prometheus text exposition format (version 0.0.4), written once for
// every program: the proxy's /stats, the server's and the agent's /metrics.
// Label values are escaped (backslash, double quote, newline), so a
// listener, route or policy name can hold any byte; families are grouped
// with one HELP and TYPE line each, whatever order the samples come in.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weft::prom {

// Appends `v` escaped for a label value.
void AppendLabelValue(std::string* out, std::string_view v);

// A label set, rendered once (name="value",...) and reused for many samples.
class Labels {
 public:
  Labels() = default;
  Labels(std::initializer_list<std::pair<std::string_view, std::string_view>> kv);
  // A copy with one more label.
  Labels With(std::string_view name, std::string_view value) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// One exposition; not thread-safe. `type` and `help` are kept as pointers,
// not copied, until Finish(): pass string literals.
//
// OpenMetrics (`openmetrics`: what Prometheus asks for with Accept:
// application/openmetrics-text): the same samples, a counter's family named
// without its _total, exemplars on the samples that have one, and # EOF.
class Writer {
 public:
  explicit Writer(bool openmetrics = false) : openmetrics_(openmetrics) {}
  bool openmetrics() const { return openmetrics_; }
  void Counter(std::string_view name, const char* help, const Labels& l, uint64_t v);
  void Gauge(std::string_view name, const char* help, const Labels& l, int64_t v);
  // One sample of `family` named `sample` (a histogram's _bucket, _sum or
  // _count), declared with `type` and `help` on first use.
  // `exemplar`: "{trace_id=\"...\"} VALUE TIMESTAMP", written after the
  // value in OpenMetrics only.
  void Sample(std::string_view family, const char* type, const char* help, std::string_view sample,
              const Labels& l, std::string_view value, std::string_view exemplar = {});
  std::string Finish() const;

 private:
  struct Family {
    std::string name;
    const char* type;
    const char* help;
    std::string lines;
  };
  std::vector<Family> families_;
  std::map<std::string, size_t, std::less<>> index_;
  bool openmetrics_ = false;
};

inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr const char* kOpenMetricsContentType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
// Whether an Accept field value asks for OpenMetrics.
bool WantsOpenMetrics(std::string_view accept);

}  // namespace weft::prom
