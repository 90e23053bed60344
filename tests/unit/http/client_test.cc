// The blocking HTTP client against a real listening socket on loopback.
#include "http/client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>

namespace weft::http {
namespace {

// A listener that accepts nothing: connects succeed (the backlog takes
// them) and no byte ever comes back.
struct Silent {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  Silent() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd, 16), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Silent() { ::close(fd); }
};

Status StreamOnce(Client& c) {
  ClientResponse head;
  return c.Stream("GET", "/watch", {}, &head, [](std::string_view) { return true; });
}

TEST(Client, ShutdownUnblocksAStreamInProgress) {
  Silent s;
  ClientOptions o;
  o.io_timeout_ms = 0;  // no read timeout: only Shutdown can end it
  Client c("127.0.0.1:" + std::to_string(s.port), o);
  auto done = std::async(std::launch::async, [&] { return StreamOnce(c); });
  ASSERT_EQ(done.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  c.Shutdown();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_FALSE(done.get().ok());
}

// A Shutdown that comes before the connection is made still counts: the
// stream that starts later fails at once instead of waiting forever.
TEST(Client, ShutdownBeforeConnectFailsTheNextStream) {
  Silent s;
  ClientOptions o;
  o.io_timeout_ms = 0;
  Client c("127.0.0.1:" + std::to_string(s.port), o);
  c.Shutdown();
  auto done = std::async(std::launch::async, [&] { return StreamOnce(c); });
  ASSERT_EQ(done.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  const Status st = done.get();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("shut down"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace weft::http
