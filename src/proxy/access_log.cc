#include "proxy/access_log.h"

#include <fmt/format.h>

#include <ctime>

#include "base/strings.h"
#include "base/time.h"
#include "proxy/worker.h"

namespace weft::proxy {

void FormatAccessLog(const StreamInfo& in, int64_t now_ns, int64_t wall_us, std::string* line) {
  time_t secs = static_cast<time_t>(wall_us / 1000000);
  tm t;
  gmtime_r(&secs, &t);
  line->reserve(line->size() + 384);
  fmt::format_to(std::back_inserter(*line),
                 "{{\"time\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"listener\":\"",
                 t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                 (wall_us / 1000) % 1000);
  AppendJsonEscaped(line, in.listener);
  line->append("\",\"client\":\"");
  AppendJsonEscaped(line, in.client);
  line->append("\",\"method\":\"");
  AppendJsonEscaped(line, in.method.empty() ? std::string_view("-") : in.method);
  line->append("\",\"path\":\"");
  AppendJsonEscaped(line, in.path);
  fmt::format_to(std::back_inserter(*line),
                 "\",\"status\":{},\"bytes_received\":{},\"bytes_sent\":{},\"duration_ms\":{:.3f},"
                 "\"upstream_ms\":{:.3f},\"attempts\":{},\"upstream\":\"",
                 in.status, in.bytes_received, in.bytes_sent,
                 in.start_ns ? (now_ns - in.start_ns) / 1e6 : 0.0, in.upstream_ns / 1e6,
                 in.attempts);
  AppendJsonEscaped(line, in.upstream);
  line->append("\",\"peer\":\"");
  AppendJsonEscaped(line, in.peer);
  line->append("\",\"request_id\":\"");
  AppendJsonEscaped(line, in.request_id);
  line->append("\",\"flags\":\"");
  line->append(in.flags);
  if (!in.trace_id.empty()) {
    line->append("\",\"trace_id\":\"");
    line->append(in.trace_id);  // hex digits: nothing to escape
  }
  if (in.grpc_status >= 0) {
    fmt::format_to(std::back_inserter(*line), "\",\"grpc_status\":{}}}\n", in.grpc_status);
  } else {
    line->append("\"}\n");
  }
}

void ObserveAccessLog(Worker* w, const std::shared_ptr<AccessLogSink>& sink,
                      const StreamInfo& info) {
  if (!sink) return;
  std::string line;
  FormatAccessLog(info, MonoNanos(), WallMicros(), &line);
  w->AccessLog(sink, line);
}

}  // namespace weft::proxy
