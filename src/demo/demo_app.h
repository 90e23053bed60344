// `weft demo-app`: a small HTTP service for demos and tests of the mesh. It
// answers every request after a configurable latency, fails a configurable
// share of them, and calls other services (through its sidecar's upstream
// ports, as a real application would) before answering, so that a mesh of
// them has a call graph, latency and errors to show.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace weft::demo {

struct DemoOptions {
  std::string name = "demo";
  std::string version = "v1";
  std::string listen = "127.0.0.1:8080";
  int64_t latency_ms = 0;  // before answering
  int64_t jitter_ms = 0;   // plus uniform [0, jitter)
  // A latency tail: a share of requests (tail_rate, 0..1) take tail_ms more
  // (as an instance does now and then: a pause, a cold cache).
  double tail_rate = 0;
  int64_t tail_ms = 0;
  double error_rate = 0;   // share of requests answered with error_status
  int error_status = 500;  // 500..599
  // A second listener (off when empty) where GET/PUT /behaviour reads and
  // changes latency, jitter, tail, error rate and status while the app runs (a
  // test turns an instance slow or failing mid-run). Apart from the
  // served port, so callers through the mesh cannot reach it.
  std::string admin;
  std::vector<std::string> calls;  // HOST:PORT[/PATH], called on every request, in order
  int64_t call_timeout_ms = 2000;
  size_t max_call_body = 64 * 1024;  // a call's answer beyond this counts as failed
};

// Runs until SIGTERM/SIGINT, serving on the calling thread (one io_context).
// Ignores SIGPIPE for the whole process. Returns the process exit code.
int RunDemoApp(const DemoOptions& opts);

}  // namespace weft::demo
