// Control-plane benchmark: write throughput through the REST API, and
// propagation of catalog changes to many config-stream subscribers.
//
//   weft_control_bench --http H:P --grpc H:P [--token T] [--server-ca FILE] [--server-pid PID]
//       [--instances 10000] [--subscribers 1000] [--burst 1000] [--writers 16]
//       [--raw-etcd H:P] [--skip-stream]
//
// 1. Registers --instances instances (100 services, 10 per node, consecutive
//    writes on different nodes) through
//    PUT /v1/catalog/register with --writers concurrent clients: writes/s.
//    With --raw-etcd, first puts the same number of keys of the same size
//    straight into etcd (its JSON gateway) with the same concurrency, so the
//    ratio compares like with like.
// 2. Registers one sidecar per subscriber (each calls svc-0 and one other
//    service) and opens --subscribers config streams (role proxy), one TCP
//    connection each, and waits until every one has acknowledged its config.
// 3. Single change: moves one svc-0 instance to a marker port and measures,
//    per subscriber, the time until its endpoints for svc-0 contain it.
//    Repeated 5 times: p50/p99/max over all subscribers and rounds.
// 4. Burst: --burst changes to svc-0 instances as fast as the writers go;
//    time until every subscriber holds the last one.
// Prints one JSON object with the figures (and the server's RSS).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/strings.h"
#include "http/client.h"
#include "xds/stream_client.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string http, grpc, raw_etcd, server_ca;
  int server_pid = 0;
  int instances = 10000, subscribers = 1000, burst = 1000, writers = 16;
  bool skip_stream = false;
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

long RssKb(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

// The server's ACL token (--token), sent with every API call.
std::string g_token;
weft::http::ClientOptions ClientOpts() {
  weft::http::ClientOptions o;
  if (!g_token.empty()) o.headers.emplace_back("x-consul-token", g_token);
  return o;
}

// Runs `n` jobs over `writers` threads, each with its own keep-alive client.
template <typename Fn>
double Parallel(const std::string& addr, int n, int writers, Fn job) {
  std::atomic<int> next{0};
  std::atomic<int> failed{0};
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int w = 0; w < writers; ++w) {
    ts.emplace_back([&] {
      weft::http::Client c(addr, ClientOpts());
      for (int i; (i = next.fetch_add(1)) < n;) {
        if (!job(c, i)) failed++;
      }
    });
  }
  for (auto& t : ts) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (failed) {
    std::fprintf(stderr, "%d of %d requests failed\n", failed.load(), n);
    std::exit(1);  // a rate of failures is not a throughput
  }
  return n / secs;
}

json Registration(int i, int port) {
  // Consecutive writes go to different nodes (10 instances per node), as
  // registrations from many agents would.
  const int node = i % 1000;
  return {{"Node", "node-" + std::to_string(node)},
          {"Address", "10." + std::to_string(node / 250) + "." + std::to_string(node % 250) + ".1"},
          {"Service",
           {{"Service", "svc-" + std::to_string(i % 100)},
            {"ID", "inst-" + std::to_string(i)},
            {"Port", port},
            {"Tags", {"bench"}},
            {"Meta", {{"version", "1"}}}}}};
}

bool Put(weft::http::Client& c, const std::string& path, const std::string& body,
         const char* method = "PUT") {
  auto r = c.Do(method, path, body);
  return r.ok() && r->status == 200;
}

std::vector<double> Percentiles(std::vector<double> v) {
  if (v.empty()) return {0, 0, 0};
  std::sort(v.begin(), v.end());
  auto at = [&](double p) { return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]; };
  return {at(0.50), at(0.99), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--http")
      a.http = next();
    else if (k == "--grpc")
      a.grpc = next();
    else if (k == "--raw-etcd")
      a.raw_etcd = next();
    else if (k == "--server-pid")
      a.server_pid = std::stoi(next());
    else if (k == "--instances")
      a.instances = std::stoi(next());
    else if (k == "--subscribers")
      a.subscribers = std::stoi(next());
    else if (k == "--burst")
      a.burst = std::stoi(next());
    else if (k == "--writers")
      a.writers = std::stoi(next());
    else if (k == "--token")
      g_token = next();
    else if (k == "--server-ca")
      a.server_ca = next();
    else if (k == "--skip-stream")
      a.skip_stream = true;
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  json out;
  out["instances"] = a.instances;
  out["writers"] = a.writers;

  if (!a.raw_etcd.empty()) {
    // Same count, same value size, same concurrency, straight into etcd.
    const std::string value(Registration(0, 1000).dump().size() * 10,
                            'x');  // a 10-instance node doc
    out["raw_etcd_writes_per_s"] =
        Parallel(a.raw_etcd, a.instances, a.writers, [&](auto& c, int i) {
          json put = {{"key", weft::Base64Encode("/bench/raw/" + std::to_string(i))},
                      {"value", weft::Base64Encode(value)}};
          return Put(c, "/v3/kv/put", put.dump(), "POST");
        });
  }
  out["api_writes_per_s"] = Parallel(a.http, a.instances, a.writers, [&](auto& c, int i) {
    return Put(c, "/v1/catalog/register", Registration(i, 20000 + i % 1000).dump());
  });
  if (a.server_pid) out["server_rss_mb_catalog"] = RssKb(a.server_pid) / 1024.0;
  if (a.skip_stream) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }

  // Sidecars: app-i calls svc-0 and svc-(1 + i % 99).
  Parallel(a.http, a.subscribers, a.writers, [&](auto& c, int i) {
    json body = {{"Node", "app-node-" + std::to_string(i / 10)},
                 {"Address", "10.200.0.1"},
                 {"Service",
                  {{"Service", "app-" + std::to_string(i) + "-sidecar"},
                   {"ID", "app-" + std::to_string(i) + "-sc"},
                   {"Kind", "connect-proxy"},
                   {"Port", 15001},
                   {"Proxy",
                    {{"DestinationServiceName", "app-" + std::to_string(i)},
                     {"LocalServicePort", 8080},
                     {"Upstreams",
                      {{{"DestinationName", "svc-0"}, {"LocalBindPort", 9000}},
                       {{"DestinationName", "svc-" + std::to_string(1 + i % 99)},
                        {"LocalBindPort", 9001}}}}}}}}};
    return Put(c, "/v1/catalog/register", body.dump());
  });

  // Subscribers record when their svc-0 endpoints first contain the marker.
  const int n = a.subscribers;
  std::atomic<int> marker{0};
  std::vector<std::atomic<int64_t>> seen_at(n);
  std::atomic<int> ready{0};
  std::vector<std::unique_ptr<weft::xds::StreamClient>> subs;
  std::shared_ptr<weft::xds::ServerTrust> trust;
  if (!a.server_ca.empty()) {
    std::string err;
    trust = std::make_shared<weft::xds::ServerTrust>(weft::xds::ReadServerCa(a.server_ca, &err));
    if (!err.empty()) {
      std::fprintf(stderr, "--server-ca: %s\n", err.c_str());
      return 2;
    }
  }
  const auto base = Clock::now();
  for (int i = 0; i < n; ++i) {
    seen_at[i] = 0;
    weft::xds::StreamClientOptions o;
    o.servers = {a.grpc};
    o.info.set_role("proxy");
    o.info.set_service("app-" + std::to_string(i));
    // A server without --dev: TLS verified with its CA file, and the token
    // (service:write on the proxy's service) on the stream.
    if (!a.server_ca.empty()) o.server_trust = trust;
    if (!g_token.empty()) o.metadata.emplace_back("x-consul-token", g_token);
    o.info.set_id("bench-" + std::to_string(i));
    o.separate_connection = true;
    auto first = std::make_shared<bool>(true);
    subs.push_back(std::make_unique<weft::xds::StreamClient>(
        o, [&, i, first](const weft::xds::ResourceMap& state, const weft::v1::StreamResponse&) {
          if (*first && !state.empty()) {
            *first = false;
            ready++;
          }
          const int m = marker.load();
          auto it = state.find("endpoints/svc-0");
          if (m && it != state.end()) {
            const std::string want = ":" + std::to_string(m);
            for (const auto& ep : it->second->endpoints().endpoints()) {
              const std::string& addr = ep.address();
              if (addr.size() >= want.size() &&
                  addr.compare(addr.size() - want.size(), want.size(), want) == 0) {
                int64_t expected = 0;
                seen_at[i].compare_exchange_strong(
                    expected,
                    std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - base)
                        .count());
                break;
              }
            }
          }
          return std::string();
        }));
    subs.back()->Start();
  }
  auto t_sub = Clock::now();
  while (ready.load() < n && Clock::now() - t_sub < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  out["subscribers_ready"] = ready.load();
  out["initial_sync_s"] = Ms(Clock::now() - t_sub) / 1000;
  if (a.server_pid) out["server_rss_mb_with_subscribers"] = RssKb(a.server_pid) / 1024.0;

  auto wait_all = [&](Clock::time_point deadline) {
    for (;;) {
      int done = 0;
      for (int i = 0; i < n; ++i) done += seen_at[i].load() != 0;
      if (done == n || Clock::now() > deadline) return done;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  };

  // Single changes.
  std::vector<double> lat;
  int missed = 0;
  weft::http::Client c(a.http, ClientOpts());
  for (int round = 0; round < 5; ++round) {
    for (auto& s : seen_at) s = 0;
    const int m = 40000 + round;
    marker = m;
    const auto t0 = Clock::now();
    const int64_t t0us = std::chrono::duration_cast<std::chrono::microseconds>(t0 - base).count();
    if (!Put(c, "/v1/catalog/register", Registration(0, m).dump()))
      std::fprintf(stderr, "change failed\n");
    int done = wait_all(t0 + std::chrono::seconds(30));
    missed += n - done;
    for (int i = 0; i < n; ++i)
      if (seen_at[i]) lat.push_back((seen_at[i] - t0us) / 1000.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto p = Percentiles(lat);
  out["single_change_ms"] = {{"p50", p[0]}, {"p99", p[1]}, {"max", p[2]}, {"missed", missed}};

  // Burst: many changes to svc-0 instances; the last one carries the marker.
  for (auto& s : seen_at) s = 0;
  const int final_marker = 50000;
  marker = final_marker;
  const auto tb = Clock::now();
  std::atomic<int> done_writes{0};
  Parallel(a.http, a.burst - 1, a.writers, [&](auto& cl, int i) {
    done_writes++;
    return Put(cl, "/v1/catalog/register", Registration(100 * (1 + i % 99), 30000 + i).dump());
  });
  const auto burst_written = Clock::now();
  const int64_t tb_us =
      std::chrono::duration_cast<std::chrono::microseconds>(burst_written - base).count();
  Put(c, "/v1/catalog/register", Registration(0, final_marker).dump());
  int done = wait_all(Clock::now() + std::chrono::seconds(60));
  std::vector<double> blat;
  for (int i = 0; i < n; ++i)
    if (seen_at[i]) blat.push_back((seen_at[i] - tb_us) / 1000.0);
  auto bp = Percentiles(blat);
  out["burst"] = {
      {"changes", a.burst},
      {"write_s", Ms(burst_written - tb) / 1000},
      {"converged_after_last_write_ms", {{"p50", bp[0]}, {"p99", bp[1]}, {"max", bp[2]}}},
      {"total_s", Ms(Clock::now() - tb) / 1000},
      {"missed", n - done}};
  if (a.server_pid) out["server_rss_mb_end"] = RssKb(a.server_pid) / 1024.0;
  uint64_t responses = 0;
  for (auto& s : subs) responses += s->responses();
  out["responses_received"] = responses;
  std::printf("%s\n", out.dump(2).c_str());
  std::fflush(stdout);
  std::_Exit(0);  // 1000 stream threads: skip the orderly teardown
}
