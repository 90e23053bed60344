#include "proxy/router.h"

#include <gtest/gtest.h>

#include "http/http1/codec.h"

namespace weft::proxy {
namespace {

http::RequestHeaders Request(const std::string& storage) {
  http1::Head h;
  http1::Error err;
  size_t scanned = 0;
  http1::Limits l;
  EXPECT_EQ(http1::ParseRequest(storage.data(), storage.size(), l, &scanned, &h, &err),
            http1::ParseResult::kComplete);
  http::RequestHeaders r;
  http1::ToRequestHeaders(&h, &r);
  return r;
}

std::vector<RouteConfig> Routes() {
  std::vector<RouteConfig> r(4);
  r[0].name = "canary";
  r[0].prefix = "/v2";
  r[0].headers = {{"x-canary", "1"}};
  r[1].name = "exact";
  r[1].path = "/health";
  r[2].name = "v2";
  r[2].prefix = "/v2";
  r[3].name = "default";
  r[3].prefix = "/";
  return r;
}

TEST(Router, FirstMatchWins) {
  auto routes = Routes();
  std::string a = "GET /v2/items HTTP/1.1\r\nHost: h\r\nX-Canary: 1\r\n\r\n";
  EXPECT_EQ(MatchRoute(routes, Request(a))->name, "canary");
  std::string b = "GET /v2/items HTTP/1.1\r\nHost: h\r\nX-Canary: 2\r\n\r\n";
  EXPECT_EQ(MatchRoute(routes, Request(b))->name, "v2");
  std::string c = "GET /health?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
  EXPECT_EQ(MatchRoute(routes, Request(c))->name, "exact");
  std::string d = "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
  EXPECT_EQ(MatchRoute(routes, Request(d))->name, "default");
  std::string e = "GET http://example/v2/x HTTP/1.1\r\nHost: h\r\n\r\n";
  EXPECT_EQ(MatchRoute(routes, Request(e))->name, "v2");
}

TEST(Router, NoMatch) {
  std::vector<RouteConfig> routes(1);
  routes[0].prefix = "/api";
  std::string a = "GET /other HTTP/1.1\r\nHost: h\r\n\r\n";
  EXPECT_EQ(MatchRoute(routes, Request(a)), nullptr);
}

TEST(Router, RequestPath) {
  EXPECT_EQ(RequestPath("/a/b?c"), "/a/b");
  EXPECT_EQ(RequestPath("/a#frag"), "/a");
  EXPECT_EQ(RequestPath("http://host"), "/");
  EXPECT_EQ(RequestPath("http://host/x?y"), "/x");
}

}  // namespace
}  // namespace weft::proxy
