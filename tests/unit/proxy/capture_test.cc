// Transparent interception in the proxy: the Host a captured request names
// and how its protocol is told.
#include <gtest/gtest.h>

#include "proxy/sniff.h"
#include "proxy/worker.h"

namespace weft::proxy {
namespace {

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
  EXPECT_EQ(HttpRequestStart("PRI * HTTP/2.0\r\n"), -1);    // HTTP/2: TCP
  EXPECT_EQ(HttpRequestStart("CONNECT a:443 HTTP/1.1\r\n"), -1);
  EXPECT_EQ(HttpRequestStart("get / HTTP/1.1"), -1);  // methods are case-sensitive
}

}  // namespace
}  // namespace weft::proxy
