// A request's head and body owned apart from the exchange they came from,
// for an attempt that outlives its moment in the exchange: a mirrored copy
// (mirror.h) or a hedge (hedge.h). Worker thread only.
#pragma once

#include <string>
#include <string_view>

#include "http/message.h"

namespace weft::proxy {

struct RequestCopy {
  // `req` with its authority replaced by `authority` + `suffix` (none when
  // `authority` is empty: the sender sets the endpoint's address), and
  // `body` when req.has_body(). Every view of `head` points into `arena`,
  // reserved to its final size first so that no append moves it.
  void Assign(const http::RequestHeaders& req, std::string_view authority, std::string_view suffix,
              std::string_view body);

  http::RequestHeaders head;
  std::string arena, body;
};

}  // namespace weft::proxy
