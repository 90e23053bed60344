// The first bytes of a captured connection come from any application on the
// node: HTTP detection and Host extraction take anything, and what they
// return is always a plausible, normalised host. The input is also read as
// what follows the HTTP/2 preface, so that the frames and HPACK behind it
// are reached without the fuzzer having to find the preface first.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/sniff.h"

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

void CheckHost(const std::string& host, size_t in_size) {
  if (host.size() > in_size * 8) std::abort();  // Huffman codes are 5 bits or more
  for (char c : host) {
    if (c >= 'A' && c <= 'Z') std::abort();                // lower-cased
    if (c == ':' || c == '\r' || c == '\n') std::abort();  // no port, one line
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) std::abort();
  }
  if (!host.empty() && (host.back() == '.' || host.front() == '[')) std::abort();
}

// AuthorityOfHttp2Start's contract: a tri-state, a host exactly when 1, and
// a prefix of the bytes tells "more" or the same answer, never another one.
void CheckAuthority(std::string_view in, bool settings_sent) {
  std::string host;
  const int r = weft::proxy::AuthorityOfHttp2Start(in, &host, settings_sent);
  if (r < -1 || r > 1) std::abort();
  if ((r == 1) != !host.empty()) std::abort();
  CheckHost(host, in.size());
  std::string part;
  const int p =
      weft::proxy::AuthorityOfHttp2Start(in.substr(0, in.size() / 2), &part, settings_sent);
  if (p != 0 && (p != r || part != host)) std::abort();
}

// SettingsAckOfHttp2Start's: a tri-state, a whole ACK frame within the
// bytes when 1, and the same answer (or "more") for a prefix.
void CheckAck(std::string_view in) {
  size_t at = 0;
  const int r = weft::proxy::SettingsAckOfHttp2Start(in, &at);
  if (r < -1 || r > 1) std::abort();
  if (r == 1 && (at < kPreface.size() || at + 9 > in.size() || in[at + 3] != 4)) std::abort();
  size_t part = 0;
  const int p = weft::proxy::SettingsAckOfHttp2Start(in.substr(0, in.size() / 2), &part);
  if (p != 0 && (p != r || part != at)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const int h = weft::proxy::HttpRequestStart(in);
  if (h < -1 || h > 1) std::abort();
  const std::string host = weft::proxy::HostOfRequestHead(in);
  if (host.size() > in.size()) std::abort();
  CheckHost(host, in.size());
  if (!host.empty() && (host.front() == ' ' || host.back() == ' ')) std::abort();

  CheckAuthority(in, false);
  std::string h2(kPreface);
  h2.append(in);
  CheckAuthority(h2, false);
  CheckAuthority(h2, true);
  CheckAck(h2);
  return 0;
}
