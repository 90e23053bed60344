// Strict, zero-copy HTTP/1.1 message head parser and chunked body decoder
// (RFC 9112). The parser never copies: every view points into the caller's
// buffer and stays valid until the caller moves or discards those bytes.
//
// What it refuses (with the status a server should answer):
//  - bare LF line endings, obs-fold, whitespace between a field name and ':',
//    NUL/CR/LF/CTL bytes in names or values                             -> 400
//  - Content-Length together with Transfer-Encoding, several or malformed
//    Content-Length values ("+5", "0x10", "1_0", "5, 6")                  -> 400
//  - any Transfer-Encoding other than a final, single "chunked"          -> 400 (501 unknown
//  coding)
//  - a request line longer than limits.max_request_line                  -> 414
//  - a head larger than limits.max_header_bytes, or more than
//    limits.max_headers fields                                           -> 431
//  - an HTTP version other than 1.0 / 1.1                                -> 505
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"

namespace weft::http1 {

struct Limits {
  size_t max_request_line = 8 * 1024;
  size_t max_header_bytes = 64 * 1024;  // the whole head, request line included
  size_t max_headers = 100;
};

using Header = http::HeaderField;

enum class Framing : uint8_t {
  kNone,           // no body
  kContentLength,  // exactly content_length bytes
  kChunked,        // chunked transfer coding
  kUntilClose,     // response body delimited by the connection closing
};

enum class ParseResult : uint8_t { kComplete, kIncomplete, kError };

// A parse error: the status code to answer and a short human reason.
struct Error {
  int status = 0;
  // A string literal: valid for the program's life.
  std::string_view reason;
};

// Well-known fields found while parsing, so that the proxy never scans the
// header list twice on the request path.
struct Head {
  // Request: method and target. Response: status and reason.
  std::string_view method;
  std::string_view target;
  int status = 0;
  std::string_view reason;
  int version_minor = 1;  // HTTP/1.<minor>
  std::vector<Header> headers;

  Framing framing = Framing::kNone;
  uint64_t content_length = 0;
  size_t head_bytes = 0;  // bytes of the head, final CRLF included

  bool conn_close = false;       // "Connection: close"
  bool conn_keep_alive = false;  // "Connection: keep-alive"
  bool conn_upgrade = false;     // "Connection: upgrade"
  bool expect_continue = false;  // "Expect: 100-continue"
  bool has_te = false;           // any Transfer-Encoding field seen
  std::string_view upgrade;      // Upgrade field value
  std::string_view host;
  std::string_view x_request_id;
  std::string_view x_forwarded_for;
  std::string_view connection;  // raw Connection value (may name more hop-by-hop fields)

  void Reset();
  // True when the connection may carry another message after this one.
  bool KeepAlive() const {
    return version_minor >= 1 ? !conn_close : (conn_keep_alive && !conn_close);
  }
};

// Parses a request head from data[0, len). On kComplete, out->head_bytes says
// how many bytes the head took. On kIncomplete the caller reads more and calls
// again with the grown buffer; `scanned` keeps the cost linear across calls
// (pass the same variable each time, starting at 0). On kError, *err is set.
ParseResult ParseRequest(const char* data, size_t len, const Limits& limits, size_t* scanned,
                         Head* out, Error* err);

// Parses a response head. `request_method` decides whether a body follows
// (HEAD, and CONNECT 2xx, have none); 1xx, 204 and 304 never have one.
ParseResult ParseResponse(const char* data, size_t len, const Limits& limits, size_t* scanned,
                          std::string_view request_method, Head* out, Error* err);

// The reason phrase for a status code ("Unknown" for codes weft never sends),
// a string literal.
const char* ReasonPhrase(int status);

// True for tchar (RFC 9110 5.6.2).
bool IsTokenChar(unsigned char c);

// Incremental chunked-body decoder. Feed it bytes as they arrive; it hands out
// the payload spans and collects the trailer section. Keeps a reference to
// `limits`, which must outlive it.
class ChunkedDecoder {
 public:
  explicit ChunkedDecoder(const Limits& limits) : limits_(limits) {}

  // Consumes as much of data[0, len) as it can. Appends payload spans to *out
  // (views into `data`, valid as long as those bytes are).
  // Returns the number of bytes consumed, or -1 on a framing error (*err set).
  // Once Done(), further input is not consumed.
  long Feed(const char* data, size_t len, std::vector<std::string_view>* out, Error* err);

  bool Done() const { return state_ == State::kDone; }
  // Trailer fields, valid once Done(). Views into this decoder's own storage,
  // valid until Reset() or its destruction.
  const std::vector<Header>& trailers() const { return trailers_; }
  void Reset();

 private:
  enum class State : uint8_t {
    kSize,
    kExt,
    kSizeLF,
    kData,
    kDataCR,
    kDataLF,
    kTrailer,
    kDone,
  };
  enum class ExtState : uint8_t {
    kBeforeSemi,
    kBeforeName,
    kName,
    kAfterName,
    kBeforeValue,
    kToken,
    kQuoted,
    kQuotedEscape,
    kAfterValue,
  };
  bool FinishTrailers(Error* err);
  // Advances the chunk-extension grammar by one byte; false when invalid.
  // A CR is only accepted where the extension list may end.
  bool StepExtension(unsigned char c);

  const Limits& limits_;
  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  int size_digits_ = 0;
  size_t ext_len_ = 0;
  ExtState ext_state_ = ExtState::kBeforeSemi;
  std::string trailer_raw_;
  std::vector<Header> trailers_;
};

}  // namespace weft::http1
