#include "proxy/access_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace weft::proxy {
namespace {

TEST(AccessLog, OneEscapedJsonLinePerExchange) {
  StreamInfo in;
  in.listener = "public";
  in.client = "[::1]:5000";
  in.method = "GET";
  in.path = "/a\"b\n";
  in.status = 503;
  in.bytes_received = 3;
  in.bytes_sent = 10;
  in.start_ns = 1'000'000'000;
  in.upstream_ns = 2'500'000;
  in.upstream = "10.0.0.1:80";
  in.peer = "spiffe://weft.local/ns/default/sa/web";
  in.request_id = "id-1";
  in.flags = "UR";
  in.attempts = 3;
  std::string line;
  FormatAccessLog(in, 1'004'000'000, 1'700'000'000'123'456, &line);
  ASSERT_EQ(line.back(), '\n');
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["time"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["path"], "/a\"b\n");
  EXPECT_EQ(j["status"], 503);
  EXPECT_EQ(j["client"], "[::1]:5000");
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(j["upstream_ms"].get<double>(), 2.5);
  EXPECT_EQ(j["attempts"], 3);
  EXPECT_EQ(j["flags"], "UR");
  EXPECT_EQ(j["peer"], "spiffe://weft.local/ns/default/sa/web");
  EXPECT_FALSE(j.contains("trace_id"));  // tracing off
  in.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  line.clear();
  FormatAccessLog(in, 1'004'000'000, 1'700'000'000'123'456, &line);
  EXPECT_EQ(nlohmann::json::parse(line)["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST(AccessLog, ARequestThatNeverStartedShowsADash) {
  StreamInfo in;
  in.status = 400;
  in.flags = "LR";
  std::string line;
  FormatAccessLog(in, 5, 0, &line);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["method"], "-");
  EXPECT_EQ(j["duration_ms"], 0.0);
}

}  // namespace
}  // namespace weft::proxy
