#include "control/config_view.h"

#include <gtest/gtest.h>

#include "mesh/manifest.h"

namespace weft::control {
namespace {

TEST(ConfigView, EntriesAndIndexes) {
  ConfigView v;
  auto m =
      mesh::ParseManifests("kind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n");
  ASSERT_TRUE(m.ok());
  std::string json = mesh::ToJson(m.value()[0]);
  v.Apply(ConfigKey("Service", "default", "web"), &json, 3, 3);
  ASSERT_NE(v.Find("Service", "default", "web"), nullptr);
  EXPECT_EQ(v.entry_index("Service", "default", "web"), 3);
  EXPECT_EQ(v.kind_index("Service"), 3);
  EXPECT_EQ(v.kind_index("Route"), 0);
  v.Apply(ConfigKey("Service", "default", "web"), nullptr, 7, 0);
  EXPECT_EQ(v.Find("Service", "default", "web"), nullptr);
  EXPECT_EQ(v.entry_index("Service", "default", "web"), 7);  // the kind's index
  EXPECT_TRUE(v.List("", "").empty());
}

}  // namespace
}  // namespace weft::control
