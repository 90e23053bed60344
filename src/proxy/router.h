// Route matching for http listeners: first match wins.
#pragma once

#include <string_view>
#include <vector>

#include "http/message.h"
#include "proxy/config.h"

namespace weft::proxy {

// Returns the first route of `routes` that matches the request, or nullptr;
// it points into `routes` (the config's, valid while the config lives).
// The path is :path up to '?'; header values compare exactly,
// names case-insensitively.
const RouteConfig* MatchRoute(const std::vector<RouteConfig>& routes,
                              const http::RequestHeaders& req);

// The path part of a request target (origin-form or absolute-form): a view
// into `target`, or the literal "/" for an absolute-form without a path.
std::string_view RequestPath(std::string_view target);

}  // namespace weft::proxy
