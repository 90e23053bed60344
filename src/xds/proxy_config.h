// Turns the resources a proxy receives on the config stream (listeners,
// route tables, clusters, endpoints) into the same ProxyConfig a bootstrap
// file produces, so both paths share validation and the live-swap machinery.
#pragma once

#include <memory>
#include <string>

#include "proxy/config.h"
#include "proxy/tls.h"
#include "xds/resources.h"

namespace weft::xds {

// `base` carries what the stream does not (admin address, workers, drain
// timeout). Returns nullptr with *error set when the resources do not make a
// valid config (the proxy NACKs it).
std::shared_ptr<const proxy::ProxyConfig> ConfigFromResources(const proxy::ProxyConfig& base,
                                                              const ResourceMap& state,
                                                              std::string* error);

// The identity material a bundle and a secret make (nullptr when either is
// incomplete).
std::shared_ptr<const proxy::MeshIdentity> IdentityFrom(const weft::v1::Bundle& bundle,
                                                        const weft::v1::Secret& secret);

}  // namespace weft::xds
