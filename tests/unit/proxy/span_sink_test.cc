// The span sink against a real HTTP collector on loopback (http::Server on
// a thread of its own): batches arrive whole, a full queue drops and counts,
// and a collector that is down costs the caller nothing. (The protobuf
// bytes themselves are checked in tests/unit/xds/otlp_wire_test.cc; spans
// are counted here from OTLP/JSON.)
#include "proxy/span_sink.h"

#include <gtest/gtest.h>

#include <asio.hpp>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/time.h"
#include "http/server.h"

namespace weft::proxy {
namespace {

// Spans in an OTLP/JSON request; protobuf bodies are counted as -1000
// (the tests that count ask for JSON).
int CountSpans(const std::string& body, std::string_view type) {
  if (type != "application/json") return body.empty() ? -1 : -1000;
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) return -1;
  int n = 0;
  for (const auto& rs : j["resourceSpans"])
    for (const auto& ss : rs["scopeSpans"]) n += static_cast<int>(ss["spans"].size());
  return n;
}

class Collector {
 public:
  explicit Collector(int status = 200) : status_(status) {
    server_ = std::make_unique<http::Server>(
        io_, [this](http::Request& r) -> asio::awaitable<http::Response> {
          std::lock_guard lock(mu_);
          types_.emplace_back(r.Header("content-type"));
          spans_ += CountSpans(r.body, r.Header("content-type"));
          ++requests_;
          co_return http::Response::Text(status_, "");
        });
    EXPECT_TRUE(server_->Listen("127.0.0.1:0").ok());
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Collector() {
    asio::post(io_, [this] { server_->Close(); });
    io_.stop();
    thread_.join();
  }
  std::string addr() const { return server_->bound(); }
  int spans() {
    std::lock_guard lock(mu_);
    return spans_;
  }
  int requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<std::string> types() {
    std::lock_guard lock(mu_);
    return types_;
  }

 private:
  asio::io_context io_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
  std::mutex mu_;
  int spans_ = 0, requests_ = 0;
  std::vector<std::string> types_;
  const int status_;
};

std::vector<otlp::Span> Spans(int n) {
  std::vector<otlp::Span> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    out[static_cast<size_t>(i)].trace_id[15] = static_cast<uint8_t>(i + 1);
    out[static_cast<size_t>(i)].span_id[7] = static_cast<uint8_t>(i + 1);
    out[static_cast<size_t>(i)].name = "span";
  }
  return out;
}

bool WaitFor(const std::function<bool()>& f, int ms = 5000) {
  for (int i = 0; i < ms / 10; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f();
}

TEST(SpanSink, BatchesReachTheCollector) {
  Collector c;
  SpanSink sink({.host_port = c.addr(), .json = true, .max_batch = 4, .flush_ms = 50},
                {"reviews", {}, "0.1.0"});
  auto batch = Spans(10);
  sink.Submit(&batch);
  EXPECT_TRUE(batch.empty());
  // (The collector counts before it answers; the sink, once answered.)
  ASSERT_TRUE(WaitFor([&] { return c.spans() == 10 && sink.exported() == 10; })) << c.spans();
  EXPECT_GE(c.requests(), 3) << "batches of at most 4";
  for (const auto& t : c.types()) EXPECT_EQ(t, "application/json");
  EXPECT_EQ(sink.dropped(), 0u);
}

TEST(SpanSink, ProtobufByDefault) {
  Collector c;
  SpanSink sink({.host_port = c.addr(), .flush_ms = 20}, {"reviews", {}, ""});
  auto batch = Spans(2);
  sink.Submit(&batch);
  ASSERT_TRUE(WaitFor([&] { return sink.exported() == 2; }));
  EXPECT_EQ(c.types().at(0), "application/x-protobuf");
  EXPECT_EQ(c.spans(), -1000) << "one non-empty protobuf body";
}

TEST(SpanSink, AFullQueueDropsAndCounts) {
  Collector c;
  // A long flush interval and a large batch: nothing leaves before the
  // second submit.
  SpanSink sink({.host_port = c.addr(), .max_queue = 5, .max_batch = 100, .flush_ms = 60000},
                {"a", {}, ""});
  auto batch = Spans(3);
  sink.Submit(&batch);
  batch = Spans(4);
  sink.Submit(&batch);
  EXPECT_EQ(sink.dropped(), 2u);
}

TEST(SpanSink, ACollectorThatIsDownCostsTheCallerNothing) {
  // A port nothing listens on (bound, then closed).
  std::string addr;
  {
    Collector gone;
    addr = gone.addr();
  }
  SpanSink sink({.host_port = addr, .max_batch = 2, .flush_ms = 20, .timeout_ms = 200},
                {"a", {}, ""});
  const int64_t t0 = MonoNanos();
  for (int i = 0; i < 50; ++i) {
    auto batch = Spans(2);
    sink.Submit(&batch);
  }
  EXPECT_LT(MonoNanos() - t0, 50'000'000) << "submitting never waits for the network";
  ASSERT_TRUE(WaitFor([&] { return sink.failed() > 0; }));
  EXPECT_EQ(sink.exported(), 0u);
}

TEST(SpanSink, ACollectorThatRefusesCountsAsFailed) {
  Collector c(503);
  SpanSink sink({.host_port = c.addr(), .flush_ms = 20}, {"a", {}, ""});
  auto batch = Spans(3);
  sink.Submit(&batch);
  ASSERT_TRUE(WaitFor([&] { return sink.failed() == 3; })) << sink.failed();
  EXPECT_EQ(sink.exported(), 0u);
}

}  // namespace
}  // namespace weft::proxy
