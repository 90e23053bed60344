// Sniffing a captured connection's first bytes (transparent interception):
// is it an HTTP/1.x request or an HTTP/2 connection with prior knowledge,
// and which host does its first request name. The bytes come from any
// application on the node, so all of these take anything (fuzzed).
#pragma once

#include <string>
#include <string_view>

namespace weft::proxy {

// 1: the bytes start an HTTP/1.x request; 0: too few bytes to tell; -1: not
// HTTP/1.x. CONNECT and the HTTP/2 preface count as not (the preface is
// AuthorityOfHttp2Start's).
int HttpRequestStart(std::string_view bytes);

// The Host of a (possibly partial) request head: lower-case, without its
// port or a trailing dot; "" when absent, after the end of the head, or an
// IPv6 literal.
std::string HostOfRequestHead(std::string_view head);

// The host the first request of an HTTP/2 connection with prior knowledge
// names, from the connection's first bytes: the preface, then the client's
// SETTINGS, any of SETTINGS, WINDOW_UPDATE, PRIORITY, PING and frames of
// unknown type, then the first HEADERS and its CONTINUATIONs, whose HPACK
// block is decoded up to its `:authority` (or, failing that, `host`).
//   1: *host holds it, normalised as HostOfRequestHead does;
//   0: the bytes are a prefix of such a start (the preface's own prefixes
//      included) and more of them may tell;
//  -1: not routable by name: not the preface, a frame a client may not
//      send first or past its bounds (16 KiB frames, padding, 64 KiB of
//      decoded header list), a block HPACK refuses, or a first request
//      without a usable authority (an IPv6 literal, no name).
// *host is "" unless 1. A field is taken as soon as it is decoded, so a
// block longer than what was read still gives its early authority.
// `settings_sent`: the client was sent a SETTINGS frame (capture.cc), so
// one SETTINGS ACK (empty) may come among its frames, after its own SETTINGS.
int AuthorityOfHttp2Start(std::string_view bytes, std::string* host, bool settings_sent = false);

// Where, in the first bytes of an HTTP/2 connection with prior knowledge
// that was sent one SETTINGS frame, the client's ACK of it starts:
//   1: *at is the offset of the first SETTINGS frame with the ACK flag
//      (its 9 bytes are the whole frame);
//   0: none among the whole frames so far, and more bytes may bring it;
//  -1: not such a start: not the preface, a frame past 16 KiB, or an ACK
//      with a payload or on a stream.
// *at is unchanged unless 1.
int SettingsAckOfHttp2Start(std::string_view bytes, size_t* at);

}  // namespace weft::proxy
