#include "demo/demo_app.h"

#include <unistd.h>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/random.h"
#include "base/strings.h"
#include "base/time.h"
#include "http/server.h"
#include "io/asio.h"

namespace weft::demo {
namespace {

using asio::ip::tcp;
using nlohmann::json;

struct CallResult {
  int status = 0;  // 0: no answer
  std::string error;
  std::string body;
};

// One GET to HOST:PORT/PATH on a fresh connection (connection: close), read
// to the end within the timeout and the body limit.
asio::awaitable<CallResult> Call(const std::string& target, const DemoOptions& o) {
  CallResult out;
  const size_t slash = target.find('/');
  const std::string hostport = target.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : target.substr(slash);
  auto ep = io::ParseEndpoint(hostport);
  if (!ep) {
    out.error = "bad call target " + target;
    co_return out;
  }
  auto ex = co_await asio::this_coro::executor;
  // The socket and the timeout flag outlive this frame if the timer's
  // handler is already queued when the call ends.
  struct Conn {
    explicit Conn(const asio::any_io_executor& e) : s(e) {}
    tcp::socket s;
    bool timed_out = false;
  };
  auto conn = std::make_shared<Conn>(ex);
  tcp::socket& s = conn->s;
  asio::steady_timer deadline(ex);
  deadline.expires_after(std::chrono::milliseconds(o.call_timeout_ms));
  deadline.async_wait([conn](const asio::error_code& ec) {
    if (ec) return;
    conn->timed_out = true;
    asio::error_code ignored;
    conn->s.close(ignored);
  });
  auto [cec] = co_await s.async_connect(*ep, kNoThrow);
  if (cec) {
    out.error = conn->timed_out ? "timeout" : cec.message();
    deadline.cancel();
    co_return out;
  }
  const std::string req = "GET " + path + " HTTP/1.1\r\nhost: " + hostport +
                          "\r\nuser-agent: weft-demo-app\r\nconnection: close\r\n\r\n";
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(req), kNoThrow);
  std::string resp;
  char buf[8192];
  while (!wec) {
    auto [rec, n] = co_await s.async_read_some(asio::buffer(buf), kNoThrow);
    resp.append(buf, n);
    if (rec || resp.size() > o.max_call_body) break;
  }
  deadline.cancel();
  if (conn->timed_out) {
    out.error = "timeout";
    co_return out;
  }
  if (resp.size() > o.max_call_body) {
    out.error = "answer over " + std::to_string(o.max_call_body) + " bytes";
    co_return out;
  }
  // "HTTP/1.1 200 ..."
  if (resp.size() < 12 || resp.compare(0, 5, "HTTP/") != 0) {
    out.error = wec ? wec.message() : "no HTTP answer";
    co_return out;
  }
  out.status = std::atoi(resp.c_str() + 9);
  const size_t body_at = resp.find("\r\n\r\n");
  if (body_at != std::string::npos) out.body = resp.substr(body_at + 4);
  co_return out;
}

class App {
 public:
  explicit App(DemoOptions o)
      : opts_(std::move(o)), rng_(static_cast<uint64_t>(MonoNanos()) ^ getpid()) {}

  asio::awaitable<http::Response> Handle(http::Request& r) {
    if (r.path == "/healthz") co_return http::Response::Text(200, "ok");
    ++requests_;
    const int64_t wait =
        opts_.latency_ms +
        (opts_.jitter_ms > 0
             ? static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(opts_.jitter_ms)))
             : 0) +
        (opts_.tail_rate > 0 &&
                 static_cast<double>(rng_.Below(1000000)) < opts_.tail_rate * 1000000.0
             ? opts_.tail_ms
             : 0);
    if (wait > 0) {
      auto ex = co_await asio::this_coro::executor;
      asio::steady_timer t(ex, std::chrono::milliseconds(wait));
      co_await t.async_wait(kNoThrow);
    }
    json body = {{"service", opts_.name},
                 {"version", opts_.version},
                 {"method", r.method},
                 {"path", r.path}};
    // What the sidecar vouched for: the caller's identity (mTLS).
    if (auto xfcc = r.Header("x-forwarded-client-cert"); !xfcc.empty())
      body["caller"] = std::string(xfcc);
    int status = 200;
    if (opts_.error_rate > 0 &&
        static_cast<double>(rng_.Below(1000000)) < opts_.error_rate * 1000000.0) {
      status = opts_.error_status;
      body["error"] = "injected error (--error-rate)";
    }
    json calls = json::array();
    for (const auto& target : opts_.calls) {
      if (status != 200) break;
      CallResult c = co_await Call(target, opts_);
      json jc = {{"target", target}, {"status", c.status}};
      if (!c.error.empty()) jc["error"] = c.error;
      if (!c.body.empty()) {
        json answer = json::parse(c.body, nullptr, false);
        jc["answer"] = answer.is_discarded() ? json(c.body.substr(0, 200)) : answer;
      }
      calls.push_back(jc);
      if (c.status < 200 || c.status >= 300) status = 502;  // a dependency failed
    }
    if (!opts_.calls.empty()) body["calls"] = calls;
    http::Response resp = http::Response::Json(status, body.dump() + "\n");
    resp.headers.emplace_back("x-backend", opts_.name + "-" + opts_.version);
    co_return resp;
  }

  // The admin listener: GET /behaviour shows, PUT /behaviour (JSON: any of
  // latency, jitter, tail as durations, tailRate and errorRate 0..1,
  // errorStatus 500..599)
  // changes what the app does from the next request on. Both answer with
  // the behaviour and the requests served so far.
  asio::awaitable<http::Response> Admin(http::Request& r) {
    if (r.path != "/behaviour") co_return http::Response::Text(404, "use /behaviour\n");
    if (r.method == "PUT" || r.method == "POST") {
      json in = json::parse(r.body, nullptr, false);
      if (!in.is_object()) co_return http::Response::Text(400, "expected a JSON object\n");
      DemoOptions next = opts_;
      for (const auto& [key, v] : in.items()) {
        if (key == "latency" || key == "jitter" || key == "tail") {
          auto ms = v.is_string() ? ParseDurationMs(v.get<std::string>()) : std::nullopt;
          if (!ms || *ms < 0 || *ms > 600000)
            co_return http::Response::Text(400, key + ": a duration such as \"200ms\"\n");
          (key == "latency"  ? next.latency_ms
           : key == "jitter" ? next.jitter_ms
                             : next.tail_ms) = *ms;
        } else if (key == "tailRate") {
          if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1)
            co_return http::Response::Text(400, "tailRate: a number from 0 to 1\n");
          next.tail_rate = v.get<double>();
        } else if (key == "errorRate") {
          if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1)
            co_return http::Response::Text(400, "errorRate: a number from 0 to 1\n");
          next.error_rate = v.get<double>();
        } else if (key == "errorStatus") {
          if (!v.is_number_integer() || v.get<int>() < 500 || v.get<int>() > 599)
            co_return http::Response::Text(400, "errorStatus: 500 to 599\n");
          next.error_status = v.get<int>();
        } else {
          co_return http::Response::Text(400, "unknown field " + key + "\n");
        }
      }
      opts_ = std::move(next);
      LOG_INFO("behaviour now: latency {} ms, jitter {} ms, error rate {}, error status {}",
               opts_.latency_ms, opts_.jitter_ms, opts_.error_rate, opts_.error_status);
    } else if (r.method != "GET") {
      co_return http::Response::Text(405, "GET or PUT /behaviour\n");
    }
    co_return http::Response::Json(200, json{{"latency", std::to_string(opts_.latency_ms) + "ms"},
                                             {"jitter", std::to_string(opts_.jitter_ms) + "ms"},
                                             {"tail", std::to_string(opts_.tail_ms) + "ms"},
                                             {"tailRate", opts_.tail_rate},
                                             {"errorRate", opts_.error_rate},
                                             {"errorStatus", opts_.error_status},
                                             {"requests", requests_}}
                                                .dump() +
                                            "\n");
  }

 private:
  DemoOptions opts_;       // io thread; /behaviour changes it
  uint64_t requests_ = 0;  // answered (not /healthz): what a benchmark counts at the backend
  Rng rng_;
};

}  // namespace

int RunDemoApp(const DemoOptions& opts) {
  std::signal(SIGPIPE, SIG_IGN);
  asio::io_context io(1);
  App app(opts);
  http::ServerOptions so;
  so.name = "demo-app " + opts.name;
  http::Server server(
      io, [&app](http::Request& r) { return app.Handle(r); }, so);
  if (Status s = server.Listen(opts.listen); !s.ok()) {
    std::fprintf(stderr, "weft demo-app: %s\n", s.message().c_str());
    return 1;
  }
  std::unique_ptr<http::Server> admin;
  if (!opts.admin.empty()) {
    http::ServerOptions ao;
    ao.name = "demo-app admin";
    admin = std::make_unique<http::Server>(
        io, [&app](http::Request& r) { return app.Admin(r); }, ao);
    if (Status s = admin->Listen(opts.admin); !s.ok()) {
      std::fprintf(stderr, "weft demo-app: --admin: %s\n", s.message().c_str());
      return 1;
    }
  }
  std::printf("weft demo-app listening http=%s name=%s version=%s%s%s\n", server.bound().c_str(),
              opts.name.c_str(), opts.version.c_str(), admin ? " admin=" : "",
              admin ? admin->bound().c_str() : "");
  std::fflush(stdout);
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const asio::error_code& ec, int) {
    if (ec) return;
    server.Close();
    if (admin) admin->Close();
    io.stop();
  });
  io.run();
  return 0;
}

}  // namespace weft::demo
