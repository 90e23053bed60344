#include "proxy/sniff.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>

#include "base/strings.h"
#include "http/http2/wire.h"

namespace weft::proxy {
namespace {

// A Host value or an :authority, without surrounding whitespace: the mesh
// name it is (lower-case, no port, no trailing dot), or "" when it is none.
std::string NameOfHost(std::string_view v) {
  if (!v.empty() && v.front() == '[') {  // [v6]:port: no mesh name looks like this
    return "";
  }
  if (size_t colon = v.find(':'); colon != std::string_view::npos) v = v.substr(0, colon);
  if (!v.empty() && v.back() == '.') v.remove_suffix(1);  // the FQDN form
  if (!v.empty() && v.back() == '.') return "";           // "name.." is no name
  std::string host(v);
  for (auto& c : host) {
    // A name has no spaces or control bytes (a bare LF ends nothing in an
    // HTTP/1.x head: such a head is malformed, and no mesh name matches it).
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return "";
    c = AsciiLower(c);
  }
  return host;
}

// The frame types and flags of RFC 9113 6.
enum FrameType : uint8_t {
  kData = 0x0,
  kHeaders = 0x1,
  kPriority = 0x2,
  kRstStream = 0x3,
  kSettings = 0x4,
  kPushPromise = 0x5,
  kPing = 0x6,
  kGoaway = 0x7,
  kWindowUpdate = 0x8,
  kContinuation = 0x9,
};
constexpr uint8_t kFlagAck = 0x1;
constexpr uint8_t kFlagEndHeaders = 0x4;
constexpr uint8_t kFlagPadded = 0x8;
constexpr uint8_t kFlagPriority = 0x20;
constexpr size_t kFrameHeaderBytes = 9;
// The initial SETTINGS_MAX_FRAME_SIZE: the client has seen no SETTINGS of
// ours, so it may send no larger frame.
constexpr uint32_t kMaxFrameBytes = 16384;
// The decoded header list (RFC 9113 6.5.2: name + value + 32 per field) we
// decode before giving up: a few bytes of HPACK can name large table entries.
constexpr size_t kMaxHeaderListBytes = 64 * 1024;

struct InflaterDeleter {
  void operator()(nghttp2_hd_inflater* p) const { nghttp2_hd_inflate_del(p); }
};
using Inflater = std::unique_ptr<nghttp2_hd_inflater, InflaterDeleter>;

uint32_t Be24(const unsigned char* p) {
  return (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | uint32_t{p[2]};
}

// Decodes the next piece of a header block (`last`: its end), stopping at
// the first :authority or host field. 1: that field is a name, now in
// *host; 0: the piece is used up and the block goes on; -1: the field is no
// name, HPACK refused the piece, the list grew past its bound, or the block
// ended without such a field.
int Inflate(nghttp2_hd_inflater* inf, std::string_view piece, bool last, size_t* list_bytes,
            std::string* host) {
  const auto* in = reinterpret_cast<const uint8_t*>(piece.data());
  size_t left = piece.size();
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    const ssize_t used = nghttp2_hd_inflate_hd2(inf, &nv, &flags, in, left, last ? 1 : 0);
    if (used < 0) return -1;
    in += used;
    left -= static_cast<size_t>(used);
    if (flags & NGHTTP2_HD_INFLATE_EMIT) {
      *list_bytes += nv.namelen + nv.valuelen + 32;
      if (*list_bytes > kMaxHeaderListBytes) return -1;
      const std::string_view name(reinterpret_cast<const char*>(nv.name), nv.namelen);
      // Pseudo-header fields come first (RFC 9113 8.3): a `host` field
      // means the block has no :authority.
      if (name == ":authority" || name == "host") {
        *host = NameOfHost(std::string_view(reinterpret_cast<const char*>(nv.value), nv.valuelen));
        return host->empty() ? -1 : 1;
      }
    }
    if (flags & NGHTTP2_HD_INFLATE_FINAL) return -1;  // the whole block, no authority
    if (!(flags & NGHTTP2_HD_INFLATE_EMIT) && left == 0) return 0;
  }
}

int AuthorityOfFrames(std::string_view b, std::string* host, bool settings_sent) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  size_t pos = http2::kPreface.size();
  bool first = true;
  bool acked = false;         // the client's ACK of our SETTINGS came
  uint32_t block_stream = 0;  // while a header block is open: its stream
  Inflater inf;
  size_t list_bytes = 0;
  for (;;) {
    if (b.size() - pos < kFrameHeaderBytes) return 0;
    const uint32_t len = Be24(p + pos);
    const uint8_t type = p[pos + 3];
    const uint8_t flags = p[pos + 4];
    const uint32_t stream = ((uint32_t{p[pos + 5]} & 0x7f) << 24) | Be24(p + pos + 6);
    if (len > kMaxFrameBytes) return -1;
    pos += kFrameHeaderBytes;
    const size_t have = std::min<size_t>(len, b.size() - pos);
    const std::string_view payload = b.substr(pos, have);
    const bool whole = have == len;
    // The preface ends with SETTINGS (RFC 9113 3.4); a header block takes
    // nothing but its CONTINUATIONs (6.10).
    if (first && (type != kSettings || (flags & kFlagAck))) return -1;
    if (block_stream != 0 && (type != kContinuation || stream != block_stream)) return -1;
    first = false;
    switch (type) {
      case kSettings:
        if (stream != 0 || len % 6 != 0) return -1;
        if (flags & kFlagAck) {
          // Only of the one SETTINGS frame we sent, and empty (RFC 9113 6.5).
          if (!settings_sent || acked || len != 0) return -1;
          acked = true;
        }
        break;
      case kWindowUpdate:  // on the connection: no stream is open yet
        if (stream != 0 || len != 4) return -1;
        break;
      case kPriority:
        if (stream == 0 || len != 5) return -1;
        break;
      case kPing:
        if (stream != 0 || len != 8) return -1;
        break;
      case kHeaders:
      case kContinuation: {
        size_t begin = 0, end = len;  // the block fragment within the payload
        if (type == kHeaders) {
          if (stream == 0 || stream % 2 == 0) return -1;  // a client opens odd streams
          if (flags & kFlagPadded) {
            if (len == 0) return -1;  // no room for the pad length
            if (have == 0) return 0;
            const size_t pad = static_cast<unsigned char>(payload[0]);
            begin = 1;
            if (flags & kFlagPriority) begin += 5;
            if (begin + pad > len) return -1;  // padding past the fragment (6.2)
            end = len - pad;
          } else if (flags & kFlagPriority) {
            begin = 5;
            if (begin > len) return -1;
          }
          block_stream = stream;
          if (!inf) {
            nghttp2_hd_inflater* raw = nullptr;
            if (nghttp2_hd_inflate_new(&raw) != 0) return -1;
            inf.reset(raw);
          }
        } else if (block_stream == 0) {
          return -1;  // CONTINUATION with no HEADERS before it
        }
        const bool last = whole && (flags & kFlagEndHeaders);
        const size_t to = std::min(end, have);
        const std::string_view piece =
            begin < to ? payload.substr(begin, to - begin) : std::string_view();
        const int r = Inflate(inf.get(), piece, last, &list_bytes, host);
        if (r != 0 || last) return r == 0 ? -1 : r;
        break;
      }
      case kData:
      case kRstStream:
      case kPushPromise:
      case kGoaway:
        return -1;  // no stream is open, nor may a client push
      default:
        break;  // a frame of unknown type: ignored (RFC 9113 4.1)
    }
    if (!whole) return 0;
    pos += len;
  }
}

}  // namespace

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
      return NameOfHost(v);
    }
    pos = end;
  }
  return "";
}

int AuthorityOfHttp2Start(std::string_view bytes, std::string* host, bool settings_sent) {
  host->clear();
  const std::string_view preface = http2::kPreface;
  if (bytes.size() < preface.size()) return preface.substr(0, bytes.size()) == bytes ? 0 : -1;
  if (bytes.substr(0, preface.size()) != preface) return -1;
  const int r = AuthorityOfFrames(bytes, host, settings_sent);
  if (r != 1) host->clear();
  return r;
}

int SettingsAckOfHttp2Start(std::string_view b, size_t* at) {
  const std::string_view preface = http2::kPreface;
  if (b.size() < preface.size()) return preface.substr(0, b.size()) == b ? 0 : -1;
  if (b.substr(0, preface.size()) != preface) return -1;
  const auto* p = reinterpret_cast<const unsigned char*>(b.data());
  for (size_t pos = preface.size();;) {
    if (b.size() - pos < kFrameHeaderBytes) return 0;
    const uint32_t len = Be24(p + pos);
    // An empty SETTINGS raises no limit: the client's frames stay within
    // the initial SETTINGS_MAX_FRAME_SIZE.
    if (len > kMaxFrameBytes) return -1;
    if (p[pos + 3] == kSettings && (p[pos + 4] & kFlagAck)) {
      const uint32_t stream = ((uint32_t{p[pos + 5]} & 0x7f) << 24) | Be24(p + pos + 6);
      if (len != 0 || stream != 0) return -1;
      *at = pos;
      return 1;
    }
    if (b.size() - pos - kFrameHeaderBytes < len) return 0;
    pos += kFrameHeaderBytes + len;
  }
}

}  // namespace weft::proxy
