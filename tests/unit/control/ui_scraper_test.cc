#include "control/ui_scraper.h"

#include <gtest/gtest.h>

namespace weft::control {
namespace {

using json = nlohmann::json;

TEST(UiScraper, MembersAreReadFromTheirTagsAndAnythingElseIsIgnored) {
  const UiMember m = UiMemberOf(json::parse(
      R"({"Name": "p1", "Tags": {"role": "proxy", "service": "web", "admin": "127.0.0.1:1", "node": 7}})"));
  EXPECT_EQ(m.name, "p1");
  EXPECT_EQ(m.role, "proxy");
  EXPECT_EQ(m.admin, "127.0.0.1:1");
  EXPECT_EQ(m.node, "");  // not a string
  EXPECT_EQ(UiMemberOf(json::parse("[1]")).name, "");
  EXPECT_EQ(UiMemberOf(json::parse(R"({"Name": "x", "Tags": 3})")).role, "");
}

TEST(UiScraper, AnOverviewWithNoSidecarsIsEmptyNotAnError) {
  UiScraper s;
  const json o = *s.Overview({UiMember{"s1", "server"}}, 1000000);
  EXPECT_EQ(o["error"], "");
  EXPECT_TRUE(o["services"].empty());
  EXPECT_TRUE(o["edges"].empty());
  EXPECT_EQ(o["interval_s"], 2.0);
}

TEST(UiScraper, TapsAreBoundedPerTokenAndTokensAltogether) {
  UiScraper s(UiLimits{.max_viewers = 3});
  // A service with no sidecar: answered, with the reason.
  json t = s.Tap("tok", "", {}, "web", "", "", "", 0, 1000);
  EXPECT_NE(t["error"].get<std::string>().find("no sidecar of service web"), std::string::npos);
  EXPECT_TRUE(t["events"].empty());
  for (int i = 1; i < 4; ++i) s.Tap("tok", "", {}, "web", "r" + std::to_string(i), "", "", 0, 1000);
  t = s.Tap("tok", "", {}, "web", "one-more", "", "", 0, 1000);
  EXPECT_NE(t["error"].get<std::string>().find("too many taps"), std::string::npos) << t;
  // Another token has its own.
  t = s.Tap("other", "", {}, "web", "one-more", "", "", 0, 1000);
  EXPECT_EQ(t["error"].get<std::string>().find("too many taps"), std::string::npos) << t;
  // Past max_viewers, the least recently asked is forgotten.
  s.Tap("third", "", {}, "web", "", "", "", 0, 1001);
  s.Tap("fourth", "", {}, "web", "", "", "", 0, 1002);
  EXPECT_EQ(s.viewers(), 3u);
  // And idle ones go after viewer_idle_ms.
  s.Tap("fifth", "", {}, "web", "", "", "", 0, 1002 + UiLimits{}.viewer_idle_ms + 1);
  EXPECT_EQ(s.viewers(), 1u);
}

}  // namespace
}  // namespace weft::control

namespace weft::control {
namespace {

TEST(UiScraper, AnAddressOnAnotherMachinesLoopbackIsNeverRead) {
  UiScraper s;
  // A sidecar connected from 10.0.0.5 that says its admin endpoint is
  // 127.0.0.1:15000 means its own machine's: reading it here would read
  // this one's. Likewise an agent whose API is on its loopback.
  std::vector<UiMember> members = {
      {.name = "p1",
       .role = "proxy",
       .service = "web",
       .admin = "127.0.0.1:15000",
       .addr = "10.0.0.5"},
      {.name = "a1", .role = "agent", .admin = "127.0.0.1:8500", .addr = "10.0.0.6"},
  };
  const json o = *s.Overview(members, 5000000);
  ASSERT_EQ(o["sidecars"].size(), 1u);
  EXPECT_EQ(o["sidecars"][0]["reachable"], false);
  EXPECT_NE(o["sidecars"][0]["unreachable"].get<std::string>().find("loopback"), std::string::npos);
  EXPECT_NE(o["error"].get<std::string>().find("agent a1 serves its API on its own loopback"),
            std::string::npos)
      << o["error"];
  ASSERT_EQ(o["services"].size(), 1u);
  EXPECT_EQ(o["services"][0]["unreachable"], 1);
}

}  // namespace
}  // namespace weft::control

namespace weft::control {
namespace {

TEST(UiScraper, TapEventsNameNoServiceTheTokenMayNotRead) {
  json events = json::parse(R"([
    {"source": "spiffe://td/ns/default/sa/web", "destination": "db"},
    {"source": "spiffe://td/ns/default/sa/secret", "destination": "web"},
    {"source": "10.0.0.9:4711", "destination": "web"},
    {"source": "web", "destination": "vault"},
    {"source": "spiffe://td/odd", "destination": ""},
    7
  ])");
  HideUnreadable(&events, [](const std::string& s) { return s == "web" || s == "db"; });
  EXPECT_EQ(events[0]["source"], "spiffe://td/ns/default/sa/web");
  EXPECT_EQ(events[0]["destination"], "db");
  EXPECT_EQ(events[1]["source"], "(hidden)");
  EXPECT_EQ(events[2]["source"], "10.0.0.9:4711");  // an address, no service
  EXPECT_EQ(events[3]["destination"], "(hidden)");
  EXPECT_EQ(events[4]["source"], "(hidden)");  // an identity naming no service
  EXPECT_EQ(events[4]["destination"], "");
  EXPECT_EQ(events[5], 7);
}

}  // namespace
}  // namespace weft::control
