#include "proxy/span_sink.h"

#include <algorithm>
#include <chrono>

#include "base/log.h"
#include "http/client.h"

namespace weft::proxy {

SpanSinkOptions SpanSink::Sane(SpanSinkOptions o) {
  o.max_batch = std::max<size_t>(o.max_batch, 1);
  o.flush_ms = std::max<int64_t>(o.flush_ms, 1);
  o.timeout_ms = std::max<int64_t>(o.timeout_ms, 1);
  return o;
}

SpanSink::SpanSink(SpanSinkOptions o, otlp::Resource r)
    : opts_(Sane(std::move(o))), resource_(std::move(r)) {
  thread_ = std::thread([this] { Loop(); });
}

SpanSink::~SpanSink() { Stop(); }

void SpanSink::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    // An export in progress ends now, not at its timeout (one still
    // connecting, at its connect timeout).
    if (active_) static_cast<http::Client*>(active_)->Shutdown();
  }
  cv_.notify_one();
  thread_.join();
}

void SpanSink::Submit(std::vector<otlp::Span>* batch) {
  size_t dropped = 0;
  bool full_batch = false;
  {
    std::lock_guard lock(mu_);
    for (otlp::Span& s : *batch) {
      if (queue_.size() >= opts_.max_queue) {
        ++dropped;
      } else {
        queue_.push_back(std::move(s));
      }
    }
    full_batch = queue_.size() >= opts_.max_batch;
  }
  batch->clear();
  if (dropped > 0) dropped_.fetch_add(dropped, std::memory_order_relaxed);
  if (full_batch) cv_.notify_one();
}

void SpanSink::Loop() {
  std::vector<otlp::Span> spans;
  std::string body;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(opts_.flush_ms),
                   [this] { return stop_ || queue_.size() >= opts_.max_batch; });
      if (stop_) {
        dropped_.fetch_add(queue_.size(), std::memory_order_relaxed);
        queue_.clear();
        return;
      }
      const size_t n = std::min(queue_.size(), opts_.max_batch);
      spans.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<long>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<long>(n));
    }
    if (spans.empty()) continue;
    if (Export(spans, &body)) {
      exported_.fetch_add(spans.size(), std::memory_order_relaxed);
    } else {
      failed_.fetch_add(spans.size(), std::memory_order_relaxed);
    }
    spans.clear();
  }
}

bool SpanSink::Export(const std::vector<otlp::Span>& spans, std::string* body) {
  body->clear();
  if (opts_.json) {
    otlp::EncodeJson(resource_, spans, body);
  } else {
    otlp::EncodeProtobuf(resource_, spans, body);
  }
  // A connection per export: a collector that went away and came back is
  // found again, and nothing is held open between batches.
  http::ClientOptions co;
  co.connect_timeout_ms = opts_.timeout_ms;
  co.io_timeout_ms = opts_.timeout_ms;
  co.max_body_bytes = 64 * 1024;
  http::Client client(opts_.host_port, co);
  {
    std::lock_guard lock(mu_);
    if (stop_) return false;
    active_ = &client;
  }
  auto r =
      client.Do("POST", opts_.path, *body,
                {{"content-type", opts_.json ? "application/json" : "application/x-protobuf"}});
  {
    std::lock_guard lock(mu_);
    active_ = nullptr;
  }
  if (!r.ok()) {
    LOG_WARN_LIMITED("tracing: export of {} spans to {} failed: {}", spans.size(), opts_.host_port,
                     r.status().message());
    return false;
  }
  if (r.value().status < 200 || r.value().status >= 300) {
    LOG_WARN_LIMITED("tracing: the collector at {} answered {} to {} spans", opts_.host_port,
                     r.value().status, spans.size());
    return false;
  }
  return true;
}

}  // namespace weft::proxy
