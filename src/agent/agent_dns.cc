// The agent's DNS server: UDP and TCP on one port, answered from the cache
// (agent/dns_resolver.h), and its metrics.
#include <array>
#include <chrono>
#include <vector>

#include "agent/agent_internal.h"
#include "base/log.h"
#include "base/prometheus.h"
#include "io/asio.h"

namespace weft::agent {

Status Agent::StartDns(std::string* bound) {
  auto ep = io::ParseEndpoint(opts_.dns_addr);
  if (!ep)
    return {StatusCode::kInvalidArgument, "--dns \"" + opts_.dns_addr + "\": expected HOST:PORT"};
  // UDP and TCP on the same port. With port 0 the kernel picks a UDP port
  // whose TCP twin may be taken: try again with another.
  asio::error_code ec;
  for (int attempt = 0; attempt < (ep->port() == 0 ? 20 : 1); ++attempt) {
    ec.clear();
    udp_.emplace(io_);
    udp_->open(ep->protocol().family() == AF_INET ? udp::v4() : udp::v6(), ec);
    if (!ec) udp_->bind(udp::endpoint(ep->address(), ep->port()), ec);
    if (ec) return {StatusCode::kUnavailable, "dns " + opts_.dns_addr + " (udp): " + ec.message()};
    const uint16_t port = udp_->local_endpoint().port();
    dns_tcp_.emplace(io_);
    tcp::endpoint tep(ep->address(), port);
    dns_tcp_->open(tep.protocol(), ec);
    if (!ec) dns_tcp_->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) dns_tcp_->bind(tep, ec);
    if (!ec) dns_tcp_->listen(128, ec);
    if (!ec) {
      *bound = io::FormatEndpoint(tep);
      asio::co_spawn(io_, ServeUdp(), asio::detached);
      asio::co_spawn(io_, AcceptTcp(), asio::detached);
      return {};
    }
    asio::error_code ignored;
    udp_->close(ignored);
    dns_tcp_->close(ignored);
  }
  return {StatusCode::kUnavailable, "dns " + opts_.dns_addr + " (tcp): " + ec.message()};
}

asio::awaitable<void> Agent::ServeUdp() {
  std::vector<uint8_t> buf(65536);
  dns_opts_.domain = opts_.domain;
  dns_opts_.ttl_s = opts_.dns_ttl_s;
  for (;;) {
    udp::endpoint from;
    auto [ec, n] = co_await udp_->async_receive_from(asio::buffer(buf), from, kNoThrow);
    if (ec) {
      if (!udp_->is_open()) co_return;
      continue;
    }
    std::string out = Resolve(buf.data(), n, false, api_->catalog(), dns_opts_, rng_,
                              &dns_counters_, &dns_cache_);
    if (out.empty()) continue;
    auto [sec, sent] = co_await udp_->async_send_to(asio::buffer(out), from, kNoThrow);
    (void)sec;
    (void)sent;
  }
}

asio::awaitable<void> Agent::AcceptTcp() {
  for (;;) {
    auto [ec, sock] = co_await dns_tcp_->async_accept(kNoThrow);
    if (!dns_tcp_->is_open()) co_return;
    if (ec) continue;
    if (dns_tcp_active_ >= opts_.max_dns_tcp_connections) {
      ++dns_tcp_refused_;
      LOG_WARN("dns: tcp connection refused: {} open (max_dns_tcp_connections)", dns_tcp_active_);
      continue;  // the socket closes as it goes out of scope
    }
    asio::co_spawn(io_, ServeTcp(std::move(sock)), asio::detached);
  }
}

asio::awaitable<void> Agent::ServeTcp(tcp::socket s) {
  ++dns_tcp_active_;
  auto timer = std::make_shared<asio::steady_timer>(io_);
  // The socket, while this coroutine holds it: a timer handler already
  // queued when the connection ends (cancel() cannot recall it) must not
  // touch it.
  auto live = std::make_shared<tcp::socket*>(&s);
  struct Gone {
    std::shared_ptr<tcp::socket*> live;
    ~Gone() { *live = nullptr; }
  } gone{live};
  std::vector<uint8_t> buf;
  for (;;) {
    timer->expires_after(std::chrono::seconds(10));
    timer->async_wait([live, t = timer](const asio::error_code& ec) {
      if (!ec && *live) {
        asio::error_code ignored;
        (*live)->close(ignored);
      }
    });
    uint8_t len_bytes[2];
    auto [ec, n] = co_await asio::async_read(s, asio::buffer(len_bytes), kNoThrow);
    if (ec) break;
    const size_t len = (len_bytes[0] << 8) | len_bytes[1];
    buf.resize(len);
    auto [ec2, n2] = co_await asio::async_read(s, asio::buffer(buf), kNoThrow);
    if (ec2) break;
    timer->cancel();
    std::string out = Resolve(buf.data(), len, true, api_->catalog(), dns_opts_, rng_,
                              &dns_counters_, &dns_cache_);
    if (out.empty()) break;
    uint8_t prefix[2] = {static_cast<uint8_t>(out.size() >> 8),
                         static_cast<uint8_t>(out.size() & 0xff)};
    std::array<asio::const_buffer, 2> bufs{asio::buffer(prefix), asio::buffer(out)};
    auto [ec3, n3] = co_await asio::async_write(s, bufs, kNoThrow);
    if (ec3) break;
  }
  timer->cancel();
  --dns_tcp_active_;
}

void Agent::DnsMetrics(prom::Writer& w) const {
  const char* help = "DNS queries by outcome.";
  auto line = [&](const char* outcome, uint64_t v) {
    w.Counter("weft_agent_dns_queries_total", help, {{"outcome", outcome}}, v);
  };
  line("answered", dns_counters_.answered);
  line("nxdomain", dns_counters_.nxdomain);
  line("refused", dns_counters_.refused);
  line("formerr", dns_counters_.formerr);
  line("notimp", dns_counters_.notimp);
  line("dropped", dns_counters_.dropped);
  const char* cache = "Service answers served from encoded records (hit) or built (miss).";
  w.Counter("weft_agent_dns_cache_total", cache, {{"result", "hit"}}, dns_cache_.hits);
  w.Counter("weft_agent_dns_cache_total", cache, {{"result", "miss"}}, dns_cache_.misses);
  w.Counter("weft_agent_dns_truncated_total",
            "UDP answers truncated (the client retries over TCP).", {}, dns_counters_.truncated);
  w.Counter("weft_agent_dns_tcp_refused_total", "DNS TCP connections refused over the limit.", {},
            dns_tcp_refused_);
  w.Gauge("weft_agent_connected", "1 while the config stream to a server is up.", {},
          stream_ && stream_->connected() ? 1 : 0);
}

}  // namespace weft::agent
