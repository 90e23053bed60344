// The resources a config-stream client holds, keyed "type/name": the one
// type the stream client (gRPC) and the proxy's config builder (protobuf
// only, so it builds and fuzzes without gRPC) share.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "weft/v1/config.pb.h"

namespace weft::xds {

using ResourceMap = std::map<std::string, std::shared_ptr<const weft::v1::Resource>>;

}  // namespace weft::xds
