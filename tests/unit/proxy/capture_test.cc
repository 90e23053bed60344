// Transparent interception in the proxy: the Host a captured request names
// and how its protocol is told.
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <string>
#include <utility>
#include <vector>

#include "http/http2/codec.h"
#include "proxy/sniff.h"
#include "proxy/worker.h"

namespace weft::proxy {
namespace {

using namespace std::literals;

TEST(Capture, HostOfARequestHead) {
  EXPECT_EQ(HostOfRequestHead("GET / HTTP/1.1\r\nHost: reviews.service.weft\r\n\r\n"),
            "reviews.service.weft");
  EXPECT_EQ(HostOfRequestHead(
                "GET / HTTP/1.1\r\nAccept: */*\r\nhOsT:  Reviews.Service.Weft.:8080 \r\n\r\n"),
            "reviews.service.weft");
  EXPECT_EQ(HostOfRequestHead("GET / HTTP/1.1\r\nAccept: */*\r\n\r\nHost: late\r\n"), "");
  EXPECT_EQ(HostOfRequestHead("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), "");
  EXPECT_EQ(HostOfRequestHead("GET / HTTP/1.1\r\nHostile: x\r\n\r\n"), "");
  EXPECT_EQ(HostOfRequestHead("GET / HTTP/1.1\r\nHost: partial"), "partial");
  EXPECT_EQ(HostOfRequestHead(""), "");
}

TEST(Capture, HttpIsToldFromItsFirstBytes) {
  EXPECT_EQ(HttpRequestStart("GET / HTTP/1.1\r\n"), 1);
  EXPECT_EQ(HttpRequestStart("DELETE /x"), 1);
  EXPECT_EQ(HttpRequestStart("GE"), 0);
  EXPECT_EQ(HttpRequestStart(""), 0);
  EXPECT_EQ(HttpRequestStart("*3\r\n$3\r\nSET"), -1);       // redis
  EXPECT_EQ(HttpRequestStart("\x16\x03\x01\x02\x00"), -1);  // a TLS ClientHello
  EXPECT_EQ(HttpRequestStart("PRI * HTTP/2.0\r\n"), -1);    // HTTP/2: AuthorityOfHttp2Start's
  EXPECT_EQ(HttpRequestStart("CONNECT a:443 HTTP/1.1\r\n"), -1);
  EXPECT_EQ(HttpRequestStart("get / HTTP/1.1"), -1);  // methods are case-sensitive
}

// --- HTTP/2 with prior knowledge ---------------------------------------

// What clients sent a listener that answered nothing, byte for byte.
// curl 7.88.1 --http2-prior-knowledge http://reviews.service.weft:17001/reviews/1:
// SETTINGS, WINDOW_UPDATE, HEADERS (END_STREAM|END_HEADERS) whose :authority
// "reviews.service.weft:17001" is Huffman-coded with incremental indexing,
// between :scheme and user-agent.
constexpr std::string_view kCurl(
    "\x50\x52\x49\x20\x2a\x20\x48\x54\x54\x50\x2f\x32\x2e\x30\x0d\x0a\x0d\x0a\x53\x4d\x0d\x0a\x0d"
    "\x0a"
    "\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64\x00\x04\x02\x00\x00\x00\x00\x02"
    "\x00"
    "\x00\x00\x00\x00\x00\x04\x08\x00\x00\x00\x00\x00\x01\xff\x00\x01\x00\x00\x30\x01\x05\x00\x00"
    "\x00"
    "\x01\x82\x04\x88\x62\xc2\xf7\x31\x7c\x21\x80\xff\x86\x41\x93\xb0\xbd\xcc\x5f\x08\x5d\x05\xb3"
    "\xb9"
    "\x88\x55\xfc\x16\x54\xdc\x0b\xa0\x00\x7f\x7a\x88\x25\xb6\x50\xc3\xab\xbc\xf2\xe1\x53\x03\x2a"
    "\x2f"
    "\x2a",
    121);
// nghttp 1.52 http://127.0.0.1:17002/x -H ':authority: Ratings.Service.Weft:9080': SETTINGS,
// five PRIORITY frames (its dependency tree), HEADERS on stream 13 with the
// PRIORITY flag.
constexpr std::string_view kNghttp(
    "\x50\x52\x49\x20\x2a\x20\x48\x54\x54\x50\x2f\x32\x2e\x30\x0d\x0a\x0d\x0a\x53\x4d\x0d\x0a\x0d"
    "\x0a"
    "\x00\x00\x0c\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64\x00\x04\x00\x00\xff\xff\x00\x00"
    "\x05"
    "\x02\x00\x00\x00\x00\x03\x00\x00\x00\x00\xc8\x00\x00\x05\x02\x00\x00\x00\x00\x05\x00\x00\x00"
    "\x00"
    "\x64\x00\x00\x05\x02\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x05\x02\x00\x00\x00\x00"
    "\x09"
    "\x00\x00\x00\x07\x00\x00\x00\x05\x02\x00\x00\x00\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x31\x01"
    "\x25"
    "\x00\x00\x00\x0d\x00\x00\x00\x0b\x0f\x82\x04\x02\x2f\x78\x86\x41\x92\xda\x34\x9a\xa9\x90\xbe"
    "\xe2"
    "\xd9\xdc\xc4\x2a\xfc\x8b\x2a\x6e\x3e\x07\x81\x53\x03\x2a\x2f\x2a\x90\x7a\x8a\xaa\x69\xd2\x9a"
    "\xc4"
    "\xc0\x57\x6c\x4b\x83",
    173);

// python3-grpcio 1.51.1 (gRPC C core 29.0.0), a Unary call to
// greeter.service.weft:50051: the preface, SETTINGS and WINDOW_UPDATE, then
// nothing until the server's SETTINGS. After an empty one: its ACK, and the
// HEADERS (END_HEADERS) whose fields are literals with incremental indexing.
constexpr std::string_view kGrpcStart(
    "\x50\x52\x49\x20\x2a\x20\x48\x54\x54\x50\x2f\x32\x2e\x30\x0d\x0a\x0d\x0a\x53\x4d\x0d\x0a\x0d"
    "\x0a\x00\x00\x24\x04\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00"
    "\x04\x00\x3f\xff\xff\x00\x05\x00\x3f\xff\xff\x00\x06\x00\x00\x20\x00\xfe\x03\x00\x00\x00\x01"
    "\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x3f\x00\x00",
    82);
constexpr std::string_view kGrpcAfterSettings(
    "\x00\x00\x00\x04\x01\x00\x00\x00\x00\x00\x00\xf1\x01\x04\x00\x00\x00\x01\x40\x05\x3a\x70\x61"
    "\x74\x68\x15\x2f\x77\x65\x66\x74\x2e\x74\x65\x73\x74\x2e\x45\x63\x68\x6f\x2f\x55\x6e\x61\x72"
    "\x79\x40\x0a\x3a\x61\x75\x74\x68\x6f\x72\x69\x74\x79\x1a\x67\x72\x65\x65\x74\x65\x72\x2e\x73"
    "\x65\x72\x76\x69\x63\x65\x2e\x77\x65\x66\x74\x3a\x35\x30\x30\x35\x31\x83\x86\x40\x0c\x63\x6f"
    "\x6e\x74\x65\x6e\x74\x2d\x74\x79\x70\x65\x10\x61\x70\x70\x6c\x69\x63\x61\x74\x69\x6f\x6e\x2f"
    "\x67\x72\x70\x63\x40\x02\x74\x65\x08\x74\x72\x61\x69\x6c\x65\x72\x73\x40\x14\x67\x72\x70\x63"
    "\x2d\x61\x63\x63\x65\x70\x74\x2d\x65\x6e\x63\x6f\x64\x69\x6e\x67\x17\x69\x64\x65\x6e\x74\x69"
    "\x74\x79\x2c\x20\x64\x65\x66\x6c\x61\x74\x65\x2c\x20\x67\x7a\x69\x70\x40\x0c\x67\x72\x70\x63"
    "\x2d\x74\x69\x6d\x65\x6f\x75\x74\x05\x31\x35\x30\x30\x6d\x40\x0a\x75\x73\x65\x72\x2d\x61\x67"
    "\x65\x6e\x74\x30\x67\x72\x70\x63\x2d\x70\x79\x74\x68\x6f\x6e\x2f\x31\x2e\x35\x31\x2e\x31\x20"
    "\x67\x72\x70\x63\x2d\x63\x2f\x32\x39\x2e\x30\x2e\x30\x20\x28\x6c\x69\x6e\x75\x78\x3b\x20\x63"
    "\x68\x74\x74\x70\x32\x29",
    259);

enum : uint8_t {
  kData = 0x0,
  kHeaders = 0x1,
  kPriority = 0x2,
  kSettings = 0x4,
  kPing = 0x6,
  kWindowUpdate = 0x8,
  kContinuation = 0x9,
};
enum : uint8_t { kEndStream = 0x1, kEndHeaders = 0x4, kPadded = 0x8, kPriorityFlag = 0x20 };

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload,
                  size_t declared_len = std::string::npos) {
  const size_t len = declared_len == std::string::npos ? payload.size() : declared_len;
  std::string f;
  f += static_cast<char>((len >> 16) & 0xff);
  f += static_cast<char>((len >> 8) & 0xff);
  f += static_cast<char>(len & 0xff);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>((stream >> 24) & 0x7f);
  f += static_cast<char>((stream >> 16) & 0xff);
  f += static_cast<char>((stream >> 8) & 0xff);
  f += static_cast<char>(stream & 0xff);
  f += payload;
  return f;
}

// The preface and a client's SETTINGS (SETTINGS_MAX_CONCURRENT_STREAMS 100)
// and WINDOW_UPDATE: what comes before the first HEADERS.
std::string Start() {
  return std::string(http2::kPreface) +
         Frame(kSettings, 0, 0, std::string_view("\x00\x03\x00\x00\x00\x64", 6)) +
         Frame(kWindowUpdate, 0, 0, std::string_view("\x00\x0f\x00\x01", 4));
}

// The HPACK block nghttp2's own encoder makes of these fields (Huffman
// where it is shorter, the static table where a name is in it).
std::string Deflate(const std::vector<std::pair<std::string, std::string>>& fields) {
  nghttp2_hd_deflater* d = nullptr;
  EXPECT_EQ(nghttp2_hd_deflate_new(&d, 4096), 0);
  std::vector<nghttp2_nv> nva;
  for (const auto& [n, v] : fields) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  }
  std::string out(nghttp2_hd_deflate_bound(d, nva.data(), nva.size()), '\0');
  const ssize_t n = nghttp2_hd_deflate_hd(d, reinterpret_cast<uint8_t*>(out.data()), out.size(),
                                          nva.data(), nva.size());
  nghttp2_hd_deflate_del(d);
  EXPECT_GT(n, 0);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

// A literal string of HPACK (RFC 7541 5.2), not Huffman-coded; short ones only.
std::string Str(std::string_view s) {
  EXPECT_LT(s.size(), 127u);
  return std::string(1, static_cast<char>(s.size())) + std::string(s);
}

// :method GET, :scheme http, :path / from the static table.
const std::string kRequestLine = "\x82\x86\x84";

int Authority(std::string_view bytes, std::string* host) {
  return AuthorityOfHttp2Start(bytes, host);
}

std::string AuthorityOf(std::string_view bytes) {
  std::string host = "stale";
  const int r = AuthorityOfHttp2Start(bytes, &host);
  if (r != 1) {
    EXPECT_EQ(host, "") << "result " << r;
    return r == 0 ? "<more>" : "<none>";
  }
  return host;
}

TEST(Capture, Http2AuthorityOfRealClients) {
  EXPECT_EQ(AuthorityOf(kCurl), "reviews.service.weft");
  EXPECT_EQ(AuthorityOf(kNghttp), "ratings.service.weft");  // lower-case, no port
}

TEST(Capture, Http2AuthorityInEachHpackForm) {
  const std::string start = Start();
  auto headers = [&](const std::string& block) {
    return start + Frame(kHeaders, kEndHeaders | kEndStream, 1, block);
  };
  // Literal without indexing, the name from the static table (index 1).
  EXPECT_EQ(AuthorityOf(headers(kRequestLine + "\x01" + Str("reviews.service.weft"))),
            "reviews.service.weft");
  // With incremental indexing, and the FQDN form with a port.
  EXPECT_EQ(AuthorityOf(headers(kRequestLine + "\x41" + Str("Reviews.Service.Weft.:9080"))),
            "reviews.service.weft");
  // Never indexed, the name itself a literal.
  EXPECT_EQ(AuthorityOf(headers(kRequestLine + "\x10" + Str(":authority") + Str("reviews"))),
            "reviews");
  // After a dynamic table size update, which may open a block.
  EXPECT_EQ(AuthorityOf(headers("\x20" + kRequestLine + "\x01" + Str("reviews"))), "reviews");
  // Huffman-coded by nghttp2's encoder (the name is nowhere in the bytes).
  const std::string huff = Deflate({{":method", "POST"},
                                    {":scheme", "http"},
                                    {":authority", "greeter.service.weft:50051"},
                                    {":path", "/helloworld.Greeter/SayHello"},
                                    {"content-type", "application/grpc"},
                                    {"te", "trailers"}});
  ASSERT_EQ(huff.find("greeter"), std::string::npos);
  EXPECT_EQ(AuthorityOf(headers(huff)), "greeter.service.weft");
  // No :authority: the host field (after the pseudo-header fields) names it.
  EXPECT_EQ(
      AuthorityOf(headers(Deflate(
          {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"host", "Ratings:80"}}))),
      "ratings");
}

TEST(Capture, Http2AuthorityThatIsNoName) {
  const std::string start = Start();
  auto headers = [&](const std::string& block, uint8_t flags = kEndHeaders) {
    return start + Frame(kHeaders, flags, 1, block);
  };
  EXPECT_EQ(AuthorityOf(headers(kRequestLine + "\x01" + Str("[::1]:80"))), "<none>");
  EXPECT_EQ(AuthorityOf(headers(kRequestLine + "\x01" + Str(""))), "<none>");
  EXPECT_EQ(AuthorityOf(headers(kRequestLine + "\x81")), "<none>");  // indexed: "" itself
  EXPECT_EQ(AuthorityOf(headers(kRequestLine + "\x01" + Str("a b"))), "<none>");
  EXPECT_EQ(AuthorityOf(headers(kRequestLine + "\x01" + Str("name..:80"))), "<none>");
  // A whole block without one; the same block not yet ended may go on.
  const std::string none = Deflate({{":method", "GET"}, {":path", "/"}, {"user-agent", "x"}});
  EXPECT_EQ(AuthorityOf(headers(none)), "<none>");
  EXPECT_EQ(AuthorityOf(headers(none, 0)), "<more>");
  // HPACK that does not decode: index 0, an index past both tables, an
  // integer that overflows.
  EXPECT_EQ(AuthorityOf(headers("\x80")), "<none>");
  EXPECT_EQ(AuthorityOf(headers("\xff\x7f")), "<none>");
  EXPECT_EQ(AuthorityOf(headers(std::string("\x01\xff\xff\xff\xff\xff\xff\x0f", 8))), "<none>");
  // A size update past the 4096 bytes the client may assume.
  EXPECT_EQ(
      AuthorityOf(headers(std::string("\x3f\xe2\x1f", 3) + kRequestLine + "\x01" + Str("reviews"))),
      "<none>");
}

TEST(Capture, Http2AuthorityAcrossContinuation) {
  const std::string block = Deflate({{":method", "GET"},
                                     {":scheme", "http"},
                                     {":path", "/reviews/1"},
                                     {"user-agent", "weft-test"},
                                     {":authority", "reviews.service.weft"}});
  // Split at every byte, so the field straddles HEADERS and CONTINUATION,
  // and once more into three pieces.
  for (size_t cut = 0; cut <= block.size(); ++cut) {
    const std::string b = Start() + Frame(kHeaders, kEndStream, 1, block.substr(0, cut)) +
                          Frame(kContinuation, kEndHeaders, 1, block.substr(cut));
    EXPECT_EQ(AuthorityOf(b), "reviews.service.weft") << "cut at " << cut;
  }
  const size_t third = block.size() / 3;
  EXPECT_EQ(AuthorityOf(Start() + Frame(kHeaders, 0, 1, block.substr(0, third)) +
                        Frame(kContinuation, 0, 1, block.substr(third, third)) +
                        Frame(kContinuation, kEndHeaders, 1, block.substr(2 * third))),
            "reviews.service.weft");
  const std::string head = Start() + Frame(kHeaders, 0, 1, block.substr(0, third));
  const std::string rest = block.substr(third);
  // Nothing but CONTINUATION of the same stream may follow an open block.
  EXPECT_EQ(AuthorityOf(head + Frame(kContinuation, kEndHeaders, 3, rest)), "<none>");
  EXPECT_EQ(AuthorityOf(head + Frame(kWindowUpdate, 0, 0, "\0\0\0\1"sv) +
                        Frame(kContinuation, kEndHeaders, 1, rest)),
            "<none>");
  EXPECT_EQ(AuthorityOf(head + Frame(0x42, 0, 0, "x") + Frame(kContinuation, kEndHeaders, 1, rest)),
            "<none>");
  // A CONTINUATION with no HEADERS before it.
  EXPECT_EQ(AuthorityOf(Start() + Frame(kContinuation, kEndHeaders, 1, block)), "<none>");
}

TEST(Capture, Http2AuthorityWithPaddingAndPriority) {
  const std::string block = kRequestLine + "\x01" + Str("reviews");
  const std::string pad(10, '\0');
  const std::string prio("\x00\x00\x00\x00\x0f", 5);
  EXPECT_EQ(AuthorityOf(Start() + Frame(kHeaders, kEndHeaders | kPadded, 1, "\x0a" + block + pad)),
            "reviews");
  EXPECT_EQ(AuthorityOf(Start() + Frame(kHeaders, kEndHeaders | kPadded | kPriorityFlag, 1,
                                        "\x0a" + prio + block + pad)),
            "reviews");
  EXPECT_EQ(AuthorityOf(Start() + Frame(kHeaders, kEndHeaders | kPriorityFlag, 1, prio + block)),
            "reviews");
  // Padding that would leave the fragment less than nothing (RFC 9113 6.2).
  EXPECT_EQ(AuthorityOf(Start() + Frame(kHeaders, kEndHeaders | kPadded, 1, "\xff" + block)),
            "<none>");
  EXPECT_EQ(AuthorityOf(Start() + Frame(kHeaders, kEndHeaders | kPadded | kPriorityFlag, 1,
                                        std::string("\x01\x00\x00\x00\x00\x0f", 6))),
            "<none>");
  EXPECT_EQ(AuthorityOf(Start() + Frame(kHeaders, kEndHeaders | kPriorityFlag, 1, "\0\0\0"sv)),
            "<none>");
  EXPECT_EQ(AuthorityOf(Start() + Frame(kHeaders, kEndHeaders | kPadded, 1, "")), "<none>");
  // The padding is not read as HPACK: bytes there that would not decode.
  EXPECT_EQ(AuthorityOf(Start() +
                        Frame(kHeaders, kEndHeaders | kPadded, 1,
                              "\x03" + kRequestLine + "\x01" + Str("reviews") + "\x80\x80\x80")),
            "reviews");
}

TEST(Capture, Http2TruncatedAtEveryLengthWantsMore) {
  // The :authority last in the block: no prefix of these names it yet (the
  // padding after it aside: the field is whole before it).
  const std::string block = kRequestLine + "\x01" + Str("reviews.service.weft");
  const std::vector<std::pair<std::string, size_t>> starts = {
      {Start() + Frame(kHeaders, kEndHeaders, 1, block), 0},
      {Start() + Frame(kHeaders, kEndHeaders | kPadded | kPriorityFlag, 1,
                       "\x04" + std::string("\x00\x00\x00\x00\x0f", 5) + block + "\0\0\0\0"s),
       4},
      {Start() + Frame(kHeaders, 0, 1, block.substr(0, 5)) +
           Frame(kContinuation, kEndHeaders, 1, block.substr(5)),
       0},
  };
  for (const auto& [b, after] : starts) {
    ASSERT_EQ(AuthorityOf(b), "reviews.service.weft");
    for (size_t n = 0; n < b.size(); ++n) {
      EXPECT_EQ(AuthorityOf(b.substr(0, n)),
                n < b.size() - after ? "<more>" : "reviews.service.weft")
          << "first " << n << " of " << b.size();
    }
  }
  // Real clients: "more" until the authority is in, then it, whatever follows.
  for (std::string_view b : {kCurl, kNghttp}) {
    std::string first;
    for (size_t n = 0; n <= b.size(); ++n) {
      const std::string got = AuthorityOf(b.substr(0, n));
      if (first.empty() && got != "<more>") first = got;
      if (!first.empty()) {
        EXPECT_EQ(got, first) << "first " << n;
      }
    }
    EXPECT_NE(first, "");
    EXPECT_NE(first, "<none>");
  }
}

TEST(Capture, Http2PrefaceAndItsPrefixes) {
  const std::string_view p = http2::kPreface;
  for (size_t n = 0; n <= p.size(); ++n) EXPECT_EQ(AuthorityOf(p.substr(0, n)), "<more>") << n;
  EXPECT_EQ(AuthorityOf("PRX"), "<none>");
  EXPECT_EQ(AuthorityOf("PRI * HTTP/1.1\r\n"), "<none>");
  EXPECT_EQ(AuthorityOf("GET / HTTP/1.1\r\nHost: reviews\r\n\r\n"), "<none>");
  EXPECT_EQ(AuthorityOf("\x16\x03\x01\x02\x00"), "<none>");
}

TEST(Capture, Http2FramesOutOfPlaceAreNotRoutable) {
  const std::string pre(http2::kPreface);
  const std::string settings = Frame(kSettings, 0, 0, "");
  const std::string hdrs = Frame(kHeaders, kEndHeaders, 1, kRequestLine + "\x01" + Str("reviews"));
  ASSERT_EQ(AuthorityOf(pre + settings + hdrs), "reviews");
  // Garbage after the preface: HTTP/1.1, or bytes whose first frame is no SETTINGS.
  EXPECT_EQ(AuthorityOf(pre + "GET / HTTP/1.1\r\nHost: reviews\r\n\r\n"), "<none>");
  EXPECT_EQ(AuthorityOf(pre + std::string(64, '\xa5')), "<none>");
  EXPECT_EQ(AuthorityOf(pre + hdrs), "<none>");  // no SETTINGS first
  // SETTINGS as a client may not send it first.
  EXPECT_EQ(AuthorityOf(pre + Frame(kSettings, 1, 0, "") + hdrs), "<none>");  // an ACK
  EXPECT_EQ(AuthorityOf(pre + Frame(kSettings, 0, 1, "") + hdrs), "<none>");  // on a stream
  EXPECT_EQ(AuthorityOf(pre + Frame(kSettings, 0, 0, "12345") + hdrs), "<none>");
  // Frames that need an open stream, or that a client never sends.
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(kData, 0, 1, "x") + hdrs), "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(0x3, 0, 1, "\0\0\0\0"sv) + hdrs), "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(0x5, 0x4, 1, "\0\0\0\2"sv) + hdrs), "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(0x7, 0, 0, "\0\0\0\0\0\0\0\0"sv) + hdrs), "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(kWindowUpdate, 0, 1, "\0\0\0\1"sv) + hdrs),
            "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(kWindowUpdate, 0, 0, "\0\0\1"sv) + hdrs), "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(kPriority, 0, 0, "\0\0\0\0\0"sv) + hdrs), "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(kPing, 0, 1, "12345678") + hdrs), "<none>");
  // HEADERS on stream 0 or on one the server would open.
  EXPECT_EQ(AuthorityOf(pre + settings +
                        Frame(kHeaders, kEndHeaders, 0, kRequestLine + "\x01" + Str("reviews"))),
            "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings +
                        Frame(kHeaders, kEndHeaders, 2, kRequestLine + "\x01" + Str("reviews"))),
            "<none>");
  // What a client may send before its request: skipped.
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(kPing, 0, 0, "12345678") +
                        Frame(kPriority, 0, 3, "\0\0\0\0\x10"sv) + settings +
                        Frame(0xfa, 0xff, 7, std::string(1000, 'x')) + hdrs),
            "reviews");
}

TEST(Capture, Http2OversizedFramesAreNotRoutable) {
  const std::string pre(http2::kPreface);
  const std::string settings = Frame(kSettings, 0, 0, "");
  // Past the 16 KiB a client may send before our SETTINGS: told from the
  // frame header alone, without waiting for its payload.
  EXPECT_EQ(AuthorityOf(pre + Frame(kSettings, 0, 0, "", 16386)), "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(0xfa, 0, 0, "", 16385)), "<none>");
  EXPECT_EQ(AuthorityOf(pre + settings + Frame(kHeaders, 0, 1, "", 0xffffff)), "<none>");
  // 16 KiB exactly is fine, and the authority early in a frame not all read
  // is found already. The block: the request, :authority, then one field
  // whose value fills the frame (its length: 127 and two more bytes).
  const std::string block =
      kRequestLine + "\x01" + Str("reviews") + "\x00"s + Str("x-filler") + "\x7f";
  const size_t value = 16384 - block.size() - 2;
  const size_t n = value - 127;
  ASSERT_LT(n >> 7, 128u);
  const std::string big = block + static_cast<char>(0x80 | (n & 0x7f)) + static_cast<char>(n >> 7) +
                          std::string(value, 'a');
  ASSERT_EQ(big.size(), 16384u);
  const std::string whole = pre + settings + Frame(kHeaders, kEndHeaders, 1, big);
  EXPECT_EQ(AuthorityOf(whole), "reviews");
  EXPECT_EQ(AuthorityOf(std::string_view(whole).substr(0, 100)), "reviews");
}

TEST(Capture, Http2HeaderListIsBounded) {
  // A 4000-byte field into the dynamic table, then one-byte references to
  // it: a small block that decodes to more than 64 KiB before its :authority.
  const std::string big(4000, 'v');
  std::string fields = kRequestLine + "\x40" + Str("x-big");
  fields += static_cast<char>(0x7f);  // the value's length, 4000 = 127 + 3873
  fields += static_cast<char>(0x80 | (3873 & 0x7f));
  fields += static_cast<char>(3873 >> 7);
  fields += big;
  auto with_refs = [&](int refs) {
    std::string b = fields;
    b.append(static_cast<size_t>(refs), '\xbe');  // index 62: the dynamic table's newest
    b += "\x01" + Str("reviews");
    return Start() + Frame(kHeaders, kEndHeaders, 1, b);
  };
  EXPECT_EQ(AuthorityOf(with_refs(10)), "reviews");
  EXPECT_EQ(AuthorityOf(with_refs(20)), "<none>");
  EXPECT_LT(with_refs(20).size(), 4200u);
}

// A client that waits for the server's SETTINGS (gRPC's C core) names no
// authority on its own; once sent an empty SETTINGS it acknowledges it and
// sends its request, which is read past the ACK only when one was sent.
TEST(Capture, Http2AuthorityAfterTheAckOfOurSettings) {
  const std::string grpc = std::string(kGrpcStart) + std::string(kGrpcAfterSettings);
  std::string host;
  EXPECT_EQ(AuthorityOfHttp2Start(kGrpcStart, &host, false), 0);
  EXPECT_EQ(AuthorityOfHttp2Start(kGrpcStart, &host, true), 0);
  EXPECT_EQ(AuthorityOfHttp2Start(grpc, &host, true), 1);
  EXPECT_EQ(host, "greeter.service.weft");
  EXPECT_EQ(AuthorityOfHttp2Start(grpc, &host, false), -1) << "an ACK of SETTINGS never sent";
  EXPECT_EQ(host, "");
  // "More" until the :authority (the block's second field) is in, then it.
  const size_t authority_end = grpc.find("50051") + 5;
  for (size_t n = kGrpcStart.size(); n < grpc.size(); ++n) {
    EXPECT_EQ(AuthorityOfHttp2Start(std::string_view(grpc).substr(0, n), &host, true),
              n < authority_end ? 0 : 1)
        << n;
  }
  // One ACK, empty, after the client's own SETTINGS: anything else is no
  // client that was sent one SETTINGS frame.
  const std::string pre(http2::kPreface);
  const std::string settings = Frame(kSettings, 0, 0, "");
  const std::string ack = Frame(kSettings, 1, 0, "");
  const std::string hdrs = Frame(kHeaders, kEndHeaders, 1, kRequestLine + "\x01" + Str("reviews"));
  EXPECT_EQ(AuthorityOfHttp2Start(pre + settings + ack + hdrs, &host, true), 1);
  EXPECT_EQ(AuthorityOfHttp2Start(pre + settings + hdrs, &host, true), 1) << "the ACK after";
  EXPECT_EQ(AuthorityOfHttp2Start(pre + settings + ack + ack + hdrs, &host, true), -1);
  EXPECT_EQ(AuthorityOfHttp2Start(pre + ack + settings + hdrs, &host, true), -1);
  EXPECT_EQ(AuthorityOfHttp2Start(
                pre + settings + Frame(kSettings, 1, 0, "\0\3\0\0\0\x64"sv) + hdrs, &host, true),
            -1);
  EXPECT_EQ(AuthorityOfHttp2Start(pre + settings + Frame(kSettings, 1, 1, "") + hdrs, &host, true),
            -1);
}

TEST(Capture, Http2SettingsAckIsFoundWhereItStarts) {
  size_t at = 12345;
  const std::string grpc = std::string(kGrpcStart) + std::string(kGrpcAfterSettings);
  EXPECT_EQ(SettingsAckOfHttp2Start(grpc, &at), 1);
  EXPECT_EQ(at, kGrpcStart.size());
  // Every prefix that does not hold the whole ACK wants more.
  for (size_t n = 0; n < kGrpcStart.size() + 9; ++n) {
    at = 12345;
    EXPECT_EQ(SettingsAckOfHttp2Start(grpc.substr(0, n), &at), 0) << n;
    EXPECT_EQ(at, 12345u);
  }
  // After the request (a client that did not wait), and after a frame not
  // all read yet.
  const std::string pre(http2::kPreface);
  const std::string settings = Frame(kSettings, 0, 0, "");
  const std::string ack = Frame(kSettings, 1, 0, "");
  const std::string hdrs = Frame(kHeaders, kEndHeaders, 1, kRequestLine + "\x01" + Str("reviews"));
  EXPECT_EQ(SettingsAckOfHttp2Start(pre + settings + hdrs + ack, &at), 1);
  EXPECT_EQ(at, pre.size() + settings.size() + hdrs.size());
  const std::string big = Frame(0xfa, 0, 0, std::string(16384, 'x'));
  EXPECT_EQ(SettingsAckOfHttp2Start(pre + settings + big.substr(0, 100), &at), 0);
  EXPECT_EQ(SettingsAckOfHttp2Start(pre + settings + big + ack, &at), 1);
  EXPECT_EQ(at, pre.size() + settings.size() + big.size());
  // Not such a start.
  EXPECT_EQ(SettingsAckOfHttp2Start("GET / HTTP/1.1\r\n", &at), -1);
  EXPECT_EQ(
      SettingsAckOfHttp2Start(pre + settings + Frame(kSettings, 1, 0, "\0\3\0\0\0\x64"sv), &at),
      -1);
  EXPECT_EQ(SettingsAckOfHttp2Start(pre + settings + Frame(kSettings, 1, 3, ""), &at), -1);
  EXPECT_EQ(SettingsAckOfHttp2Start(pre + settings + Frame(0xfa, 0, 0, "", 16385), &at), -1);
}

TEST(Capture, Http2AuthorityClearsWhatItWasGiven) {
  std::string host = "stale";
  EXPECT_EQ(Authority("P", &host), 0);
  EXPECT_EQ(host, "");
  host = "stale";
  EXPECT_EQ(Authority("nope", &host), -1);
  EXPECT_EQ(host, "");
}

}  // namespace
}  // namespace weft::proxy
