// `weft members`: the servers, agents and proxies a server knows of.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/ctl.h"
#include "cli/ctl_internal.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;

constexpr const char* kMembersUsage = "weft members [-o table|json] [--server URL]";

}  // namespace

int MembersMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kMembersUsage); rc >= 0) return rc;
  http::Client c(ServerAddress(f.server), ApiClientOptions());
  auto r = c.Do("GET", "/v1/agent/members");
  if (!r.ok()) return Fail("members: " + r.status().message());
  if (r->status != 200) return Fail(ApiError(r.value()));
  json j = json::parse(r->body, nullptr, false);
  if (!j.is_array()) return Fail("members: the server sent a body that is not a JSON list");
  if (f.output == "json") {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%-28s %-24s %-8s %-8s %s\n", "NAME", "ADDRESS", "ROLE", "STATUS", "DETAIL");
  for (const auto& m : j) {
    const json tags = m.value("Tags", json::object());
    std::printf("%-28s %-24s %-8s %-8s %s\n", m.value("Name", "").c_str(),
                (m.value("Addr", "") + ":" + std::to_string(m.value("Port", 0))).c_str(),
                tags.value("role", "").c_str(), m.value("Status", 0) == 1 ? "alive" : "left",
                tags.value("detail", "").c_str());
  }
  return 0;
}

}  // namespace weft::cli
