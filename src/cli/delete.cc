// `weft delete KIND NAME`.
#include <cstdio>

#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "http/server.h"

namespace weft::cli {
namespace {

constexpr const char* kDeleteUsage = "weft delete KIND NAME [-n NAMESPACE] [--server URL]";

}  // namespace

int DeleteMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kDeleteUsage); rc >= 0) return rc;
  if (f.positional.size() != 2) return BadUsage("delete: expected KIND NAME", kDeleteUsage);
  std::string kind = CanonicalKind(f.positional[0]);
  if (kind.empty())
    return BadUsage("delete: unknown kind \"" + f.positional[0] + "\": use one of " + KindList(),
                    kDeleteUsage);
  http::Client c(ServerAddress(f.server), ApiClientOptions());
  auto r = c.Do("DELETE", "/v1/config/" + kind + "/" + http::PercentEncode(f.positional[1]) +
                              "?ns=" + http::PercentEncode(f.ns));
  if (!r.ok()) return Fail("delete: " + r.status().message());
  if (r->status != 200) return Fail(ApiError(r.value()));
  std::printf("%s %s/%s deleted\n", kind.c_str(), f.ns.c_str(), f.positional[1].c_str());
  return 0;
}

}  // namespace weft::cli
