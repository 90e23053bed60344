#include "base/net.h"

#include <gtest/gtest.h>

namespace weft {
namespace {

TEST(SocketAddress, ParsesV4V6AndLocalhost) {
  std::string why;
  auto a = ParseSocketAddress("127.0.0.1:8080", &why);
  ASSERT_TRUE(a) << why;
  EXPECT_EQ(a->port(), 8080);
  EXPECT_FALSE(a->is_v6());
  EXPECT_EQ(a->Canonical(), "127.0.0.1:8080");
  auto b = ParseSocketAddress("[2001:db8:0::1]:443", &why);
  ASSERT_TRUE(b) << why;
  EXPECT_TRUE(b->is_v6());
  EXPECT_EQ(b->text, "[2001:db8:0::1]:443");  // as written
  EXPECT_EQ(b->Canonical(), "[2001:db8::1]:443");
  auto c = ParseSocketAddress("localhost:0", &why);
  ASSERT_TRUE(c) << why;
  EXPECT_EQ(c->Canonical(), "127.0.0.1:0");
  EXPECT_EQ(*c, *ParseSocketAddress("127.0.0.1:0", &why));
  EXPECT_FALSE(*c == *a);
}

TEST(SocketAddress, RefusalsSayWhy) {
  std::string why;
  EXPECT_FALSE(ParseSocketAddress("127.0.0.1", &why));
  EXPECT_EQ(why, "expected host:port");
  EXPECT_FALSE(ParseSocketAddress("127.0.0.1:99999", &why));
  EXPECT_EQ(why, "port out of range");
  EXPECT_FALSE(ParseSocketAddress("127.0.0.1:http", &why));
  EXPECT_EQ(why, "port is not a number");
  EXPECT_FALSE(ParseSocketAddress("[::1:80", &why));
  EXPECT_EQ(why, "expected [IPv6]:port");
  EXPECT_FALSE(ParseSocketAddress("example.com:80", &why));
  EXPECT_EQ(why, "host must be an IP address (or localhost)");
}

TEST(SocketAddress, SplitHostPortIsTheInverseOfJoin) {
  std::string host, why;
  uint16_t port = 0;
  ASSERT_TRUE(SplitHostPort("[::1]:8502", &host, &port, &why));
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 8502);
  EXPECT_EQ(JoinHostPort(host, port), "[::1]:8502");
  ASSERT_TRUE(SplitHostPort("reviews.service.weft:80", &host, &port, &why));
  EXPECT_EQ(host, "reviews.service.weft");
  EXPECT_EQ(port, 80);
  EXPECT_FALSE(SplitHostPort("h:70000", &host, &port, &why));
  EXPECT_EQ(why, "port out of range");
  EXPECT_FALSE(SplitHostPort("h:8o", &host, &port, &why));
  EXPECT_EQ(why, "port is not a number");
  EXPECT_FALSE(SplitHostPort("[::1]8080", &host, &port, &why));
  EXPECT_FALSE(SplitHostPort("nohostport", &host, &port, &why));
}

TEST(SocketAddress, JoinHostPortBracketsV6) {
  EXPECT_EQ(JoinHostPort("10.0.0.1", 80), "10.0.0.1:80");
  EXPECT_EQ(JoinHostPort("::1", 80), "[::1]:80");
}

}  // namespace
}  // namespace weft
