// `weft proxy`: loads the bootstrap, runs the workers and the admin listener,
// reloads on SIGHUP / POST /reload, drains on SIGTERM.
#pragma once

#include <string>

namespace weft::proxy {

struct ProxyOptions {
  std::string config_path;
  bool validate_only = false;
};

// Runs until drained. Returns the process exit code: 0 after a clean drain,
// 2 for a config error, 1 for a runtime failure (e.g. a port in use).
int RunProxy(const ProxyOptions& opts);

}  // namespace weft::proxy
