#include "proxy/router.h"

#include "base/strings.h"

namespace weft::proxy {

std::string_view RequestPath(std::string_view target) {
  if (!target.empty() && target[0] != '/') {
    // absolute-form: scheme://authority/path
    size_t scheme = target.find("://");
    if (scheme != std::string_view::npos) {
      size_t slash = target.find('/', scheme + 3);
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  size_t q = target.find_first_of("?#");
  return q == std::string_view::npos ? target : target.substr(0, q);
}

const RouteConfig* MatchRoute(const std::vector<RouteConfig>& routes,
                              const http::RequestHeaders& req) {
  const std::string_view path = RequestPath(req.path);
  for (const RouteConfig& r : routes) {
    if (!r.path.empty()) {
      if (path != r.path) continue;
    } else if (path.substr(0, r.prefix.size()) != r.prefix) {
      continue;
    }
    bool ok = true;
    for (const HeaderMatch& m : r.headers) {
      bool found = false;
      for (const http::HeaderField& h : req.fields) {
        if (IEquals(h.name, m.name) && h.value == m.value) {
          found = true;
          break;
        }
      }
      if (!found) {
        ok = false;
        break;
      }
    }
    if (ok) return &r;
  }
  return nullptr;
}

}  // namespace weft::proxy
