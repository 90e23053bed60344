// Turns the resources a proxy receives on the config stream (listeners,
// route tables, clusters, endpoints) into the same ProxyConfig a bootstrap
// file produces, so both paths share validation and the live-swap machinery.
#pragma once

#include <memory>
#include <string>

#include "control/stream_client.h"
#include "proxy/config.h"

namespace weft::proxy {

// `base` carries what the stream does not (admin address, workers, drain
// timeout). Returns nullptr with *error set when the resources do not make a
// valid config (the proxy NACKs it).
std::shared_ptr<const ProxyConfig> ConfigFromResources(const ProxyConfig& base,
                                                       const control::ResourceMap& state,
                                                       std::string* error);

}  // namespace weft::proxy
