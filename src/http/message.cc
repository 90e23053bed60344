#include "http/message.h"

#include <vector>

#include "base/strings.h"

namespace weft::http {

bool IsConnectionSpecific(std::string_view n) {
  switch (n.size()) {
    case 2:
      return IEquals(n, "te");
    case 7:
      return IEquals(n, "upgrade");
    case 10:
      return IEquals(n, "connection") || IEquals(n, "keep-alive");
    case 16:
      return IEquals(n, "proxy-connection");
    case 17:
      return IEquals(n, "transfer-encoding");
    default:
      return false;
  }
}

bool NamedInConnection(std::string_view connection, std::string_view name) {
  bool found = false;
  ForEachListElement(connection, [&](std::string_view t) { found |= IEquals(t, name); });
  return found;
}

std::string_view ExtraConnectionNames(std::string_view connection) {
  // The common values, without tokenizing.
  if (connection.empty() || IEquals(connection, "keep-alive") || IEquals(connection, "close")) {
    return {};
  }
  bool extra = false;
  ForEachListElement(connection, [&](std::string_view t) {
    extra |= !(IEquals(t, "close") || IEquals(t, "keep-alive") || IEquals(t, "upgrade"));
  });
  return extra ? connection : std::string_view();
}

bool DropConnectionNamed(std::string_view connection, HeaderList* fields) {
  const std::string_view named = ExtraConnectionNames(connection);
  if (named.empty()) return false;
  std::erase_if(*fields, [&](const HeaderField& f) {
    return !IsConnectionSpecific(f.name) && NamedInConnection(named, f.name);
  });
  return true;
}

}  // namespace weft::http
