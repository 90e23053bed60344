// A proxy's configuration as the config stream delivers it: a
// StreamResponse's resources (listeners, route tables, clusters,
// endpoints, authorization policies, bundle, secret), in bytes a hostile or
// broken control plane could send. Every input is either refused with a
// reason (the proxy NACKs it) or becomes a config; never a crash.
#include <cstdint>
#include <memory>
#include <string>

#include "proxy/config.h"
#include "proxy/tls.h"
#include "weft/v1/config.pb.h"
#include "xds/proxy_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 * 1024) return 0;
  weft::v1::StreamResponse resp;
  if (!resp.ParseFromArray(data, static_cast<int>(size))) return 0;
  weft::xds::ResourceMap state;
  for (const auto& r : resp.resources())
    state[r.type() + "/" + r.name()] = std::make_shared<const weft::v1::Resource>(r);
  weft::proxy::ProxyConfig base;
  std::string error;
  auto cfg = weft::xds::ConfigFromResources(base, state, &error);
  if (!cfg && error.empty()) __builtin_trap();  // every refusal says why
  auto bundle = state.find("bundle/roots");
  auto secret = state.find("secret/workload");
  if (bundle != state.end() && secret != state.end()) {
    // The identity's PEM material, loaded as a worker would.
    if (auto id = weft::xds::IdentityFrom(bundle->second->bundle(), secret->second->secret())) {
      static const weft::proxy::TicketKeys keys = weft::proxy::TicketKeys::Random();
      std::string why;
      if (!weft::proxy::TlsContexts::Build(*id, keys, &why) && why.empty()) __builtin_trap();
    }
  }
  return 0;
}
