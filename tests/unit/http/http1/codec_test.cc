// The HTTP/1.1 codec: the encoders on byte strings, and both connection
// sides over a loopback socket pair driven by one event loop.
#include "http/http1/codec.h"

#include <gtest/gtest.h>

#include <asio.hpp>
#include <functional>
#include <string>
#include <vector>

#include "../loopback.h"
#include "io/asio.h"
#include "io/stream.h"

namespace weft::http1 {
namespace {

using namespace std::string_view_literals;
using http::BodyKind;

std::string Flatten(const std::vector<asio::const_buffer>& bufs) {
  std::string out;
  for (const auto& b : bufs) out.append(static_cast<const char*>(b.data()), b.size());
  return out;
}

TEST(Http1Encode, RequestHeadTakesHostFromAuthorityAndWritesItsOwnFraming) {
  http::RequestHeaders h;
  h.method = "POST";
  h.path = "/items?x=1";
  h.authority = "api.local:8080";
  h.body = BodyKind::kLength;
  h.content_length = 5;
  h.connection = "close, x-secret";
  h.fields = {{"Host", "ignored"},
              {"Connection", "close, x-secret"},
              {"x-secret", "hop"},
              {"Keep-Alive", "5"},
              {"Transfer-Encoding", "gzip"},
              {"Content-Length", "999"},
              {"TE", "trailers"},
              {"accept", "*/*"}};
  std::string out;
  EncodeRequestHead(h, &out);
  EXPECT_EQ(out,
            "POST /items?x=1 HTTP/1.1\r\nhost: api.local:8080\r\naccept: */*\r\n"
            "content-length: 5\r\n\r\n");
}

TEST(Http1Encode, RequestHeadStreamsUnknownLengthsChunkedAndKeepsUpgrades) {
  http::RequestHeaders h;
  h.method = "GET";
  h.path = "/ws";
  h.body = BodyKind::kStream;
  h.upgrade = "websocket";
  std::string out;
  EncodeRequestHead(h, &out);
  EXPECT_EQ(out,
            "GET /ws HTTP/1.1\r\ntransfer-encoding: chunked\r\n"
            "connection: upgrade\r\nupgrade: websocket\r\n\r\n");
}

// RFC 9113 3.1: HTTP/2 by upgrade is deprecated, and a 101 passed through
// would hand the client's HTTP/2 to the upstream. The request stays plain
// HTTP/1.1: no upgrade, no Upgrade or HTTP2-Settings field to forward.
TEST(Http1Decode, AnUpgradeToH2cIsNotOneAndLosesItsFields) {
  const std::string raw =
      "GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
      "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nX-Kept: 1\r\n\r\n";
  Limits limits;
  size_t scanned = 0;
  Head head;
  Error err;
  ASSERT_EQ(ParseRequest(raw.data(), raw.size(), limits, &scanned, &head, &err),
            ParseResult::kComplete);
  http::RequestHeaders req;
  ToRequestHeaders(&head, &req);
  EXPECT_TRUE(req.upgrade.empty());
  std::vector<std::string> names;
  for (const auto& f : req.fields) names.emplace_back(f.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Host", "Connection", "X-Kept"}));
  std::string out;
  EncodeRequestHead(req, &out);
  EXPECT_EQ(out.find("pgrade"), std::string::npos) << out;
  EXPECT_EQ(out.find("ettings"), std::string::npos) << out;

  // Other upgrades are still asked for.
  const std::string ws =
      "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
  scanned = 0;
  Head head2;
  ASSERT_EQ(ParseRequest(ws.data(), ws.size(), limits, &scanned, &head2, &err),
            ParseResult::kComplete);
  http::RequestHeaders req2;
  ToRequestHeaders(&head2, &req2);
  EXPECT_EQ(req2.upgrade, "websocket");
}

TEST(Http1Encode, ResponseFramingFollowsTheClientVersion) {
  http::ResponseHeaders h;
  h.status = 200;
  h.body = BodyKind::kStream;
  ResponseFraming f11 = FrameResponse(h, http::Version::kHttp11, false);
  EXPECT_TRUE(f11.chunked);
  EXPECT_FALSE(f11.close);
  ResponseFraming f10 = FrameResponse(h, http::Version::kHttp10, false);
  EXPECT_FALSE(f10.chunked);
  EXPECT_TRUE(f10.close) << "an HTTP/1.0 client learns the end of the body from the close";
  h.body = BodyKind::kLength;
  ResponseFraming keep10 = FrameResponse(h, http::Version::kHttp10, false);
  EXPECT_TRUE(keep10.keep_alive);
  EXPECT_TRUE(FrameResponse(h, http::Version::kHttp11, true).close);
}

TEST(Http1Encode, ResponseHeadDropsHopByHopAndKeepsContentLengthOfBodilessAnswers) {
  http::ResponseHeaders h;
  h.status = 304;
  h.reason = "Not Modified";
  h.body = BodyKind::kNone;
  h.fields = {{"content-length", "42"}, {"connection", "keep-alive"}, {"etag", "\"v1\""}};
  std::string out;
  EncodeResponseHead(h, FrameResponse(h, http::Version::kHttp11, false), &out);
  EXPECT_EQ(out, "HTTP/1.1 304 Not Modified\r\ncontent-length: 42\r\netag: \"v1\"\r\n\r\n");

  http::ResponseHeaders sw;
  sw.status = 101;
  sw.fields = {{"upgrade", "websocket"}, {"connection", "upgrade"}};
  out.clear();
  EncodeResponseHead(sw, ResponseFraming{}, &out);
  EXPECT_EQ(
      out, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n");
}

TEST(Http1Encode, ChunkedBodyCarriesSizesTheLastChunkAndTrailers) {
  std::vector<std::string_view> data = {"hello", "", "world!"};
  http::HeaderList trailers = {{"grpc-status", "0"}};
  std::vector<asio::const_buffer> gather;
  std::string meta;
  EncodeBody(data, true, true, &trailers, &gather, &meta);
  EXPECT_EQ(Flatten(gather), "5\r\nhello\r\n6\r\nworld!\r\n0\r\ngrpc-status: 0\r\n\r\n");
  gather.clear();
  meta.clear();
  EncodeBody(data, false, true, &trailers, &gather, &meta);
  EXPECT_EQ(Flatten(gather), "helloworld!") << "without chunking, trailers have no place";
}

// A connected pair of plain streams on loopback, and a loop to drive them.
class Pair : public testing::LoopbackPair {
 protected:
  // Runs `fn` as a coroutine to completion.
  void Run(std::function<asio::awaitable<void>()> fn) {
    bool done = false;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          co_await fn();
          done = true;
        },
        asio::detached);
    io_.run_for(std::chrono::seconds(5));
    io_.restart();
    ASSERT_TRUE(done) << "the exchange did not finish";
  }
  void Send(io::Stream& s, std::string bytes) { asio::write(s.socket(), asio::buffer(bytes)); }

  Limits limits_;
};

TEST_F(Pair, ServerHandsOutPipelinedRequestsInOrderWithTheirBodies) {
  Counter in, out;
  ServerConnection conn(*server_, limits_, {&in, &out}, nullptr);
  Send(*client_,
       "POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
       "GET /b HTTP/1.1\r\nhost: y\r\n\r\n");
  std::string first_body;
  std::string second_path, second_authority;
  Run([&]() -> asio::awaitable<void> {
    http::Accepted a = co_await conn.NextStream();
    EXPECT_EQ(a.stream->request().method, "POST");
    EXPECT_EQ(a.stream->request().body, BodyKind::kLength);
    http::BodyEvent ev = co_await a.stream->ReadBody();
    for (auto d : ev.data) first_body.append(d);
    EXPECT_TRUE(ev.end);
    EXPECT_EQ(a.stream->request().path, "/a") << "head views outlive the body read";
    http::ResponseHeaders h;
    h.status = 204;
    co_await a.stream->SendHeaders(h, true);
    conn.StreamDone(a.stream, true);
    http::Accepted b = co_await conn.NextStream();
    second_path = b.stream->request().path;
    second_authority = b.stream->request().authority;
    conn.StreamDone(b.stream, true);
  });
  EXPECT_EQ(first_body, "abc");
  EXPECT_EQ(second_path, "/b");
  EXPECT_EQ(second_authority, "y");
  EXPECT_EQ(ReadAvailable(*client_), "HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_GT(in.Get(), 60u);
}

TEST_F(Pair, ChunkedRequestBodyArrivesAsEventsWithTrailersAcrossReads) {
  ServerConnection conn(*server_, limits_, {}, nullptr);
  Send(*client_, "PUT /u HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n4\r\nwe");
  std::string body;
  std::string trailer;
  Run([&]() -> asio::awaitable<void> {
    http::Accepted a = co_await conn.NextStream();
    EXPECT_EQ(a.stream->request().body, BodyKind::kStream);
    for (int i = 0; i < 10; ++i) {
      http::BodyEvent ev = co_await a.stream->ReadBody();
      EXPECT_EQ(ev.kind, http::BodyEvent::kData);
      for (auto d : ev.data) body.append(d);
      if (ev.end) {
        for (const auto& t : *ev.trailers)
          trailer = std::string(t.name) + "=" + std::string(t.value);
        break;
      }
      if (i == 0) Send(*client_, "ft\r\n0\r\nx-sum: 9\r\n\r\n");
    }
    EXPECT_EQ(a.stream->request().method, "PUT");
  });
  EXPECT_EQ(body, "weft");
  EXPECT_EQ(trailer, "x-sum=9");
}

TEST_F(Pair, MalformedChunkedBodyIsAResetWithStatus400) {
  ServerConnection conn(*server_, limits_, {}, nullptr);
  Send(*client_, "POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n");
  http::BodyEvent ev;
  Run([&]() -> asio::awaitable<void> {
    http::Accepted a = co_await conn.NextStream();
    ev = co_await a.stream->ReadBody();
  });
  EXPECT_EQ(ev.kind, http::BodyEvent::kReset);
  EXPECT_EQ(ev.status, 400);
}

TEST_F(Pair, OversizedHeadIsRefusedWith431AndUnreadBodyClosesTheConnection) {
  limits_.max_header_bytes = 256;
  ServerConnection conn(*server_, limits_, {}, nullptr);
  Send(*client_, "GET / HTTP/1.1\r\nx-big: " + std::string(2000, 'a') + "\r\n\r\n");
  http::Accepted a;
  Run([&]() -> asio::awaitable<void> { a = co_await conn.NextStream(); });
  EXPECT_EQ(a.error.status, 431);
  EXPECT_FALSE(conn.open());

  ServerConnection conn2(*client_, limits_, {}, nullptr);  // the other end, fresh
  Send(*server_, "POST /p HTTP/1.1\r\nhost: h\r\ncontent-length: 10\r\n\r\n");
  Run([&]() -> asio::awaitable<void> {
    http::Accepted b = co_await conn2.NextStream();
    http::ResponseHeaders h;
    h.status = 403;
    co_await b.stream->SendHeaders(h, true);  // answered without reading the body
    conn2.StreamDone(b.stream, true);
  });
  EXPECT_FALSE(conn2.open()) << "an unread body would be taken for the next request";
  EXPECT_NE(ReadAvailable(*server_).find("connection: close"), std::string::npos);
}

TEST_F(Pair, HundredContinueOnlyWhenTheClientWaitsForIt) {
  ServerConnection conn(*server_, limits_, {}, nullptr);
  Send(*client_, "PUT /c HTTP/1.1\r\nhost: h\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n");
  http::ResponseHeaders cont;
  cont.status = 100;
  Run([&]() -> asio::awaitable<void> {
    http::Accepted a = co_await conn.NextStream();
    EXPECT_TRUE(co_await a.stream->SendInterim(cont));
  });
  EXPECT_EQ(ReadAvailable(*client_), "HTTP/1.1 100 Continue\r\n\r\n");

  ServerConnection conn2(*client_, limits_, {}, nullptr);
  Send(*server_,
       "PUT /c HTTP/1.1\r\nhost: h\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nok");
  Run([&]() -> asio::awaitable<void> {
    http::Accepted a = co_await conn2.NextStream();
    EXPECT_TRUE(co_await a.stream->SendInterim(cont));
  });
  EXPECT_EQ(ReadAvailable(*server_), "") << "the body is already here: no go-ahead needed";
}

TEST_F(Pair, ClientReadsInterimThenFinalAndPoolsOnlyCleanExchanges) {
  ClientConnection up;
  Counter sent, got;
  up.Bind(client_.get(), {&sent, &got}, limits_);
  http::RequestHeaders req;
  req.method = "GET";
  req.path = "/r";
  req.authority = "svc";
  Send(*server_,
       "HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n"
       "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody");
  std::vector<int> statuses;
  std::string body;
  Run([&]() -> asio::awaitable<void> {
    EXPECT_TRUE(co_await up.SendHeaders(req, true));
    http::HeadError err;
    for (;;) {
      const http::ResponseHeaders* h = co_await up.ReadHeaders(&err);
      EXPECT_NE(h, nullptr);
      if (!h) co_return;
      statuses.push_back(h->status);
      if (!h->interim()) break;
    }
    http::BodyEvent ev = co_await up.ReadBody();
    for (auto d : ev.data) body.append(d);
    EXPECT_TRUE(ev.end);
  });
  EXPECT_EQ(statuses, (std::vector<int>{103, 200}));
  EXPECT_EQ(body, "body");
  EXPECT_TRUE(up.reusable());
  EXPECT_EQ(ReadAvailable(*server_), "GET /r HTTP/1.1\r\nhost: svc\r\n\r\n");
  EXPECT_EQ(sent.Get(), 30u);

  // A response delimited by the close is never pooled.
  up.Bind(client_.get(), {}, limits_);
  Send(*server_, "HTTP/1.1 200 OK\r\n\r\nall of it");
  server_->ShutdownSend();
  body.clear();
  Run([&]() -> asio::awaitable<void> {
    co_await up.SendHeaders(req, true);
    http::HeadError err;
    const http::ResponseHeaders* h = co_await up.ReadHeaders(&err);
    EXPECT_EQ(h->body, BodyKind::kStream);
    for (;;) {
      http::BodyEvent ev = co_await up.ReadBody();
      for (auto d : ev.data) body.append(d);
      if (ev.end || ev.kind == http::BodyEvent::kReset) break;
    }
  });
  EXPECT_EQ(body, "all of it");
  EXPECT_FALSE(up.reusable());
}

TEST_F(Pair, ClientReportsWhetherAnyResponseByteArrivedBeforeAFailure) {
  ClientConnection up;
  up.Bind(client_.get(), {}, limits_);
  http::RequestHeaders req;
  req.method = "GET";
  req.path = "/";
  server_->ShutdownSend();
  http::HeadError err;
  Run([&]() -> asio::awaitable<void> {
    co_await up.SendHeaders(req, true);
    EXPECT_EQ(co_await up.ReadHeaders(&err), nullptr);
  });
  EXPECT_EQ(err.reason, http::ResetReason::kRemote);
  EXPECT_FALSE(err.bytes_received) << "nothing arrived: a retry is safe";
  EXPECT_EQ(err.detail, "connection closed");
}

}  // namespace
}  // namespace weft::http1
