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
  json t = s.Tap("tok", {}, "web", "", "", "", 0, 1000);
  EXPECT_NE(t["error"].get<std::string>().find("no sidecar of service web"), std::string::npos);
  EXPECT_TRUE(t["events"].empty());
  for (int i = 1; i < 16; ++i) s.Tap("tok", {}, "web", "r" + std::to_string(i), "", "", 0, 1000);
  t = s.Tap("tok", {}, "web", "one-more", "", "", 0, 1000);
  EXPECT_NE(t["error"].get<std::string>().find("too many taps"), std::string::npos) << t;
  // Another token has its own.
  t = s.Tap("other", {}, "web", "one-more", "", "", 0, 1000);
  EXPECT_EQ(t["error"].get<std::string>().find("too many taps"), std::string::npos) << t;
  // Past max_viewers, the least recently asked is forgotten.
  s.Tap("third", {}, "web", "", "", "", 0, 1001);
  s.Tap("fourth", {}, "web", "", "", "", 0, 1002);
  EXPECT_EQ(s.viewers(), 3u);
  // And idle ones go after viewer_idle_ms.
  s.Tap("fifth", {}, "web", "", "", "", 0, 1002 + UiLimits{}.viewer_idle_ms + 1);
  EXPECT_EQ(s.viewers(), 1u);
}

}  // namespace
}  // namespace weft::control
