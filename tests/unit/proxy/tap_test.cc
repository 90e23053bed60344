#include "proxy/tap.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace weft::proxy {
namespace {

TapRecord Rec(std::string_view route, std::string_view method, std::string_view path) {
  TapRecord r;
  r.route = route;
  r.method = method;
  r.path = path;
  r.status = 200;
  r.duration_us = 1500;
  return r;
}

nlohmann::json Events(TapHub& hub, const std::string& id, const TapFilter& f, int64_t now,
                      uint64_t* dropped = nullptr) {
  std::string out, err;
  size_t taken = 0;
  uint64_t d = 0;
  EXPECT_TRUE(hub.Poll(id, f, now, &out, &taken, &d, &err)) << err;
  if (dropped) *dropped = d;
  auto j = nlohmann::json::parse("[" + out + "]");
  EXPECT_EQ(j.size(), taken);
  return j;
}

TEST(Tap, NothingIsActiveUntilASessionOpensAndAfterItCloses) {
  TapHub hub;
  EXPECT_FALSE(hub.active());
  const uint64_t g0 = hub.generation();
  Events(hub, "a", {}, 1000);
  EXPECT_TRUE(hub.active());
  EXPECT_NE(hub.generation(), g0);
  hub.Expire(1000 + hub.limits().idle_ms);  // not yet: idle for exactly the limit
  EXPECT_TRUE(hub.active());
  hub.Expire(1001 + hub.limits().idle_ms);
  EXPECT_FALSE(hub.active());
  EXPECT_EQ(hub.sessions(), 0u);
}

TEST(Tap, FiltersMatchRouteMethodAndPathPrefixWithoutTheQuery) {
  TapFilter f{"api", "GET", "/users"};
  EXPECT_TRUE(f.Matches("api", "GET", "/users/1"));
  EXPECT_FALSE(f.Matches("web", "GET", "/users/1"));
  EXPECT_FALSE(f.Matches("api", "POST", "/users/1"));
  EXPECT_FALSE(f.Matches("api", "GET", "/user"));
  EXPECT_TRUE(TapFilter{}.Matches("x", "Y", "/z"));

  TapHub hub;
  Events(hub, "users", {"", "", "/users"}, 0);
  Events(hub, "all", {}, 0);
  hub.Offer(Rec("api", "GET", "/users?token=secret"), 5);
  hub.Offer(Rec("api", "GET", "/other?q=1"), 6);
  auto users = Events(hub, "users", {"", "", "/users"}, 10);
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0]["path"], "/users");  // never the query
  EXPECT_EQ(users[0]["time_ms"], 5);
  EXPECT_EQ(users[0]["duration_ms"], 1.5);
  EXPECT_TRUE(users[0]["grpc_status"].is_null());
  EXPECT_EQ(Events(hub, "all", {}, 10).size(), 2u);
  // Taken: the next poll starts empty.
  EXPECT_EQ(Events(hub, "all", {}, 11).size(), 0u);
}

TEST(Tap, LongPathsAreCutAndBadBytesReplaced) {
  TapHub hub;
  Events(hub, "a", {}, 0);
  std::string path = "/" + std::string(1000, 'p') + "\xff";
  hub.Offer(Rec("r", "GET", path), 1);
  auto ev = Events(hub, "a", {}, 2);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["path"].get<std::string>().size(), TapLimits::kMaxPath);
  hub.Offer(Rec("r\xfe", "GET", "/\xff"), 3);
  ev = Events(hub, "a", {}, 4);
  ASSERT_EQ(ev.size(), 1u);  // rendered, with U+FFFD for what is not UTF-8
  EXPECT_NE(ev[0]["path"].get<std::string>(), "/");
}

TEST(Tap, TheBudgetIsPerSecondForTheWholeSidecar) {
  TapHub hub(TapLimits{.rate = 3});
  int taken = 0;
  for (int i = 0; i < 10; ++i) taken += hub.TakeBudget(1000 + i);
  EXPECT_EQ(taken, 3);
  EXPECT_EQ(hub.over_budget(), 7u);
  taken = 0;
  for (int i = 0; i < 10; ++i) taken += hub.TakeBudget(2000 + i);
  EXPECT_EQ(taken, 3);
}

TEST(Tap, SessionsAndTheirBuffersAreBounded) {
  TapHub hub(TapLimits{.max_sessions = 2, .buffer = 5});
  Events(hub, "a", {}, 0);
  Events(hub, "b", {}, 0);
  std::string out, err;
  size_t taken = 0;
  uint64_t dropped = 0;
  EXPECT_FALSE(hub.Poll("c", {}, 0, &out, &taken, &dropped, &err));
  EXPECT_NE(err.find("at most 2"), std::string::npos) << err;
  for (int i = 0; i < 8; ++i) hub.Offer(Rec("r", "GET", "/" + std::to_string(i)), i);
  auto ev = Events(hub, "a", {}, 10, &dropped);
  ASSERT_EQ(ev.size(), 5u);
  EXPECT_EQ(dropped, 3u);
  EXPECT_EQ(ev[0]["path"], "/3");  // the oldest go first
  EXPECT_EQ(hub.dropped(), 6u);    // both sessions lost three
}

TEST(Tap, ANewFilterForASessionStartsItAfresh) {
  TapHub hub;
  Events(hub, "a", {}, 0);
  hub.Offer(Rec("r", "GET", "/x"), 1);
  const uint64_t g = hub.generation();
  EXPECT_EQ(Events(hub, "a", {"", "POST", ""}, 2).size(), 0u);
  EXPECT_NE(hub.generation(), g);
  hub.Offer(Rec("r", "GET", "/y"), 3);
  hub.Offer(Rec("r", "POST", "/z"), 4);
  auto ev = Events(hub, "a", {"", "POST", ""}, 5);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["path"], "/z");
}

}  // namespace
}  // namespace weft::proxy
