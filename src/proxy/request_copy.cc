#include "proxy/request_copy.h"

namespace weft::proxy {

void RequestCopy::Assign(const http::RequestHeaders& req, std::string_view authority,
                         std::string_view suffix, std::string_view b) {
  size_t n =
      req.method.size() + req.scheme.size() + authority.size() + suffix.size() + req.path.size();
  for (const auto& f : req.fields) n += f.name.size() + f.value.size();
  arena.clear();
  arena.reserve(n);
  auto keep = [this](std::string_view v) {
    const size_t at = arena.size();
    arena.append(v);
    return std::string_view(arena).substr(at, v.size());
  };
  head = {};
  head.method = keep(req.method);
  head.scheme = keep(req.scheme);
  if (!authority.empty()) {
    const std::string_view a = keep(authority);
    keep(suffix);
    head.authority = std::string_view(a.data(), a.size() + suffix.size());
  }
  head.path = keep(req.path);
  head.fields.reserve(req.fields.size());
  for (const auto& f : req.fields) head.fields.push_back({keep(f.name), keep(f.value)});
  head.body = req.body;
  head.content_length = req.content_length;
  head.version = req.version;
  if (req.has_body()) {
    body.assign(b);
  } else {
    body.clear();
  }
}

}  // namespace weft::proxy
