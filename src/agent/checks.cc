#include "agent/checks.h"

#include <grpcpp/grpcpp.h>

#include <asio/experimental/as_tuple.hpp>
#include <chrono>

#include "base/log.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "http/server.h"
#include "io/asio.h"

namespace weft::agent {
namespace {

using tcp = asio::ip::tcp;
using Outcome = std::pair<std::string, std::string>;

bool SameDefinition(const CheckDefinition& a, const CheckDefinition& b) {
  return a.http == b.http && a.method == b.method && a.tcp == b.tcp && a.grpc == b.grpc &&
         a.interval_ms == b.interval_ms && a.timeout_ms == b.timeout_ms &&
         a.success_before_passing == b.success_before_passing &&
         a.failures_before_critical == b.failures_before_critical;
}

// Closes `s` if the deadline passes first. The timer's handler may already
// be queued when the probe ends and this goes (cancel() cannot recall it):
// it holds only `live`, and touches the socket while the probe is there.
struct Deadline {
  Deadline(asio::io_context& io, tcp::socket& s, int64_t ms)
      : timer(io), live(std::make_shared<State>(State{&s, false})) {
    timer.expires_after(std::chrono::milliseconds(ms));
    timer.async_wait([live = live](const asio::error_code& ec) {
      if (ec || !live->socket) return;
      live->fired = true;
      asio::error_code ignored;
      live->socket->close(ignored);
    });
  }
  ~Deadline() {
    live->socket = nullptr;
    try {
      timer.cancel();
    } catch (...) {  // NOLINT(bugprone-empty-catch): nothing to do while tearing down
    }
  }
  bool fired() const { return live->fired; }
  struct State {
    tcp::socket* socket;
    bool fired;
  };
  asio::steady_timer timer;
  std::shared_ptr<State> live;
};

}  // namespace

CheckRunner::CheckRunner(asio::io_context& io, Report report)
    : io_(io), report_(std::move(report)) {}

CheckRunner::~CheckRunner() {
  for (auto& [id, r] : running_) *r.alive = false;
  blocking_.join();
}

void CheckRunner::Sync(const std::map<std::string, CheckDefinition>& defs) {
  for (auto it = running_.begin(); it != running_.end();) {
    auto d = defs.find(it->first);
    if (d == defs.end() || !SameDefinition(d->second, it->second.def)) {
      *it->second.alive = false;
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [id, def] : defs) {
    if (running_.count(id) || !def.ttl.empty()) continue;  // TTL checks are set by the service
    auto alive = std::make_shared<bool>(true);
    running_[id] = Running{def, alive};
    asio::co_spawn(io_, Loop(def, alive), asio::detached);
  }
}

asio::awaitable<void> CheckRunner::Loop(CheckDefinition def, std::shared_ptr<bool> alive) {
  std::string status;  // as last reported
  uint32_t successes = 0, failures = 0;
  asio::steady_timer t(io_);
  while (*alive) {
    Outcome o = co_await Probe(def);
    if (!*alive) co_return;
    if (o.first == "passing") {
      ++successes;
      failures = 0;
      if (successes >= std::max<uint32_t>(1, def.success_before_passing)) status = "passing";
    } else {
      ++failures;
      successes = 0;
      if (failures >= std::max<uint32_t>(1, def.failures_before_critical)) status = o.first;
    }
    if (!status.empty()) report_(def.id, status, o.second);
    t.expires_after(std::chrono::milliseconds(def.interval_ms));
    co_await t.async_wait(kNoThrow);
  }
}

asio::awaitable<Outcome> CheckRunner::Probe(const CheckDefinition& def) {
  if (!def.tcp.empty()) co_return co_await ProbeTcp(def);
  if (!def.http.empty()) co_return co_await ProbeHttp(def);
  co_return co_await ProbeGrpc(def);
}

asio::awaitable<Outcome> CheckRunner::ProbeTcp(const CheckDefinition& def) {
  auto ep = io::ParseEndpoint(def.tcp);
  if (!ep) co_return Outcome{"critical", "TCP " + def.tcp + ": not an address (HOST:PORT)"};
  tcp::socket s(io_);
  Deadline d(io_, s, def.timeout_ms);
  auto [ec] = co_await s.async_connect(*ep, kNoThrow);
  if (ec)
    co_return Outcome{"critical",
                      "TCP connect " + def.tcp + ": " + (d.fired() ? "timeout" : ec.message())};
  co_return Outcome{"passing", "TCP connect " + def.tcp + ": Success"};
}

asio::awaitable<Outcome> CheckRunner::ProbeHttp(const CheckDefinition& def) {
  // http://HOST:PORT/PATH
  std::string_view rest = std::string_view(def.http).substr(7);
  const size_t slash = rest.find('/');
  const std::string hostport(rest.substr(0, slash));
  const std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  auto ep =
      io::ParseEndpoint(hostport.find(':') == std::string::npos ? hostport + ":80" : hostport);
  if (!ep)
    co_return Outcome{"critical",
                      "HTTP " + def.http + ": the host must be an IP address or localhost"};
  tcp::socket s(io_);
  Deadline d(io_, s, def.timeout_ms);
  auto [ec] = co_await s.async_connect(*ep, kNoThrow);
  if (ec)
    co_return Outcome{"critical", "HTTP " + def.method + " " + def.http + ": " +
                                      (d.fired() ? "timeout" : ec.message())};
  const std::string req =
      def.method + " " + path + " HTTP/1.1\r\nHost: " + hostport +
      "\r\nUser-Agent: weft-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(req), kNoThrow);
  if (wec)
    co_return Outcome{"critical",
                      "HTTP " + def.http + ": " + (d.fired() ? "timeout" : wec.message())};
  std::string head;
  char buf[1024];
  while (head.find("\r\n") == std::string::npos && head.size() < 4096) {
    auto [rec, n] = co_await s.async_read_some(asio::buffer(buf), kNoThrow);
    if (rec) {
      if (head.empty())
        co_return Outcome{"critical",
                          "HTTP " + def.http + ": " + (d.fired() ? "timeout" : rec.message())};
      break;
    }
    head.append(buf, n);
  }
  // "HTTP/1.1 200 OK"
  const std::string line = head.substr(0, head.find("\r\n"));
  int code = 0;
  if (line.size() >= 12 && line.rfind("HTTP/1.", 0) == 0) code = std::atoi(line.c_str() + 9);
  const std::string out =
      "HTTP " + def.method + " " + def.http + ": " + (code ? line.substr(9) : "bad response");
  if (code >= 200 && code < 400) co_return Outcome{"passing", out};
  if (code == 429) co_return Outcome{"warning", out};
  co_return Outcome{"critical", out};
}

asio::awaitable<Outcome> CheckRunner::ProbeGrpc(const CheckDefinition& def) {
  // HOST:PORT[/SERVICE], called on a pool thread (the client blocks).
  const size_t slash = def.grpc.find('/');
  const std::string target = def.grpc.substr(0, slash);
  const std::string service = slash == std::string::npos ? "" : def.grpc.substr(slash + 1);
  const int64_t timeout = def.timeout_ms;
  auto call = [target, service, timeout]() -> asio::awaitable<Outcome> {
    auto stub = grpc::health::v1::Health::NewStub(
        grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = stub->Check(&ctx, req, &resp);
    const std::string what =
        "gRPC health " + target + (service.empty() ? "" : "/" + service) + ": ";
    if (!s.ok()) co_return Outcome{"critical", what + s.error_message()};
    if (resp.status() == grpc::health::v1::HealthCheckResponse::SERVING)
      co_return Outcome{"passing", what + "SERVING"};
    co_return Outcome{"critical", what + grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                                             resp.status())};
  };
  co_return co_await asio::co_spawn(blocking_, call, asio::use_awaitable);
}

}  // namespace weft::agent
