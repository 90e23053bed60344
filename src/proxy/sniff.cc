#include "proxy/sniff.h"

#include <array>

#include "base/strings.h"

namespace weft::proxy {

int HttpRequestStart(std::string_view b) {
  static constexpr std::array<std::string_view, 7> kMethods = {
      "GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH "};
  bool maybe = false;
  for (std::string_view m : kMethods) {
    if (b.size() >= m.size()) {
      if (b.substr(0, m.size()) == m) return 1;
    } else if (m.substr(0, b.size()) == b) {
      maybe = true;
    }
  }
  return maybe ? 0 : -1;
}

std::string HostOfRequestHead(std::string_view head) {
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const size_t start = pos + 2;
    const size_t end = head.find("\r\n", start);
    std::string_view line =
        head.substr(start, end == std::string_view::npos ? head.size() - start : end - start);
    if (line.empty()) break;  // end of the head
    if (line.size() > 5 && AsciiLower(line[0]) == 'h' && AsciiLower(line[1]) == 'o' &&
        AsciiLower(line[2]) == 's' && AsciiLower(line[3]) == 't' && line[4] == ':') {
      std::string_view v = line.substr(5);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      if (!v.empty() && v.front() == '[') {  // [v6]:port: no mesh name looks like this
        return "";
      }
      if (size_t colon = v.find(':'); colon != std::string_view::npos) v = v.substr(0, colon);
      if (!v.empty() && v.back() == '.') v.remove_suffix(1);  // the FQDN form
      if (!v.empty() && v.back() == '.') return "";           // "name.." is no name
      std::string host(v);
      for (auto& c : host) {
        // A name has no spaces or control bytes (a bare LF ends nothing
        // here: such a head is malformed, and no mesh name matches it).
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return "";
        c = AsciiLower(c);
      }
      return host;
    }
    pos = end;
  }
  return "";
}

}  // namespace weft::proxy
