// Micro benchmarks of the request-path building blocks.
#include <benchmark/benchmark.h>

#include "http/http1/parser.h"
#include "proxy/upstream/load_balancer.h"

namespace {

const std::string kRequest =
    "GET /api/v1/items?id=42 HTTP/1.1\r\nHost: example.internal\r\nUser-Agent: wrk\r\n"
    "Accept: */*\r\nAccept-Encoding: gzip\r\nX-Request-Id: "
    "5b1f5c3e-8a4e-4b52-9a52-1b2c3d4e5f60\r\n\r\n";

void BM_ParseRequest(benchmark::State& state) {
  weft::http1::Limits limits;
  weft::http1::Head head;
  weft::http1::Error err;
  for (auto _ : state) {
    size_t scanned = 0;
    auto r =
        weft::http1::ParseRequest(kRequest.data(), kRequest.size(), limits, &scanned, &head, &err);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRequest.size()));
}
BENCHMARK(BM_ParseRequest);

void BM_ChunkedDecode(benchmark::State& state) {
  std::string body;
  for (int i = 0; i < 64; ++i) body += "400\r\n" + std::string(1024, 'x') + "\r\n";
  body += "0\r\n\r\n";
  weft::http1::Limits limits;
  std::vector<std::string_view> spans;
  weft::http1::Error err;
  for (auto _ : state) {
    weft::http1::ChunkedDecoder d(limits);
    spans.clear();
    benchmark::DoNotOptimize(d.Feed(body.data(), body.size(), &spans, &err));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_ChunkedDecode);

void BM_LeastRequestPick(benchmark::State& state) {
  weft::proxy::upstream::LoadBalancer lb(weft::proxy::LbPolicy::kLeastRequest,
                                         std::vector<uint32_t>(16, 1), 1);
  std::vector<uint32_t> active(16, 0);
  for (auto _ : state) benchmark::DoNotOptimize(lb.Pick(active));
}
BENCHMARK(BM_LeastRequestPick);

}  // namespace

BENCHMARK_MAIN();
