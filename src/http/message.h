// The protocol-neutral message model of the request path. A request is a
// set of pseudo-headers (:method, :scheme, :authority, :path, RFC 9113
// 8.3.1) plus regular fields; a response is a status plus fields. Bodies and
// trailers are not part of a head: they arrive as events on a stream
// (http/stream.h). HTTP/1.1 maps onto it (request line and Host become the
// pseudo-headers); HTTP/2 carries it natively.
//
// Lifetimes: every view points into storage owned by the codec that decoded
// the head (its read buffer) or by whoever built it, and stays valid until
// that stream ends. Nothing here allocates beyond the field vector.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace weft::http {

struct HeaderField {
  std::string_view name;
  std::string_view value;
};
using HeaderList = std::vector<HeaderField>;

// How a message's body is delimited, in protocol-neutral terms.
enum class BodyKind : uint8_t {
  kNone,    // no body: the head ends the message
  kLength,  // exactly `content_length` bytes
  kStream,  // length unknown up front (HTTP/1.1 chunked or until close; HTTP/2 DATA frames)
};

enum class Version : uint8_t { kHttp10, kHttp11, kHttp2 };

struct RequestHeaders {
  std::string_view method;     // :method
  std::string_view scheme;     // :scheme
  std::string_view authority;  // :authority (HTTP/1.1: the Host field; may be empty)
  std::string_view path;       // :path as sent (HTTP/1.1: the request target, any form)
  // Regular fields as received. A codec that decoded HTTP/1.1 leaves its
  // connection-specific fields in (Connection, Keep-Alive, Transfer-Encoding,
  // TE, Upgrade, Proxy-Connection, and those the Connection field names);
  // every encoder drops them and writes its own framing.
  HeaderList fields;
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;  // kLength only
  Version version = Version::kHttp11;

  // Well-known facts the decoder found while parsing, so that no one scans
  // the field list again on the request path.
  std::string_view request_id;     // x-request-id
  std::string_view forwarded_for;  // x-forwarded-for
  std::string_view upgrade;        // the protocol asked for (Upgrade with Connection: upgrade)
  std::string_view connection;     // HTTP/1.1: the raw Connection value
  bool expect_continue = false;    // "Expect: 100-continue"
  bool keep_alive = true;          // the client will send another request on this connection

  bool has_body() const { return body != BodyKind::kNone; }
};

struct ResponseHeaders {
  int status = 0;
  std::string_view reason;  // HTTP/1.1 reason phrase as received; empty: the standard one
  HeaderList fields;        // as in RequestHeaders::fields
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  std::string_view connection;  // HTTP/1.1: the raw Connection value
  // The connection it came on can carry another exchange (HTTP/1.1
  // keep-alive and not delimited by close; always true for HTTP/2).
  bool reusable = true;

  bool interim() const { return status >= 100 && status < 200 && status != 101; }
};

// Why a stream ended without completing.
enum class ResetReason : uint8_t {
  kNone,
  kLocal,          // this side gave up (a filter, a drain, the proxy's own error)
  kRemote,         // the peer closed or reset the connection or the stream
  kTimeout,        // a deadline expired
  kProtocolError,  // the peer broke the protocol
  kOverflow,       // a limit was exceeded
};

// Connection-specific fields (RFC 9110 7.6.1, RFC 9113 8.2.2) that no
// encoder forwards as received.
bool IsConnectionSpecific(std::string_view name);
// Whether the Connection field value `connection` lists `name`.
bool NamedInConnection(std::string_view connection, std::string_view name);
// The Connection value when it names fields beyond close, keep-alive and
// upgrade (those are connection-specific anyway), as a view of `connection`
// itself; "" otherwise. A message with "" drops no field by name: one scan
// per message, not one per field.
std::string_view ExtraConnectionNames(std::string_view connection);
// Removes from `fields` those named by `connection` (HTTP/1.1), so that a
// proxy adding its own fields afterwards cannot have them dropped by the
// encoder. Returns true when the message named any.
bool DropConnectionNamed(std::string_view connection, HeaderList* fields);

}  // namespace weft::http
