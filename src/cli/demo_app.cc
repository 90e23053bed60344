// `weft demo-app`: its flags, then demo::RunDemoApp.
#include "demo/demo_app.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/strings.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"

namespace weft::cli {
namespace {

constexpr const char* kDemoUsage =
    "weft demo-app --name NAME [--version V] [--listen ADDR] [--latency DUR] [--jitter DUR] "
    "[--error-rate 0..1] [--error-status 5xx] [--call HOST:PORT[/PATH]]... [--call-timeout DUR] "
    "[--admin ADDR]";

}  // namespace

int DemoMain(const Args& args) {
  demo::DemoOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v, err;
    auto duration = [&](const char* flag, int64_t* out) -> int {
      auto ms = ParseDurationMs(v);
      if (!ms || *ms < 0 || *ms > 3600 * 1000)
        return BadUsage(std::string(flag) + " \"" + v + "\": use a duration up to 1h", kDemoUsage);
      *out = *ms;
      return -1;
    };
    if (FlagValue(args, &i, "--name", &v)) {
      o.name = v;
    } else if (FlagValue(args, &i, "--version", &v)) {
      o.version = v;
    } else if (FlagValue(args, &i, "--listen", &v)) {
      o.listen = v;
    } else if (FlagValue(args, &i, "--latency", &v)) {
      if (int rc = duration("--latency", &o.latency_ms); rc >= 0) return rc;
    } else if (FlagValue(args, &i, "--jitter", &v)) {
      if (int rc = duration("--jitter", &o.jitter_ms); rc >= 0) return rc;
    } else if (FlagValue(args, &i, "--call-timeout", &v)) {
      if (int rc = duration("--call-timeout", &o.call_timeout_ms); rc >= 0) return rc;
    } else if (FlagValue(args, &i, "--error-rate", &v)) {
      char* end = nullptr;
      const double r = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || r < 0 || r > 1)
        return BadUsage("--error-rate \"" + v + "\": use a number from 0 to 1", kDemoUsage);
      o.error_rate = r;
    } else if (FlagValue(args, &i, "--error-status", &v)) {
      const int st = std::atoi(v.c_str());
      if (st < 500 || st > 599 || v.size() != 3)
        return BadUsage("--error-status \"" + v + "\": use 500 to 599", kDemoUsage);
      o.error_status = st;
    } else if (FlagValue(args, &i, "--admin", &v)) {
      o.admin = v;
    } else if (FlagValue(args, &i, "--call", &v)) {
      o.calls.push_back(v);
    } else if (LogLevelFlag(args, &i, &err)) {
      if (!err.empty()) return BadUsage(err, kDemoUsage);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n", kDemoUsage);
      return 0;
    } else {
      return BadUsage("demo-app: unknown or incomplete flag \"" + std::string(args[i]) + "\"",
                      kDemoUsage);
    }
  }
  return demo::RunDemoApp(o);
}

}  // namespace weft::cli
