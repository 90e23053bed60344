#include "http/grpc.h"

#include "base/strings.h"

namespace weft::http::grpc {

using namespace std::string_view_literals;

const char* CodeName(int code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  return code >= 0 && code <= kMaxCode ? kNames[code] : "OTHER";
}

bool IsGrpc(const RequestHeaders& h) {
  for (const HeaderField& f : h.fields) {
    if (f.name.size() != 12 || !IEquals(f.name, "content-type")) continue;
    const std::string_view v = f.value;
    if (v.size() < 16 || !IEquals(v.substr(0, 16), "application/grpc")) return false;
    return v.size() == 16 || v[16] == '+' || v[16] == ';';
  }
  return false;
}

int64_t ParseTimeout(std::string_view v) {
  if (v.size() < 2 || v.size() > 9) return -1;
  int64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  switch (v.back()) {
    case 'H':
      return n * 3600 * 1000;
    case 'M':
      return n * 60 * 1000;
    case 'S':
      return n * 1000;
    case 'm':
      return n;
    case 'u':
      return (n + 999) / 1000;
    case 'n':
      return (n + 999999) / 1000000;
    default:
      return -1;
  }
}

void FormatTimeout(int64_t ms, std::string* out) {
  out->clear();
  if (ms < 0) ms = 0;
  if (ms > 99999999) {  // 8 digits at most: whole seconds beyond
    AppendDecimal(out, static_cast<uint64_t>(ms / 1000));
    out->push_back('S');
    return;
  }
  AppendDecimal(out, static_cast<uint64_t>(ms));
  out->push_back('m');
}

int StatusOf(const HeaderList& fields) {
  for (const HeaderField& f : fields) {
    if (f.name != "grpc-status"sv) continue;
    if (f.value.empty() || f.value.size() > 6) return -1;
    int n = 0;
    for (char c : f.value) {
      if (c < '0' || c > '9') return -1;
      n = n * 10 + (c - '0');
    }
    return n;
  }
  return -1;
}

int HttpStatusForCode(int code) {
  switch (code) {
    case 0:
      return 200;
    case 1:
      return 499;
    case 3:
    case 9:
    case 11:
      return 400;
    case 4:
      return 504;
    case 5:
      return 404;
    case 6:
    case 10:
      return 409;
    case 7:
      return 403;
    case 8:
      return 429;
    case 12:
      return 501;
    case 14:
      return 503;
    case 16:
      return 401;
    default:
      return 500;
  }
}

int CodeForHttpStatus(int status) {
  switch (status) {
    case 502:
    case 503:
      return kUnavailable;
    case 504:
    case 408:
      return kDeadlineExceeded;
    case 403:
      return kPermissionDenied;
    case 401:
      return kUnauthenticated;
    case 413:
    case 429:
    case 431:
      return kResourceExhausted;
    case 404:
    case 405:
    case 501:
      return kUnimplemented;
    case 400:
      return kInternal;
    default:
      return kUnknown;
  }
}

void EncodeMessage(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out->push_back(static_cast<char>(c));
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
  }
}

}  // namespace weft::http::grpc
