#include "http/http1/parser.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace weft::http1 {
namespace {

// Owns the input: the parsed views point into it.
struct Parsed {
  std::shared_ptr<std::string> input;
  ParseResult result;
  Error err;
  Head head;
};

Parsed Req(const std::string& s, Limits limits = {}) {
  Parsed p;
  p.input = std::make_shared<std::string>(s);
  size_t scanned = 0;
  p.result = ParseRequest(p.input->data(), p.input->size(), limits, &scanned, &p.head, &p.err);
  return p;
}

Parsed Resp(const std::string& s, std::string_view method = "GET") {
  Parsed p;
  p.input = std::make_shared<std::string>(s);
  size_t scanned = 0;
  Limits limits;
  p.result =
      ParseResponse(p.input->data(), p.input->size(), limits, &scanned, method, &p.head, &p.err);
  return p;
}

void ExpectRejected(const std::string& s, int status) {
  Parsed p = Req(s);
  EXPECT_EQ(p.result, ParseResult::kError) << s;
  EXPECT_EQ(p.err.status, status) << s << " reason: " << p.err.reason;
}

TEST(Http1Request, SimpleGet) {
  Parsed p = Req("GET /a/b?c=d HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_EQ(p.head.method, "GET");
  EXPECT_EQ(p.head.target, "/a/b?c=d");
  EXPECT_EQ(p.head.version_minor, 1);
  EXPECT_EQ(p.head.host, "x");
  EXPECT_EQ(p.head.x_request_id, "r1");
  EXPECT_EQ(p.head.framing, Framing::kNone);
  EXPECT_TRUE(p.head.KeepAlive());
  ASSERT_EQ(p.head.headers.size(), 2u);
  EXPECT_EQ(p.head.headers[1].name, "X-Request-Id");
}

TEST(Http1Request, ViewsPointIntoTheInput) {
  std::string s = "GET /zero-copy HTTP/1.1\r\nHost: h\r\n\r\n";
  Parsed p = Req(s);
  ASSERT_EQ(p.result, ParseResult::kComplete);
  // Views are into p's copy of the string: check offsets, not addresses.
  EXPECT_EQ(p.head.head_bytes, s.size());
}

TEST(Http1Request, IncompleteUntilEmptyLine) {
  std::string full = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  Limits limits;
  Head head;
  Error err;
  size_t scanned = 0;
  size_t head_len = full.find("\r\n\r\n") + 4;
  for (size_t n = 1; n < head_len; ++n) {
    ASSERT_EQ(ParseRequest(full.data(), n, limits, &scanned, &head, &err), ParseResult::kIncomplete)
        << n;
  }
  ASSERT_EQ(ParseRequest(full.data(), full.size(), limits, &scanned, &head, &err),
            ParseResult::kComplete);
  EXPECT_EQ(head.head_bytes, head_len);
  EXPECT_EQ(head.framing, Framing::kContentLength);
  EXPECT_EQ(head.content_length, 5u);
}

TEST(Http1Request, OwsIsTrimmedFromValues) {
  Parsed p = Req("GET / HTTP/1.1\r\nHost:   spaced  \t\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_EQ(p.head.host, "spaced");
}

TEST(Http1Request, Http10KeepAliveRules) {
  Parsed p = Req("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_FALSE(p.head.KeepAlive());
  p = Req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_TRUE(p.head.KeepAlive());
  p = Req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_FALSE(p.head.KeepAlive());
}

TEST(Http1Request, ChunkedAndExpectAndUpgrade) {
  Parsed p = Req(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_EQ(p.head.framing, Framing::kChunked);
  EXPECT_TRUE(p.head.expect_continue);
  p =
      Req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: "
          "websocket\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_TRUE(p.head.conn_upgrade);
  EXPECT_EQ(p.head.upgrade, "websocket");
}

// The request-smuggling and malformed-message catalogue: each is refused.
TEST(Http1Request, RejectsContentLengthWithTransferEncoding) {
  ExpectRejected(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
  ExpectRejected(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
}

TEST(Http1Request, RejectsBadContentLength) {
  for (const char* v :
       {"+5", "0x10", "1_0", "5, 6", "-1", "5 5", "", "99999999999999999999", "5,5"}) {
    ExpectRejected(std::string("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ") + v + "\r\n\r\n",
                   400);
  }
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                 400);
}

TEST(Http1Request, RejectsTransferEncodingOtherThanChunked) {
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501);
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501);
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501);
  ExpectRejected(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n",
      400);
  ExpectRejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400);
}

TEST(Http1Request, RejectsObsFoldAndSpaceBeforeColon) {
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A\t: 1\r\n\r\n", 400);
}

TEST(Http1Request, RejectsControlBytesInNamesAndValues) {
  ExpectRejected(std::string("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n", 38), 400);
  ExpectRejected(std::string("GET / HTTP/1.1\r\nHost: a\r\nX\0A: ab\r\n\r\n", 37), 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7f\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", 400);
}

TEST(Http1Request, RejectsBareLF) {
  ExpectRejected("GET / HTTP/1.1\nHost: a\n\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\n", 400);
}

TEST(Http1Request, RejectsMalformedRequestLines) {
  ExpectRejected("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
  ExpectRejected("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  ExpectRejected("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400);
  ExpectRejected("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
  ExpectRejected("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
  ExpectRejected("GET nopath HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  ExpectRejected("GET / HTTP/1.1\r\n\r\n", 400);  // no Host in HTTP/1.1
  ExpectRejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

TEST(Http1Request, LimitsAreEnforced) {
  Limits l;
  l.max_request_line = 100;
  l.max_header_bytes = 300;
  l.max_headers = 3;
  std::string longline = "GET /" + std::string(200, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  Parsed p = Req(longline, l);
  EXPECT_EQ(p.err.status, 414);
  // Even before the line ends, an over-long line is refused.
  p = Req("GET /" + std::string(200, 'a'), l);
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.err.status, 414);
  p = Req("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(400, 'b') + "\r\n\r\n", l);
  EXPECT_EQ(p.err.status, 431);
  p = Req("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(400, 'b'),
          l);  // incomplete but too big
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.err.status, 431);
  p = Req("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", l);
  EXPECT_EQ(p.err.status, 431);
  p = Req("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", l);
  EXPECT_EQ(p.result, ParseResult::kComplete);
}

TEST(Http1Response, FramingRules) {
  Parsed p = Resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_EQ(p.head.status, 200);
  EXPECT_EQ(p.head.reason, "OK");
  EXPECT_EQ(p.head.framing, Framing::kContentLength);
  p = Resp("HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(p.head.framing, Framing::kUntilClose);
  p = Resp("HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_EQ(p.head.framing, Framing::kNone);
  p = Resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
  EXPECT_EQ(p.head.framing, Framing::kNone);
  p = Resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD");
  EXPECT_EQ(p.head.framing, Framing::kNone);
  p = Resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(p.head.framing, Framing::kChunked);
  p = Resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_EQ(p.head.reason, "");
  p = Resp("HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(p.head.framing, Framing::kNone);
}

TEST(Http1Response, RejectsSmuggling) {
  Parsed p = Resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(p.result, ParseResult::kError);
  EXPECT_EQ(p.err.status, 502);
  p = Resp("HTTP/1.1 2x0 OK\r\n\r\n");
  EXPECT_EQ(p.err.status, 502);
  p = Resp("HTTP/1.1 200 OK\nContent-Length: 0\n\n");
  EXPECT_EQ(p.err.status, 502);
}

// Chunked decoding.
struct Decoded {
  long consumed = 0;
  std::string data;
  Error err;
  bool done = false;
  std::vector<std::pair<std::string, std::string>> trailers;
};

Decoded Decode(const std::string& in, size_t step = 0) {
  Limits l;
  ChunkedDecoder d(l);
  Decoded out;
  std::vector<std::string_view> spans;
  if (step == 0) step = in.size();
  for (size_t off = 0; off < in.size() && !d.Done(); off += step) {
    spans.clear();
    size_t n = std::min(step, in.size() - off);
    long r = d.Feed(in.data() + off, n, &spans, &out.err);
    if (r < 0) {
      out.consumed = -1;
      return out;
    }
    out.consumed += r;
    for (auto s : spans) out.data.append(s);
  }
  out.done = d.Done();
  for (const auto& t : d.trailers()) out.trailers.emplace_back(t.name, t.value);
  return out;
}

TEST(Chunked, DecodesWholeAndByteByByte) {
  const std::string body =
      "5\r\nhello\r\n6;name=val;q=\"quoted \\\" x\"\r\n world\r\n0\r\nx-sum: 1\r\n\r\nNEXT";
  for (size_t step : {size_t{0}, size_t{1}, size_t{3}}) {
    Decoded d = Decode(body, step);
    ASSERT_TRUE(d.done) << step;
    EXPECT_EQ(d.data, "hello world");
    EXPECT_EQ(static_cast<size_t>(d.consumed), body.size() - 4) << "stops before the next message";
    ASSERT_EQ(d.trailers.size(), 1u);
    EXPECT_EQ(d.trailers[0].first, "x-sum");
    EXPECT_EQ(d.trailers[0].second, "1");
  }
}

TEST(Chunked, RejectsInvalidSizesAndExtensions) {
  for (const char* bad :
       {"x\r\n", "\r\n", "-1\r\n", "0x5\r\nhello\r\n", "5 \r\nhello\r\n", "5;\r\nhello\r\n",
        "5;=a\r\nhello\r\n", "5;a=\r\nhello\r\n", "5;a=\"open\r\nhello\r\n", "5;a b\r\nhello\r\n",
        "5\nhello\r\n", "5\r\nhelloXX", "5\r\nhello\n0\r\n\r\n", "fffffffffffffffff\r\n",
        "0\r\nbad trailer\r\n\r\n", "0\r\nx: 1\n\r\n", ";a=b\r\n", " 5\r\nhello\r\n"}) {
    Decoded d = Decode(bad);
    EXPECT_EQ(d.consumed, -1) << bad;
  }
}

TEST(Chunked, ExtensionLengthIsLimited) {
  Decoded ok = Decode("5;n=" + std::string(4000, 'v') + "\r\nhello\r\n0\r\n\r\n");
  EXPECT_TRUE(ok.done);
  Decoded d = Decode("5;n=" + std::string(5000, 'v') + "\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(d.consumed, -1);
  EXPECT_EQ(d.err.reason, "chunk extension too long");
}

TEST(Chunked, TrailerSizeIsLimited) {
  std::string body = "0\r\nx-big: " + std::string(70000, 'a') + "\r\n\r\n";
  Decoded d = Decode(body);
  EXPECT_EQ(d.consumed, -1);
  EXPECT_EQ(d.err.status, 431);
}

TEST(Chunked, FramingFieldsInTrailersAreDropped) {
  Decoded d = Decode("0\r\ncontent-length: 5\r\nx-ok: y\r\n\r\n");
  ASSERT_TRUE(d.done);
  ASSERT_EQ(d.trailers.size(), 1u);
  EXPECT_EQ(d.trailers[0].first, "x-ok");
}

}  // namespace
}  // namespace weft::http1

namespace weft::http1 {
namespace {

// Found by the fuzzer: empty lines before the start line were taken for the
// end of the head, and the line scan then ran before the buffer.
TEST(Http1Request, LeadingEmptyLinesAreNotTheEndOfTheHead) {
  Parsed p = Req("\r\n\r\n\r\nHTTP.1 ");
  EXPECT_NE(p.result, ParseResult::kComplete);
  p = Req("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(p.result, ParseResult::kComplete);
  EXPECT_EQ(p.head.target, "/");
  p = Req("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(p.result, ParseResult::kError);
}

}  // namespace
}  // namespace weft::http1
