// Where a proxy's finished spans go: batches handed over by its workers,
// exported to an OTLP/HTTP collector by a thread of its own, so that
// encoding and the network stay off the request path. Bounded: at most
// max_queue spans wait; beyond, new ones are dropped and counted, as are
// batches the collector did not take (it is down, slow, or said no). A
// collector that is down never slows a request.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proxy/otlp.h"

namespace weft::proxy {

struct SpanSinkOptions {
  std::string host_port;            // the collector, "HOST:PORT"
  std::string path = "/v1/traces";  // OTLP/HTTP's traces path
  bool json = false;                // OTLP/JSON instead of protobuf
  size_t max_queue = 4096;          // spans waiting, all workers together
  size_t max_batch = 512;           // spans per export request
  int64_t flush_ms = 1000;          // the longest a span waits for its batch
  int64_t timeout_ms = 2000;        // connect, and each read and write
};

class SpanSink {
 public:
  SpanSink(SpanSinkOptions o, otlp::Resource r);
  // Stops the thread (an export in progress is cut short; one still
  // connecting ends at its connect timeout); what is still queued is
  // dropped (counted).
  ~SpanSink();
  // What the destructor does, for an owner that reads the counters after
  // (once: later calls do nothing). Not concurrently with Submit.
  void Stop();
  SpanSink(const SpanSink&) = delete;
  SpanSink& operator=(const SpanSink&) = delete;

  // From any thread: takes the spans of `batch` (left empty). Those over
  // max_queue are dropped and counted.
  void Submit(std::vector<otlp::Span>* batch);

  // Spans the collector accepted; dropped because the queue was full;
  // lost with a failed export (not sent again: the next batch goes on).
  uint64_t exported() const { return exported_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }

 private:
  void Loop();
  bool Export(const std::vector<otlp::Span>& spans, std::string* body);

  static SpanSinkOptions Sane(SpanSinkOptions o);  // no zero batch, interval or timeout
  const SpanSinkOptions opts_;
  const otlp::Resource resource_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<otlp::Span> queue_;  // guarded by mu_
  bool stop_ = false;             // guarded by mu_
  void* active_ = nullptr;        // guarded by mu_: the export in progress (http::Client)
  std::atomic<uint64_t> exported_{0}, dropped_{0}, failed_{0};
  std::thread thread_;
};

}  // namespace weft::proxy
