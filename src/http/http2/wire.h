// The bytes of HTTP/2 that code outside the codec needs to recognise or
// send (connection sniffing, interception), apart from the codec so that
// it need not pull in the codec and libnghttp2.
#pragma once

#include <string_view>

namespace weft::http2 {

// The client connection preface (RFC 9113 3.4): how a plaintext listener
// tells HTTP/2 with prior knowledge from HTTP/1.1.
inline constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// The ALPN protocol name.
inline constexpr std::string_view kAlpn = "h2";
// An empty SETTINGS frame (RFC 9113 6.5): a server connection preface that
// changes no setting. The capture listener sends it to an HTTP/2 client
// that waits for the server's preface before its first request; the
// connection's ServerConnection then takes it as its own
// (ServerConnection::EmptySettingsSent).
inline constexpr std::string_view kEmptySettings{"\0\0\0\x04\0\0\0\0\0", 9};

}  // namespace weft::http2
