// gRPC over HTTP/2, as far as a proxy needs it: telling a call from other
// traffic, its deadline (grpc-timeout), its outcome (grpc-status), and the
// errors the proxy itself answers a gRPC caller with (a trailers-only
// response: HTTP 200 with grpc-status and grpc-message, never a bare HTTP
// error status a gRPC client cannot read).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "http/message.h"

namespace weft::http::grpc {

// The status codes (grpc/doc/statuscodes.md numbering).
enum Code : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};
inline constexpr int kMaxCode = 16;

// "OK", "CANCELLED", ... for 0..16; "OTHER" for anything else.
const char* CodeName(int code);

// A gRPC call: content-type application/grpc (or application/grpc+...).
bool IsGrpc(const RequestHeaders& h);

// grpc-timeout ("1-8 digits" then H, M, S, m, u or n) in milliseconds,
// rounded up; -1 when absent or malformed (a malformed one is ignored, as
// gRPC servers do).
int64_t ParseTimeout(std::string_view v);
// The field value for `ms` milliseconds ("250m").
void FormatTimeout(int64_t ms, std::string* out);

// The grpc-status among `fields` (a trailers-only head, or trailers); -1
// when absent or not a number.
int StatusOf(const HeaderList& fields);

// The status the proxy answers a gRPC caller with, for the HTTP status it
// would have answered anyone else: 503 and 502 UNAVAILABLE, 504 and 408
// DEADLINE_EXCEEDED, 403 PERMISSION_DENIED, 401 UNAUTHENTICATED, 413, 429
// and 431 RESOURCE_EXHAUSTED, 404, 405 and 501 UNIMPLEMENTED, 400 INTERNAL,
// anything else UNKNOWN.
int CodeForHttpStatus(int status);
// The other way, for what counts a gRPC call's outcome like an HTTP answer
// (outlier detection, the balancer): OK 200, CANCELLED 499,
// INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE 400,
// DEADLINE_EXCEEDED 504, NOT_FOUND 404, ALREADY_EXISTS and ABORTED 409,
// PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429, UNIMPLEMENTED 501,
// UNAVAILABLE 503, UNAUTHENTICATED 401; UNKNOWN, INTERNAL, DATA_LOSS and
// anything else 500.
int HttpStatusForCode(int code);

// grpc-message is percent-encoded (RFC 3986 unreserved and printable ASCII
// but '%' kept). Appends to *out.
void EncodeMessage(std::string_view text, std::string* out);

}  // namespace weft::http::grpc
