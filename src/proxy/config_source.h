// The control plane as the proxy sees it. A ConfigSource (the config-stream
// client, src/xds/) delivers whole configs and workload identities to the
// proxy's ConfigSink; the proxy never sees how they travelled (gRPC,
// protobuf), so nothing of the stream's transport reaches the data plane.
#pragma once

#include <memory>
#include <string>

#include "proxy/config.h"
#include "proxy/tls.h"

namespace weft::proxy {

struct ProxyOptions;

// Implemented by the proxy. Every method is thread-safe and may be called
// from any of the source's threads until the source's Stop() returns.
class ConfigSink {
 public:
  // A complete config to serve from now on (`version`: for logs). Blocks until
  // the proxy installed it or refused it; returns "" when installed, or the
  // reason it was refused (the source then NACKs and keeps its last state).
  virtual std::string Install(std::shared_ptr<const ProxyConfig> cfg,
                              const std::string& version) = 0;
  // The source could not build a config from what it received: counted as a
  // failed reload (the source NACKs with `reason`).
  virtual void Refused(const std::string& reason) = 0;
  // The workload identity to use for connections opened from now on; open
  // connections keep the one they started with. Identities arrive in order.
  virtual void SetIdentity(std::shared_ptr<const MeshIdentity> id) = 0;

 protected:
  ~ConfigSink() = default;
};

class ConfigSource {
 public:
  virtual ~ConfigSource() = default;
  // Starts delivering to `sink` from the source's own threads. `base` carries
  // what the source does not (admin address, workers, drain timeout) and
  // `admin`, the address the admin listener really bound ("" if none), is
  // reported to the servers. `sink` outlives the source.
  virtual void Start(ConfigSink* sink, std::shared_ptr<const ProxyConfig> base,
                     const std::string& admin) = 0;
  // After Stop() returns, no sink method is called again.
  virtual void Stop() = 0;
};

}  // namespace weft::proxy
