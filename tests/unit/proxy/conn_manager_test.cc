// The HTTP connection manager against a scripted codec and a scripted
// upstream: no sockets, no parser. What the filters decide, what reaches the
// upstream, what the client gets back, and what is counted.
#include "proxy/conn_manager.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "proxy/config.h"
#include "proxy/upstream/connect.h"

namespace weft::proxy {
namespace {

using namespace std::string_view_literals;

// One scripted request: its head (views into owned strings) and body pieces.
struct FakeRequest {
  std::string method = "GET", path = "/", authority = "svc";
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<std::string> body;  // empty: no body
  bool stream_body = false;       // length unknown (chunked)
};

struct SentResponse {
  int status = 0;
  std::map<std::string, std::string> fields;
  std::string body;
  bool ended = false;
  int empty_sends = 0;  // SendBody with no data: the head pushed out on its own
};

class FakeServer final : public http::ServerCodec, public http::ServerStream {
 public:
  explicit FakeServer(std::vector<FakeRequest> rq) : script_(std::move(rq)) {}

  asio::awaitable<http::Accepted> NextStream() override {
    http::Accepted a;
    if (drained_ || next_ >= script_.size()) co_return a;
    cur_ = &script_[next_++];
    head_ = http::RequestHeaders();
    head_.method = cur_->method;
    head_.path = cur_->path;
    head_.authority = cur_->authority;
    head_.scheme = "http";
    for (const auto& [n, v] : cur_->fields) {
      head_.fields.push_back({n, v});
      if (n == "expect") head_.expect_continue = true;
      if (n == "connection") head_.connection = v;
    }
    size_t len = 0;
    for (const auto& b : cur_->body) len += b.size();
    head_.body = cur_->body.empty()  ? http::BodyKind::kNone
                 : cur_->stream_body ? http::BodyKind::kStream
                                     : http::BodyKind::kLength;
    head_.content_length = len;
    piece_ = 0;
    body_read_ = false;
    responses.emplace_back();
    a.stream = this;
    co_return a;
  }
  void StreamDone(http::ServerStream*, bool reusable) override {
    if (!reusable) drained_ = true;
  }
  void Drain() override { drained_ = true; }
  bool open() const override { return !drained_; }

  const http::RequestHeaders& request() const override { return head_; }
  asio::awaitable<http::BodyEvent> ReadBody() override {
    http::BodyEvent ev;
    NextPiece(&ev);
    co_return ev;
  }
  // Every other piece is "buffered": both paths of the manager get used.
  bool TryReadBody(http::BodyEvent* ev) override {
    if (piece_ % 2 == 1) return false;
    NextPiece(ev);
    return true;
  }
  bool QueueHeaders(const http::ResponseHeaders& h) override {
    Record(h, false);
    return true;
  }
  asio::awaitable<bool> SendInterim(const http::ResponseHeaders& h) override {
    interims.push_back({h.status, body_read_});
    co_return true;
  }
  asio::awaitable<bool> SendHeaders(const http::ResponseHeaders& h, bool end) override {
    Record(h, end);
    co_return true;
  }
  asio::awaitable<bool> SendBody(std::span<const std::string_view> data, bool end,
                                 const http::HeaderList*) override {
    if (data.empty() && !end) ++responses.back().empty_sends;
    for (auto d : data) responses.back().body.append(d);
    responses.back().ended = end;
    co_return true;
  }
  void Reset(http::ResetReason) override { drained_ = true; }
  io::Stream* TakeTunnel(std::string_view*) override { return nullptr; }

  std::vector<SentResponse> responses;
  std::vector<std::pair<int, bool>> interims;  // status, whether the body was read before

 private:
  void NextPiece(http::BodyEvent* ev) {
    body_read_ = true;
    *ev = http::BodyEvent();
    if (piece_ < cur_->body.size()) {
      span_[0] = cur_->body[piece_++];
      ev->data = std::span<const std::string_view>(span_, 1);
    }
    ev->end = piece_ >= cur_->body.size();
    if (ev->end) ev->trailers = &no_trailers_;
  }
  void Record(const http::ResponseHeaders& h, bool end) {
    SentResponse& r = responses.back();
    r.status = h.status;
    for (const auto& f : h.fields) r.fields[std::string(f.name)] = std::string(f.value);
    r.ended = end;
  }
  std::vector<FakeRequest> script_;
  size_t next_ = 0;
  FakeRequest* cur_ = nullptr;
  http::RequestHeaders head_;
  size_t piece_ = 0;
  bool body_read_ = false;
  bool drained_ = false;
  std::string_view span_[1];
  http::HeaderList no_trailers_;
};

// What the scripted upstream does on one attempt.
struct Attempt {
  bool connect_fails = false;
  bool reset_before_response = false;
  bool hang = false;  // no response until the manager cancels (its deadline)
  int status = 200;
  std::string body = "ok";
};

struct SeenRequest {
  size_t endpoint = 0;
  std::string method, path, authority;
  std::map<std::string, std::string> fields;
  std::string body;
};

class FakeUpstream final : public upstream::HttpUpstream, public http::ClientStream {
 public:
  FakeUpstream(std::deque<Attempt>* script, std::vector<SeenRequest>* seen,
               std::vector<bool>* released)
      : script_(script), seen_(seen), released_(released) {}

  asio::awaitable<bool> Acquire(const std::shared_ptr<ClusterRuntime>& cr, size_t ep,
                                const http1::Limits&, Deadline*, const bool*, Lease* out,
                                std::string* err) override {
    attempt_ = script_->empty() ? Attempt{} : script_->front();
    if (!script_->empty()) script_->pop_front();
    seen_->emplace_back();
    seen_->back().endpoint = ep;
    if (attempt_.connect_fails) {
      *err = "upstream connect error: " + cr->cfg.endpoints[ep].address.text + ": refused";
      return upstream::Ready(false);
    }
    held_ = true;
    out->stream = this;
    out->endpoint = ep;
    out->reused = false;
    return upstream::Ready(true);
  }
  bool TakePooled(const std::shared_ptr<ClusterRuntime>&, size_t, const http1::Limits&,
                  Lease*) override {
    return false;
  }
  void Release(bool reusable) override {
    if (held_) released_->push_back(reusable);
    held_ = false;
  }
  void Cancel() override {
    if (hang_) hang_->cancel();
  }

  bool QueueHeaders(const http::RequestHeaders& h) override {
    Seen(h);
    return true;
  }
  asio::awaitable<bool> SendHeaders(const http::RequestHeaders& h, bool) override {
    Seen(h);
    co_return true;
  }
  void Seen(const http::RequestHeaders& h) {
    SeenRequest& s = seen_->back();
    s.method = h.method;
    s.path = h.path;
    s.authority = h.authority;
    for (const auto& f : h.fields) s.fields[std::string(f.name)] = std::string(f.value);
  }
  asio::awaitable<bool> SendBody(std::span<const std::string_view> data, bool,
                                 const http::HeaderList*) override {
    for (auto d : data) seen_->back().body.append(d);
    co_return true;
  }
  asio::awaitable<http::ResponseHeaders*> ReadHeaders(http::HeadError* err) override {
    if (attempt_.hang) {
      auto ex = co_await asio::this_coro::executor;
      asio::steady_timer t(ex, asio::steady_timer::time_point::max());
      hang_ = &t;
      co_await t.async_wait(kNoThrow);
      hang_ = nullptr;
      *err = {http::ResetReason::kRemote, 503, "connection reset", false};
      co_return nullptr;
    }
    if (attempt_.reset_before_response) {
      *err = {http::ResetReason::kRemote, 503, "connection closed", false};
      co_return nullptr;
    }
    resp_ = http::ResponseHeaders();
    resp_.status = attempt_.status;
    resp_.body = http::BodyKind::kLength;
    resp_.content_length = attempt_.body.size();
    co_return &resp_;
  }
  asio::awaitable<http::BodyEvent> ReadBody() override {
    http::BodyEvent ev;
    Body(&ev);
    co_return ev;
  }
  bool TryReadBody(http::BodyEvent* ev) override {
    if (attempt_.body.size() % 2) return false;  // odd sizes take the waiting path
    Body(ev);
    return true;
  }
  void Body(http::BodyEvent* ev) {
    *ev = http::BodyEvent();
    span_[0] = attempt_.body;
    ev->data = std::span<const std::string_view>(span_, 1);
    ev->end = true;
    ev->trailers = &no_trailers_;
  }
  io::Stream* TakeTunnel(std::string_view*) override { return nullptr; }
  bool reusable() const override { return true; }

 private:
  std::deque<Attempt>* script_;
  std::vector<SeenRequest>* seen_;
  std::vector<bool>* released_;
  Attempt attempt_;
  asio::steady_timer* hang_ = nullptr;
  bool held_ = false;
  http::ResponseHeaders resp_;
  std::string_view span_[1];
  http::HeaderList no_trailers_;
};

// A worker (not started: the test drives its loop) with one snapshot.
class ConnManagerTest : public ::testing::Test {
 protected:
  void Load(const std::string& yaml, std::function<void(ProxyConfig*)> edit = nullptr) {
    std::string err;
    auto parsed = ParseConfig(yaml, "test.yaml", &err);
    ASSERT_TRUE(parsed) << err;
    auto copy = std::make_shared<ProxyConfig>(*parsed);
    if (edit) edit(copy.get());
    cfg_ = copy;
    auto snap = std::make_shared<Snapshot>();
    snap->cfg = cfg_;
    for (const auto& l : cfg_->listeners) {
      snap->listener_stats.push_back(stats_.Listener(l.name));
      std::vector<PerWorker<RouteStats>*> rs;
      for (const auto& r : l.routes) rs.push_back(stats_.Route(l.name, r.name));
      snap->route_stats.push_back(std::move(rs));
      snap->access_logs.push_back(nullptr);
      snap->authz_stats.emplace_back();
    }
    for (const auto& c : cfg_->clusters) snap->cluster_stats.push_back(stats_.Cluster(c.name));
    snap->registry = &stats_;
    w_.Apply(snap, {});
    w_.io().poll();
    w_.io().restart();
    listener_ = std::make_shared<ListenerRuntime>(w_.io());
    listener_->name = cfg_->listeners[0].name;
    listener_->index = 0;
  }

  // Serves `requests` through one connection manager; returns the codec.
  std::unique_ptr<FakeServer> Serve(std::vector<FakeRequest> requests,
                                    std::deque<Attempt> attempts = {}) {
    attempts_ = std::move(attempts);
    auto server = std::make_unique<FakeServer>(std::move(requests));
    auto up = std::make_unique<FakeUpstream>(&attempts_, &seen_, &released_);
    auto cm = std::make_shared<HttpConnectionManager>(&w_, listener_, tcp::socket(w_.io()),
                                                      std::move(up));
    bool done = false;
    FakeServer* raw = server.get();
    asio::co_spawn(
        w_.io(),
        [cm, raw, &done]() -> asio::awaitable<void> {
          co_await cm->Serve(*raw);
          done = true;
        },
        asio::detached);
    w_.io().run_for(std::chrono::seconds(5));
    w_.io().restart();
    EXPECT_TRUE(done);
    return server;
  }

  const ClusterStats& Cluster(const std::string& name) { return stats_.Cluster(name)->at(0); }
  uint64_t Rejected(Reject r) {
    return stats_.Listener(cfg_->listeners[0].name)->at(0).rejected[static_cast<size_t>(r)].Get();
  }

  StatsRegistry stats_{1};
  ManualClock clock_;  // the worker's: deadlines pass when the test moves it
  Worker w_{0, clock_};
  std::shared_ptr<const ProxyConfig> cfg_;
  std::shared_ptr<ListenerRuntime> listener_;
  std::deque<Attempt> attempts_;
  std::vector<SeenRequest> seen_;
  std::vector<bool> released_;  // per exchange: whether the connection went back to the pool
};

constexpr const char* kTwoEndpoints = R"(
listeners:
  - name: public
    address: 127.0.0.1:0
    protocol: http
    limits: {max_request_body: 8}
    routes:
      - match: {prefix: /api}
        cluster: api
clusters:
  - name: api
    endpoints: [127.0.0.1:1001, 127.0.0.1:1002]
)";

TEST_F(ConnManagerTest, ForwardsWithTheMeshHeadersAndAnswersWithTheRequestId) {
  Load(kTwoEndpoints);
  FakeRequest rq;
  rq.path = "/api/items";
  rq.fields = {{"x-forwarded-proto", "https"}, {"accept", "*/*"}};
  auto server = Serve({rq});
  ASSERT_EQ(seen_.size(), 1u);
  const SeenRequest& s = seen_[0];
  EXPECT_EQ(s.path, "/api/items");
  EXPECT_EQ(s.authority, "svc");
  EXPECT_EQ(s.fields.at("x-forwarded-proto"), "http") << "a client's claim is replaced";
  EXPECT_EQ(s.fields.at("accept"), "*/*");
  ASSERT_EQ(s.fields.count("x-request-id"), 1u);
  EXPECT_EQ(s.fields.at("x-request-id").size(), 36u);
  ASSERT_EQ(server->responses.size(), 1u);
  EXPECT_EQ(server->responses[0].status, 200);
  EXPECT_EQ(server->responses[0].body, "ok");
  EXPECT_EQ(server->responses[0].fields.at("x-request-id"), s.fields.at("x-request-id"));
  EXPECT_EQ(released_, std::vector<bool>{true}) << "a clean exchange pools";
  EXPECT_EQ(Cluster("api").http.rq_class[1].Get(), 1u);
}

TEST_F(ConnManagerTest, AClientCannotStripTheFieldsTheProxyAdds) {
  Load(kTwoEndpoints);
  FakeRequest rq;
  rq.path = "/api";
  rq.fields = {{"connection", "keep-alive, x-forwarded-for, x-request-id, x-extra"},
               {"x-forwarded-for", "203.0.113.9"},
               {"x-extra", "hop"},
               {"accept", "*/*"}};
  auto server = Serve({rq});
  ASSERT_EQ(seen_.size(), 1u);
  const auto& f = seen_[0].fields;
  ASSERT_EQ(f.count("x-forwarded-for"), 1u) << "the proxy's own, not dropped by name";
  EXPECT_EQ(f.at("x-forwarded-for").find("203.0.113.9"), std::string::npos)
      << "the named one was the client's to drop";
  EXPECT_EQ(f.count("x-request-id"), 1u);
  EXPECT_EQ(f.count("x-extra"), 0u) << "named in Connection: hop-by-hop";
  EXPECT_EQ(f.count("accept"), 1u);
}

TEST_F(ConnManagerTest, ALocalReplyToHeadHasNoBody) {
  Load(kTwoEndpoints);
  FakeRequest head, get;
  head.method = "HEAD";
  head.path = "/nope";
  get.path = "/api";
  auto server = Serve({head, get});
  ASSERT_EQ(server->responses.size(), 2u);
  EXPECT_EQ(server->responses[0].status, 404);
  EXPECT_EQ(server->responses[0].body, "") << "a body would be read as the next response";
  EXPECT_TRUE(server->responses[0].ended);
  EXPECT_EQ(server->responses[0].fields.at("content-length"), "19");
  EXPECT_EQ(server->responses[1].status, 200);
}

TEST_F(ConnManagerTest, NoRouteIsALocalReplyAndTheConnectionStays) {
  Load(kTwoEndpoints);
  FakeRequest miss, hit;
  miss.path = "/nope";
  hit.path = "/api";
  auto server = Serve({miss, hit});
  ASSERT_EQ(server->responses.size(), 2u);
  EXPECT_EQ(server->responses[0].status, 404);
  EXPECT_EQ(server->responses[0].body, "no route for /nope\n");
  EXPECT_EQ(server->responses[0].fields.at("content-type"), "text/plain");
  EXPECT_EQ(server->responses[1].status, 200);
  EXPECT_EQ(seen_.size(), 1u) << "the upstream never saw the unrouted request";
  EXPECT_EQ(Rejected(Reject::kNoRoute), 1u);
}

TEST_F(ConnManagerTest, AFailedConnectIsRetriedOnTheOtherEndpoint) {
  Load(kTwoEndpoints);
  FakeRequest rq;
  rq.path = "/api";
  auto server = Serve({rq}, {Attempt{.connect_fails = true}, Attempt{.body = "odd"}});
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_NE(seen_[0].endpoint, seen_[1].endpoint);
  EXPECT_EQ(server->responses[0].status, 200);
  EXPECT_EQ(server->responses[0].body, "odd") << "the waiting read path";
  EXPECT_EQ(server->responses[0].empty_sends, 1)
      << "with no body byte at hand the head goes out before the wait";
  EXPECT_EQ(Cluster("api").rq_retry.Get(), 1u);
}

TEST_F(ConnManagerTest, ARequestWithABodyIsNotReplayedAfterAReset) {
  Load(kTwoEndpoints);
  FakeRequest rq;
  rq.method = "POST";
  rq.path = "/api";
  rq.body = {"abc"};
  auto server = Serve({rq}, {Attempt{.reset_before_response = true}, Attempt{}});
  EXPECT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].body, "abc");
  EXPECT_EQ(server->responses[0].status, 503);
  EXPECT_NE(server->responses[0].body.find("upstream reset before response"), std::string::npos);
  EXPECT_FALSE(server->open()) << "an upstream failure ends the connection";
  EXPECT_EQ(Cluster("api").rq_reset.Get(), 1u);
  EXPECT_EQ(Rejected(Reject::kBadRequest), 0u) << "an upstream failure is not the client's fault";
}

TEST_F(ConnManagerTest, AStreamedBodyOverTheLimitIs413) {
  Load(kTwoEndpoints);
  FakeRequest rq;
  rq.method = "POST";
  rq.path = "/api";
  rq.body = {"12345", "67890"};
  rq.stream_body = true;
  auto server = Serve({rq});
  EXPECT_EQ(server->responses[0].status, 413);
  EXPECT_EQ(seen_[0].body, "12345") << "what was within the limit had gone upstream";
  EXPECT_EQ(Rejected(Reject::kBodyTooLarge), 1u);
}

TEST_F(ConnManagerTest, AContinueGoesOutBeforeTheBodyIsRead) {
  Load(kTwoEndpoints);
  FakeRequest rq;
  rq.method = "PUT";
  rq.path = "/api";
  rq.fields = {{"expect", "100-continue"}};
  rq.body = {"x"};
  auto server = Serve({rq});
  ASSERT_EQ(server->interims.size(), 1u);
  EXPECT_EQ(server->interims[0], std::make_pair(100, false));
  EXPECT_EQ(seen_[0].fields.count("expect"), 0u) << "the proxy answered it itself";
  EXPECT_EQ(server->responses[0].status, 200);
}

TEST_F(ConnManagerTest, ATrafficSplitFollowsTheWeights) {
  Load(R"(
listeners:
  - name: public
    address: 127.0.0.1:0
    protocol: http
    routes:
      - match: {prefix: /}
        clusters: [{name: a, weight: 1}, {name: b, weight: 3}]
clusters:
  - name: a
    endpoints: [127.0.0.1:1001]
  - name: b
    endpoints: [127.0.0.1:1002]
)");
  std::vector<FakeRequest> many(400);
  auto server = Serve(many);
  const uint64_t to_b = Cluster("b").http.rq_class[1].Get();
  EXPECT_EQ(Cluster("a").http.rq_class[1].Get() + to_b, 400u);
  EXPECT_NEAR(static_cast<double>(to_b), 300.0, 45.0);
}

TEST_F(ConnManagerTest, AClusterWithoutEndpointsIs503WithoutAnAttempt) {
  Load(R"(
listeners:
  - name: public
    address: 127.0.0.1:0
    protocol: http
    routes:
      - match: {prefix: /}
        cluster: empty
clusters:
  - name: empty
    endpoints: [127.0.0.1:1001]
)",
       [](ProxyConfig* c) { c->clusters[0].endpoints.clear(); });  // as the stream sends it
  auto server = Serve({FakeRequest{}});
  EXPECT_EQ(server->responses[0].status, 503);
  EXPECT_EQ(server->responses[0].body, "no healthy upstream for cluster empty\n");
  EXPECT_TRUE(seen_.empty());
}

// Timeouts run on the worker's clock: the test moves it, no real waiting.
TEST_F(ConnManagerTest, AnUpstreamSlowerThanTheRouteTimeoutIs504) {
  Load(R"(
listeners:
  - name: public
    address: 127.0.0.1:0
    protocol: http
    routes:
      - match: {prefix: /}
        cluster: api
        timeout: 2s
clusters:
  - name: api
    endpoints: [127.0.0.1:1001]
)");
  Attempt slow;
  slow.hang = true;
  attempts_ = {slow};
  FakeServer server({FakeRequest{}});
  auto cm = std::make_shared<HttpConnectionManager>(
      &w_, listener_, tcp::socket(w_.io()),
      std::make_unique<FakeUpstream>(&attempts_, &seen_, &released_));
  bool done = false;
  asio::co_spawn(
      w_.io(),
      [cm, &server, &done]() -> asio::awaitable<void> {
        co_await cm->Serve(server);
        done = true;
      },
      asio::detached);
  const auto run = [&] {
    w_.CheckDeadlines();
    w_.io().poll();
    w_.io().restart();
  };
  run();
  ASSERT_EQ(seen_.size(), 1u) << "the request reached the upstream";
  clock_.Advance(1999);
  run();
  EXPECT_FALSE(done) << "still within the route's timeout";
  EXPECT_TRUE(server.responses[0].status == 0);
  clock_.Advance(1);
  run();
  EXPECT_TRUE(done);
  EXPECT_EQ(server.responses[0].status, 504);
  EXPECT_EQ(server.responses[0].body, "upstream request timeout after 2000 ms: 127.0.0.1:1001\n");
  EXPECT_EQ(Cluster("api").rq_timeout.Get(), 1u);
  ASSERT_EQ(released_.size(), 1u);
  EXPECT_FALSE(released_[0]) << "a timed-out connection is not pooled";
}

}  // namespace
}  // namespace weft::proxy
