// A test fixture for the codecs: a connected pair of plain streams on
// loopback, driven by one event loop on the test's thread.
#pragma once

#include <gtest/gtest.h>

#include <asio.hpp>
#include <memory>
#include <string>

#include "io/stream.h"

namespace weft::testing {

class LoopbackPair : public ::testing::Test {
 protected:
  void SetUp() override {
    asio::ip::tcp::acceptor acc(io_, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket c(io_);
    c.connect(acc.local_endpoint());
    server_ = std::make_unique<io::Stream>(acc.accept());
    client_ = std::make_unique<io::Stream>(std::move(c));
  }

  // What `s` has received and not yet read, without waiting.
  std::string ReadAvailable(io::Stream& s) {
    std::string out;
    char buf[4096];
    asio::error_code ec;
    s.socket().non_blocking(true);
    for (;;) {
      const size_t n = s.socket().read_some(asio::buffer(buf), ec);
      if (ec) break;
      out.append(buf, n);
    }
    s.socket().non_blocking(false);
    return out;
  }

  asio::io_context io_;
  std::unique_ptr<io::Stream> server_, client_;
};

}  // namespace weft::testing
