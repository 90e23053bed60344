// An open-loop HTTP/1.1 load generator for latency at a fixed rate: request
// k is due at t0 + k/RATE, spread over CONNECTIONS keep-alive connections;
// its latency is measured from when it was due, not from when it could be
// sent, so a stall shows in the percentiles instead of hiding behind a
// slower send rate (coordinated omission). The first second is warm-up.
//
//   weft_rate_client HOST:PORT RATE SECONDS [CONNECTIONS] [PATH]
//
// Prints one JSON line: requests, errors, achieved_rps, p50_us, p90_us,
// p99_us, p999_us, max_us.
#include <algorithm>
#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

struct Shared {
  Clock::time_point t0, warm_until, end;
  double interval_ns = 0;
  size_t connections = 1;
  std::string request;
  std::vector<int64_t> latencies_ns;
  size_t errors = 0;
};

// The length of the body from the head (content-length only; the benchmark
// backends answer with one).
size_t ContentLength(std::string_view head) {
  for (size_t pos = 0; pos < head.size();) {
    size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) break;
    std::string_view line = head.substr(pos, eol - pos);
    if (line.size() > 15) {
      std::string name(line.substr(0, 15));
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "content-length:")
        return std::strtoul(std::string(line.substr(15)).c_str(), nullptr, 10);
    }
    pos = eol + 2;
  }
  return 0;
}

asio::awaitable<void> Connection(Shared& sh, tcp::endpoint ep, size_t index) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  auto [cec] = co_await s.async_connect(ep, kNoThrow);
  if (cec) {
    ++sh.errors;
    co_return;
  }
  s.set_option(tcp::no_delay(true));
  asio::steady_timer timer(ex);
  std::string buf;
  buf.reserve(8192);
  char chunk[16384];
  for (uint64_t k = index;; k += sh.connections) {
    const auto due = sh.t0 + std::chrono::nanoseconds(static_cast<int64_t>(k * sh.interval_ns));
    if (due >= sh.end) break;
    if (Clock::now() < due) {
      timer.expires_at(due);
      co_await timer.async_wait(kNoThrow);
    }
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(sh.request), kNoThrow);
    if (wec) {
      ++sh.errors;
      co_return;
    }
    // Response head, then the body.
    buf.clear();
    size_t head_end = std::string::npos;
    size_t need = 0;
    bool failed = false;
    for (;;) {
      if (head_end == std::string::npos) {
        head_end = buf.find("\r\n\r\n");
        if (head_end != std::string::npos)
          need = head_end + 4 + ContentLength(buf.substr(0, head_end + 2));
      }
      if (head_end != std::string::npos && buf.size() >= need) break;
      auto [rec, n] = co_await s.async_read_some(asio::buffer(chunk), kNoThrow);
      if (rec) {
        failed = true;
        break;
      }
      buf.append(chunk, n);
    }
    if (failed || buf.compare(0, 12, "HTTP/1.1 200") != 0) {
      ++sh.errors;
      if (failed) co_return;
      continue;
    }
    if (due >= sh.warm_until)
      sh.latencies_ns.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - due).count());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s HOST:PORT RATE SECONDS [CONNECTIONS] [PATH]\n", argv[0]);
    return 2;
  }
  std::string target = argv[1];
  const double rate = std::atof(argv[2]);
  const double seconds = std::atof(argv[3]);
  Shared sh;
  sh.connections = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 8;
  const std::string path = argc > 5 ? argv[5] : "/";
  const auto colon = target.rfind(':');
  tcp::endpoint ep(asio::ip::make_address(target.substr(0, colon)),
                   static_cast<uint16_t>(std::atoi(target.substr(colon + 1).c_str())));
  sh.request = "GET " + path + " HTTP/1.1\r\nhost: bench\r\nuser-agent: weft-rate-client\r\n\r\n";
  sh.interval_ns = 1e9 / rate;
  sh.latencies_ns.reserve(static_cast<size_t>(rate * seconds) + 16);
  asio::io_context io(1);
  sh.t0 = Clock::now() + std::chrono::milliseconds(200);  // connections open first
  sh.warm_until = sh.t0 + std::chrono::seconds(1);
  sh.end = sh.t0 + std::chrono::nanoseconds(static_cast<int64_t>((seconds + 1) * 1e9));
  for (size_t c = 0; c < sh.connections; ++c)
    asio::co_spawn(io, Connection(sh, ep, c), asio::detached);
  io.run();
  auto& l = sh.latencies_ns;
  std::sort(l.begin(), l.end());
  auto pct = [&](double p) -> double {
    if (l.empty()) return 0;
    size_t i = std::min(l.size() - 1, static_cast<size_t>(p * static_cast<double>(l.size())));
    return static_cast<double>(l[i]) / 1000.0;
  };
  std::printf(
      "{\"requests\": %zu, \"errors\": %zu, \"achieved_rps\": %.1f, \"p50_us\": %.1f, \"p90_us\": "
      "%.1f, "
      "\"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f}\n",
      l.size(), sh.errors, static_cast<double>(l.size()) / seconds, pct(0.50), pct(0.90), pct(0.99),
      pct(0.999), l.empty() ? 0.0 : static_cast<double>(l.back()) / 1000.0);
  return sh.errors ? 1 : 0;
}
