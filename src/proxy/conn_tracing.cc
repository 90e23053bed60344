// Tracing in the connection manager (conn_manager.h): the trace context an
// exchange carries upstream, and the spans it leaves behind.
//
// Every exchange on a proxy with tracing on carries a W3C `traceparent`
// upstream: the one it came with (or its B3 headers, translated), or a new
// trace when none came. Head sampling decides once per trace: a parent's
// decision is kept, a new trace is recorded at the configured rate. A
// sampled exchange records a server span (parent: the caller's span) and a
// client span per upstream attempt (parent: the server span); each attempt
// goes upstream naming its own client span, so the next hop's spans hang
// from the attempt that reached it. An exchange that is not sampled passes
// the caller's context on unchanged.
#include <string_view>

#include "base/strings.h"
#include "base/time.h"
#include "http/grpc.h"
#include "proxy/conn_manager.h"
#include "proxy/router.h"
#include "proxy/tls.h"

namespace weft::proxy {

using namespace std::string_view_literals;
namespace trace = http::trace;

namespace {

// The most of a request's path a span keeps (the queue holds spans by
// count: this keeps it bounded in bytes too).
constexpr size_t kMaxSpanPath = 1024;

// The trace context fields a request may carry (what StartTrace reads, and
// what BuildUpstreamRequest drops to send the sidecar's own).
enum class TraceField : uint8_t {
  kNone,
  kTraceparent,
  kTracestate,
  kB3,
  kB3TraceId,
  kB3SpanId,
  kB3ParentSpanId,
  kB3Sampled,
  kB3Flags,
};

TraceField TraceFieldOf(std::string_view n) {
  switch (n.size()) {
    case 2:
      return IEquals(n, "b3") ? TraceField::kB3 : TraceField::kNone;
    case 10:
      return IEquals(n, "tracestate")   ? TraceField::kTracestate
             : IEquals(n, "x-b3-flags") ? TraceField::kB3Flags
                                        : TraceField::kNone;
    case 11:
      return IEquals(n, "traceparent")   ? TraceField::kTraceparent
             : IEquals(n, "x-b3-spanid") ? TraceField::kB3SpanId
                                         : TraceField::kNone;
    case 12:
      return IEquals(n, "x-b3-traceid")   ? TraceField::kB3TraceId
             : IEquals(n, "x-b3-sampled") ? TraceField::kB3Sampled
                                          : TraceField::kNone;
    case 17:
      return IEquals(n, "x-b3-parentspanid") ? TraceField::kB3ParentSpanId : TraceField::kNone;
    default:
      return TraceField::kNone;
  }
}

template <size_t N>
void RandomId(Rng& rng, std::array<uint8_t, N>* id) {
  do {
    for (size_t i = 0; i < N; i += 8) {
      const uint64_t r = rng.Next();
      for (size_t k = 0; k < 8 && i + k < N; ++k) (*id)[i + k] = static_cast<uint8_t>(r >> (8 * k));
    }
  } while (*id == std::array<uint8_t, N>{});  // all zeros is "no id"
}

// gRPC statuses a server span calls an error (the rest are the caller's
// doing): UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
// DATA_LOSS.
bool GrpcServerError(int code) {
  return code == 2 || code == 4 || code == 12 || code == 13 || code == 14 || code == 15;
}

void SplitHostPort(std::string_view addr, std::string_view* host, int64_t* port) {
  const size_t colon = addr.rfind(':');
  *host = addr;
  *port = 0;
  if (colon == std::string_view::npos) return;
  *host = addr.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  for (char ch : addr.substr(colon + 1)) {
    if (ch < '0' || ch > '9') return;
    *port = *port * 10 + (ch - '0');
  }
}

}  // namespace

void HttpConnectionManager::ActiveStream::StartTrace(const Ctx& c,
                                                     const http::RequestHeaders& req) {
  trace_ = true;
  b3_form_ = 0;
  tracestate_.clear();
  std::string_view traceparent, b3, b3_trace, b3_span, b3_sampled, b3_flags;
  std::string_view tracestate;
  size_t tracestate_fields = 0, traceparent_fields = 0;
  for (const http::HeaderField& f : req.fields) {
    switch (TraceFieldOf(f.name)) {
      case TraceField::kB3:
        b3 = f.value;
        break;
      case TraceField::kTracestate:
        tracestate = f.value;
        ++tracestate_fields;
        break;
      case TraceField::kB3Flags:
        b3_flags = f.value;
        break;
      case TraceField::kTraceparent:
        traceparent = f.value;
        ++traceparent_fields;
        break;
      case TraceField::kB3SpanId:
        b3_span = f.value;
        break;
      case TraceField::kB3TraceId:
        b3_trace = f.value;
        break;
      case TraceField::kB3Sampled:
        b3_sampled = f.value;
        break;
      case TraceField::kB3ParentSpanId:  // dropped: the sidecar's span is the parent now
      case TraceField::kNone:
        break;
    }
  }
  int decision = -1;  // the caller's sampling decision: -1 none
  std::optional<trace::SpanContext> ctx;
  // B3 goes on in the form it came in, whichever context is taken.
  if (!b3.empty()) {
    b3_form_ = 1;
  } else if (!b3_trace.empty() || !b3_span.empty() || !b3_sampled.empty() || !b3_flags.empty()) {
    b3_form_ = 2;
  }
  // Two traceparent fields are no context (the spec's rule for a header
  // that is not exactly one valid value).
  if (traceparent_fields == 1) ctx = trace::ParseTraceparent(traceparent);
  if (ctx) {
    decision = ctx->sampled ? 1 : 0;
    if (tracestate_fields > 0) {
      // Several fields make one list (RFC 9110's comma join), in order.
      std::string joined;
      if (tracestate_fields > 1) {
        for (const http::HeaderField& f : req.fields) {
          if (TraceFieldOf(f.name) == TraceField::kTracestate) {
            if (!joined.empty()) joined += ',';
            joined.append(f.value);
          }
        }
        tracestate = joined;
      }
      if (auto ts = trace::NormalizeTracestate(tracestate)) tracestate_ = std::move(*ts);
    }
  } else if (b3_form_ == 1) {
    ctx = trace::ParseB3Single(b3, &decision);
  } else if (b3_form_ == 2) {
    ctx = trace::ParseB3Multi(b3_trace, b3_span, b3_sampled, b3_flags, &decision);
  }
  if (ctx) {
    trace_id_ = ctx->trace_id;
    parent_span_ = ctx->span_id;
  } else {
    RandomId(w_->rng(), &trace_id_);  // a new trace (a B3 decision alone is kept)
    parent_span_ = {};
  }
  RandomId(w_->rng(), &server_span_);
  const double r = static_cast<double>(w_->rng().Below(1u << 24)) / static_cast<double>(1u << 24);
  sampled_ = trace::Sample(decision, c.state->snap->trace_sampling, r);
  // Until an attempt starts: what a local reply's trace says, and what a
  // mirrored copy made now carries.
  SetUpstreamParent(sampled_ || parent_span_ == trace::SpanId{} ? server_span_ : parent_span_);
}

bool HttpConnectionManager::ActiveStream::IsTraceField(std::string_view n) const {
  return TraceFieldOf(n) != TraceField::kNone;
}

void HttpConnectionManager::ActiveStream::SetUpstreamParent(const trace::SpanId& id) {
  trace::WriteTraceparent({trace_id_, id, sampled_}, traceparent_buf_);
  if (b3_form_ != 0) {
    trace::WriteHex(trace_id_.data(), trace_id_.size(), b3_buf_);
    b3_buf_[32] = '-';
    trace::WriteHex(id.data(), id.size(), b3_buf_ + 33);
    b3_buf_[49] = '-';
    b3_buf_[50] = sampled_ ? '1' : '0';
  }
}

void HttpConnectionManager::ActiveStream::AddTraceFields() {
  const std::string_view tp(traceparent_buf_, sizeof(traceparent_buf_));
  up_req_.fields.push_back({"traceparent"sv, tp});
  if (!tracestate_.empty()) up_req_.fields.push_back({"tracestate"sv, tracestate_});
  // A caller that spoke B3 gets B3 on the way on too, in its form, besides
  // traceparent: the application behind may read only that.
  if (b3_form_ == 1) {
    up_req_.fields.push_back({"b3"sv, std::string_view(b3_buf_, sizeof(b3_buf_))});
  } else if (b3_form_ == 2) {
    up_req_.fields.push_back({"x-b3-traceid"sv, std::string_view(b3_buf_, 32)});
    up_req_.fields.push_back({"x-b3-spanid"sv, std::string_view(b3_buf_ + 33, 16)});
    up_req_.fields.push_back({"x-b3-sampled"sv, std::string_view(b3_buf_ + 50, 1)});
  }
}

void HttpConnectionManager::ActiveStream::OpenAttemptSpan(std::string_view endpoint, bool hedge) {
  const int64_t now = MonoNanos();
  AttemptSpan a;
  RandomId(w_->rng(), &a.id);
  a.start_ns = now;
  a.endpoint = endpoint;
  a.number = attempts_;
  a.hedge = hedge;
  if (hedge) {
    hedge_attempt_ = attempt_spans_.size();
  } else {
    // The attempt before this one ended without an answer that counted.
    if (cur_attempt_ < attempt_spans_.size())
      CloseAttemptSpan(cur_attempt_, 0, timed_out_ ? "timeout" : "retried", now);
    cur_attempt_ = attempt_spans_.size();
  }
  attempt_spans_.push_back(a);
}

void HttpConnectionManager::ActiveStream::CloseAttemptSpan(size_t i, int status, const char* error,
                                                           int64_t now_ns) {
  if (i >= attempt_spans_.size()) return;
  AttemptSpan& a = attempt_spans_[i];
  if (a.end_ns != 0) return;
  a.end_ns = now_ns;
  if (status > 0) a.status = status;
  if (a.status == 0) a.error = error;
}

void HttpConnectionManager::ActiveStream::EmitSpans(const Ctx& c, const http::RequestHeaders* req,
                                                    int status, std::string_view flags) {
  const std::shared_ptr<SpanSink>& sink = c.state->snap->spans;
  spans_emitted_ = true;
  if (!sink) return;
  const int64_t now = MonoNanos();
  const int64_t to_unix = WallMicros() * 1000 - now;
  const std::string_view method = req ? std::string_view(req->method) : std::string_view();
  std::string_view route_path;
  if (route_ != nullptr) route_path = route_->path.empty() ? route_->prefix : route_->path;
  std::vector<otlp::Span>* out = w_->SpanBuffer(sink);

  // The server span: the exchange as the caller saw it.
  otlp::Span& sv = out->emplace_back();
  sv.trace_id = trace_id_;
  sv.span_id = server_span_;
  sv.parent_span_id = parent_span_;
  sv.trace_state = tracestate_;
  sv.kind = otlp::SpanKind::kServer;
  sv.name.reserve(method.size() + 1 + route_path.size());
  sv.name.append(method.empty() ? "HTTP"sv : method);
  if (!route_path.empty()) sv.name.append(" "sv).append(route_path);
  sv.start_unix_ns = static_cast<uint64_t>(start_ns_ + to_unix);
  sv.end_unix_ns = static_cast<uint64_t>(now + to_unix);
  auto& a = sv.attributes;
  a.reserve(14);
  if (req) {
    a.push_back({"http.request.method", std::string(method)});
    a.push_back({"url.path", std::string(RequestPath(req->path).substr(0, kMaxSpanPath))});
    a.push_back({"network.protocol.version",
                 std::string(req->version == http::Version::kHttp2 ? "2" : "1.1")});
  }
  if (!route_path.empty()) a.push_back({"http.route", std::string(route_path)});
  if (status > 0) a.push_back({"http.response.status_code", int64_t{status}});
  a.push_back({"client.address", cm_->client_ip_});
  if (!cm_->peer_.empty()) a.push_back({"weft.peer.identity", cm_->peer_});
  a.push_back({"weft.listener", c.lc->name});
  if (route_ != nullptr) a.push_back({"weft.route", route_->name});
  a.push_back({"weft.response_flags", std::string(flags)});
  a.push_back({"weft.request_id", request_id_});
  a.push_back({"weft.attempts", int64_t{attempts_}});
  if (grpc_) {
    a.push_back({"rpc.system", std::string("grpc")});
    if (grpc_status_ >= 0) a.push_back({"rpc.grpc.status_code", int64_t{grpc_status_}});
  }
  // Broken off (flags UR, UT, DR, DC: see access_log.h) is an error too,
  // whatever the status said.
  const bool broken = flags.size() == 2 && flags != "LR";
  if (status == 0) a.push_back({"error.type", std::string("downstream disconnected")});
  if (status >= 500 || broken || (grpc_ && GrpcServerError(grpc_status_))) {
    sv.status = otlp::StatusCode::kError;
  }

  // A client span per attempt: the one whose answer was relayed ends now.
  CloseAttemptSpan(cur_attempt_, 0, timed_out_ ? "timeout" : "no response", now);
  if (hedge_attempt_ < attempt_spans_.size()) CloseAttemptSpan(hedge_attempt_, 0, "cancelled", now);
  for (size_t i = 0; i < attempt_spans_.size(); ++i) {
    AttemptSpan& at = attempt_spans_[i];
    if (at.end_ns == 0) CloseAttemptSpan(i, 0, "cancelled", now);
    otlp::Span& cs = out->emplace_back();
    cs.trace_id = trace_id_;
    cs.span_id = at.id;
    cs.parent_span_id = server_span_;
    cs.trace_state = tracestate_;
    cs.kind = otlp::SpanKind::kClient;
    cs.name.reserve(method.size() + 1 + cluster_name_.size());
    cs.name.append(method.empty() ? "HTTP"sv : method);
    if (!cluster_name_.empty()) cs.name.append(" "sv).append(cluster_name_);
    cs.start_unix_ns = static_cast<uint64_t>(at.start_ns + to_unix);
    cs.end_unix_ns = static_cast<uint64_t>(at.end_ns + to_unix);
    auto& ca = cs.attributes;
    ca.reserve(12);
    if (req) ca.push_back({"http.request.method", std::string(method)});
    std::string_view host;
    int64_t port = 0;
    SplitHostPort(at.endpoint, &host, &port);
    ca.push_back({"server.address", std::string(host)});
    if (port > 0) ca.push_back({"server.port", port});
    ca.push_back({"network.peer.address", std::string(host)});
    if (at.status > 0) ca.push_back({"http.response.status_code", int64_t{at.status}});
    if (at.number > 1) ca.push_back({"http.request.resend_count", int64_t{at.number - 1}});
    ca.push_back({"weft.attempt", int64_t{at.number}});
    if (at.hedge) ca.push_back({"weft.hedge", true});
    if (!cluster_name_.empty()) ca.push_back({"weft.cluster", std::string(cluster_name_)});
    if (!cluster_peer_id_.empty())
      ca.push_back({"weft.peer.identity", std::string(cluster_peer_id_)});
    // The relayed attempt's gRPC status is the call's; another one's is
    // its own trailers-only answer, if it had one.
    const bool relayed = i == cur_attempt_ && at.status > 0;
    const int grpc_code = relayed && grpc_status_ >= 0 ? grpc_status_ : at.grpc_status;
    if (grpc_) {
      ca.push_back({"rpc.system", std::string("grpc")});
      if (grpc_code >= 0) ca.push_back({"rpc.grpc.status_code", int64_t{grpc_code}});
    }
    if (at.error != nullptr) {
      ca.push_back({"error.type", std::string(at.error)});
      cs.status = otlp::StatusCode::kError;
    } else if (at.status >= 400 || (grpc_ && grpc_code > 0)) {
      cs.status = otlp::StatusCode::kError;
    }
  }
  w_->SpansAdded();
}

}  // namespace weft::proxy
