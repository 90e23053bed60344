#include "http/http1/parser.h"

#include <array>
#include <cstring>

#include "base/strings.h"

namespace weft::http1 {
namespace {

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
constexpr std::array<bool, 256> MakeTokenTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) t[c] = true;
  return t;
}
constexpr std::array<bool, 256> kTokenTable = MakeTokenTable();

// field-value bytes: VCHAR, SP, HTAB and obs-text; no CTLs, no DEL.
constexpr std::array<bool, 256> MakeValueTable() {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x100; ++c) t[c] = c != 0x7f;
  t['\t'] = true;
  return t;
}
constexpr std::array<bool, 256> kValueTable = MakeValueTable();

// field-vchar / SP / HTAB; obs-text (0x80-0xFF) is allowed, CTLs and DEL are not.
inline bool IsValueChar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }
// Request-target bytes: visible ASCII only.
inline bool IsTargetChar(unsigned char c) { return c > 0x20 && c < 0x7f; }

constexpr Error kErrBareLF{400, "bare LF line ending"};

// Finds whether the head that starts at `start` is complete. Returns the offset just past the empty
// line that ends it, 0 when more input is needed, or SIZE_MAX when a bare LF
// ends it (the full parse then reports the precise error).
size_t FindHeadEnd(const char* data, size_t len, size_t start, size_t* scanned) {
  size_t from = *scanned > 3 ? *scanned - 3 : 0;
  if (from < start) from = start;
  const char* p = data + from;
  const char* end = data + len;
  while (p < end) {
    const char* nl = static_cast<const char*>(memchr(p, '\n', static_cast<size_t>(end - p)));
    if (nl == nullptr) break;
    // An empty line: "\n\r\n" or "\n\n" (the latter is a bare-LF error).
    if (nl + 1 < end && nl[1] == '\n') return static_cast<size_t>(nl + 2 - data);
    if (nl + 2 < end && nl[1] == '\r' && nl[2] == '\n') return static_cast<size_t>(nl + 3 - data);
    p = nl + 1;
  }
  *scanned = len;
  return 0;
}

// Reads one CRLF-terminated line starting at *pos within [0, end). Sets *line
// to its content. Returns false with *err on a bare LF or missing terminator.
bool NextLine(const char* data, size_t end, size_t* pos, std::string_view* line, Error* err) {
  const char* start = data + *pos;
  const char* nl = static_cast<const char*>(memchr(start, '\n', end - *pos));
  if (nl == nullptr) {
    *err = {400, "malformed head"};
    return false;
  }
  if (nl == start || nl[-1] != '\r') {
    *err = kErrBareLF;
    return false;
  }
  *line = std::string_view(start, static_cast<size_t>(nl - 1 - start));
  *pos = static_cast<size_t>(nl + 1 - data);
  return true;
}

// Interprets the framing and connection fields after all lines are parsed.
bool ClassifyFields(Head* out, bool is_request, Error* err) {
  bool have_cl = false;
  for (const Header& h : out->headers) {
    const std::string_view n = h.name;
    switch (AsciiLower(n[0])) {
      case 'c':
        if (IEquals(n, "content-length")) {
          // Exactly one value of 1*DIGIT; "5, 6", "+5", "0x10" and repeats are refused.
          auto v = ParseDecimal(h.value);
          if (!v) {
            *err = {400, "invalid Content-Length"};
            return false;
          }
          if (have_cl) {
            *err = {400, "multiple Content-Length fields"};
            return false;
          }
          have_cl = true;
          out->content_length = *v;
        } else if (IEquals(n, "connection")) {
          out->connection = h.value;
          ForEachListElement(h.value, [&](std::string_view t) {
            if (IEquals(t, "close"))
              out->conn_close = true;
            else if (IEquals(t, "keep-alive"))
              out->conn_keep_alive = true;
            else if (IEquals(t, "upgrade"))
              out->conn_upgrade = true;
          });
        }
        break;
      case 't':
        if (IEquals(n, "transfer-encoding")) {
          if (out->has_te) {
            *err = {400, "multiple Transfer-Encoding fields"};
            return false;
          }
          out->has_te = true;
          if (!IEquals(h.value, "chunked")) {
            *err = {is_request ? 501 : 502,
                    "unsupported Transfer-Encoding (only a single chunked is accepted)"};
            if (h.value.empty()) err->status = 400;
            // A list such as "gzip, chunked" or "chunked, chunked" is refused too:
            // a proxy that re-frames bodies must not guess at codings.
            return false;
          }
        }
        break;
      case 'h':
        if (IEquals(n, "host")) {
          if (!out->host.empty() && is_request) {
            *err = {400, "multiple Host fields"};
            return false;
          }
          out->host = h.value;
        }
        break;
      case 'e':
        if (IEquals(n, "expect") && IEquals(h.value, "100-continue")) out->expect_continue = true;
        break;
      case 'u':
        if (IEquals(n, "upgrade")) out->upgrade = h.value;
        break;
      case 'x':
        if (IEquals(n, "x-request-id"))
          out->x_request_id = h.value;
        else if (IEquals(n, "x-forwarded-for"))
          out->x_forwarded_for = h.value;
        break;
      default:
        break;
    }
  }
  if (have_cl && out->has_te) {
    *err = {400, "both Content-Length and Transfer-Encoding"};
    return false;
  }
  if (out->has_te) {
    out->framing = Framing::kChunked;
  } else if (have_cl) {
    out->framing = out->content_length > 0 ? Framing::kContentLength : Framing::kNone;
  }
  return true;
}

bool ParseVersion(std::string_view v, Head* out, Error* err) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
      v[7] < '0' || v[7] > '9') {
    *err = {400, "malformed HTTP version"};
    return false;
  }
  if (v[5] != '1') {
    *err = {505, "HTTP version not supported"};
    return false;
  }
  out->version_minor = v[7] - '0';
  if (out->version_minor > 1) {
    *err = {505, "HTTP version not supported"};
    return false;
  }
  return true;
}

ParseResult ParseHeadCommon(const char* data, size_t len, const Limits& limits, size_t* scanned,
                            Head* out, Error* err, size_t* line_start, size_t* head_end) {
  // Skip at most a few empty lines before the start line (RFC 9112 2.2).
  size_t pos = 0;
  for (int i = 0; i < 4 && pos + 1 < len && data[pos] == '\r' && data[pos + 1] == '\n'; ++i) {
    pos += 2;
  }
  const char* start_nl = static_cast<const char*>(memchr(data + pos, '\n', len - pos));
  size_t line_len = start_nl ? static_cast<size_t>(start_nl - (data + pos)) : len - pos;
  if (line_len > limits.max_request_line) {
    *err = {414, "request line too long"};
    return ParseResult::kError;
  }
  // Search from the start line on: the empty lines skipped above must not
  // be taken for the end of the head.
  size_t end = FindHeadEnd(data, len, pos, scanned);
  if (end == 0) {
    if (len > limits.max_header_bytes) {
      *err = {431, "header section too large"};
      return ParseResult::kError;
    }
    return ParseResult::kIncomplete;
  }
  if (end > limits.max_header_bytes) {
    *err = {431, "header section too large"};
    return ParseResult::kError;
  }
  *line_start = pos;
  *head_end = end;
  out->Reset();
  out->head_bytes = end;
  return ParseResult::kComplete;
}

// Parses the field lines in data[pos, end) up to and including the empty
// line that must end exactly at `end`, in one pass: names against the token
// table, values against the field-value table, line ends checked in place.
bool ParseFields(const char* data, size_t pos, size_t end, const Limits& limits, Head* out,
                 Error* err) {
  const auto* p = reinterpret_cast<const unsigned char*>(data) + pos;
  const auto* e = reinterpret_cast<const unsigned char*>(data) + end;
  for (;;) {
    if (p >= e) {
      *err = {400, "malformed head"};
      return false;
    }
    if (*p == '\r') {
      if (p + 1 < e && p[1] == '\n') {
        if (p + 2 == e) return true;
        *err = {400, "malformed head"};
        return false;
      }
      *err = {400, "empty field line"};
      return false;
    }
    if (*p == '\n') {
      *err = kErrBareLF;
      return false;
    }
    if (*p == ' ' || *p == '\t') {
      *err = {400, "obsolete line folding"};
      return false;
    }
    const unsigned char* name = p;
    while (p < e && kTokenTable[*p]) ++p;
    if (p >= e || *p != ':') {
      if (p < e && (*p == ' ' || *p == '\t')) {
        *err = {400, "whitespace before colon in field name"};
      } else if (p >= e || *p == '\r' || *p == '\n') {
        *err = {400, "field line without colon"};
      } else {
        *err = {400, "invalid character in field name"};
      }
      return false;
    }
    if (p == name) {
      *err = {400, "empty field name"};
      return false;
    }
    const size_t name_len = static_cast<size_t>(p - name);
    const unsigned char* v = ++p;
    while (p < e && kValueTable[*p]) ++p;
    if (p + 1 >= e || *p != '\r' || p[1] != '\n') {
      *err = (p < e && *p == '\n') ? kErrBareLF : Error{400, "invalid character in field value"};
      return false;
    }
    if (out->headers.size() >= limits.max_headers) {
      *err = {431, "too many header fields"};
      return false;
    }
    out->headers.push_back(
        {std::string_view(reinterpret_cast<const char*>(name), name_len),
         TrimOws(std::string_view(reinterpret_cast<const char*>(v), static_cast<size_t>(p - v)))});
    p += 2;
  }
}

}  // namespace

bool IsTokenChar(unsigned char c) { return kTokenTable[c]; }

void Head::Reset() {
  method = target = reason = {};
  status = 0;
  version_minor = 1;
  headers.clear();
  framing = Framing::kNone;
  content_length = 0;
  head_bytes = 0;
  conn_close = conn_keep_alive = conn_upgrade = expect_continue = has_te = false;
  upgrade = host = x_request_id = x_forwarded_for = connection = {};
}

ParseResult ParseRequest(const char* data, size_t len, const Limits& limits, size_t* scanned,
                         Head* out, Error* err) {
  size_t pos = 0, end = 0;
  ParseResult r = ParseHeadCommon(data, len, limits, scanned, out, err, &pos, &end);
  if (r != ParseResult::kComplete) return r;

  std::string_view line;
  if (!NextLine(data, end, &pos, &line, err)) return ParseResult::kError;
  // method SP request-target SP HTTP-version, single spaces only.
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) {
    *err = {400, "malformed request line"};
    return ParseResult::kError;
  }
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1 ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    *err = {400, "malformed request line"};
    return ParseResult::kError;
  }
  out->method = line.substr(0, sp1);
  for (unsigned char c : out->method) {
    if (!kTokenTable[c]) {
      *err = {400, "invalid method"};
      return ParseResult::kError;
    }
  }
  out->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (unsigned char c : out->target) {
    if (!IsTargetChar(c)) {
      *err = {400, "invalid character in request target"};
      return ParseResult::kError;
    }
  }
  if (!ParseVersion(line.substr(sp2 + 1), out, err)) return ParseResult::kError;
  if (!ParseFields(data, pos, end, limits, out, err)) return ParseResult::kError;
  if (!ClassifyFields(out, true, err)) return ParseResult::kError;
  if (out->version_minor == 1 && out->host.empty()) {
    *err = {400, "missing Host field"};
    return ParseResult::kError;
  }
  // Only origin-form, absolute-form, "*" (OPTIONS) and authority-form (CONNECT).
  char t0 = out->target[0];
  if (t0 != '/' && !(out->target == "*" && out->method == "OPTIONS") && out->method != "CONNECT" &&
      out->target.find("://") == std::string_view::npos) {
    *err = {400, "invalid request target"};
    return ParseResult::kError;
  }
  return ParseResult::kComplete;
}

ParseResult ParseResponse(const char* data, size_t len, const Limits& limits, size_t* scanned,
                          std::string_view request_method, Head* out, Error* err) {
  size_t pos = 0, end = 0;
  ParseResult r = ParseHeadCommon(data, len, limits, scanned, out, err, &pos, &end);
  if (r != ParseResult::kComplete) {
    if (r == ParseResult::kError) err->status = 502;
    return r;
  }
  std::string_view line;
  if (!NextLine(data, end, &pos, &line, err)) {
    err->status = 502;
    return ParseResult::kError;
  }
  // HTTP-version SP 3DIGIT SP reason-phrase (a missing SP before an empty
  // reason is tolerated; many servers send it).
  if (line.size() < 12 || line[8] != ' ' || !ParseVersion(line.substr(0, 8), out, err)) {
    *err = {502, "malformed upstream status line"};
    return ParseResult::kError;
  }
  int status = 0;
  for (int i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') {
      *err = {502, "malformed upstream status code"};
      return ParseResult::kError;
    }
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100 || (line.size() > 12 && line[12] != ' ')) {
    *err = {502, "malformed upstream status line"};
    return ParseResult::kError;
  }
  out->status = status;
  out->reason = line.size() > 13 ? line.substr(13) : std::string_view();
  for (unsigned char c : out->reason) {
    if (!IsValueChar(c)) {
      *err = {502, "invalid character in upstream reason phrase"};
      return ParseResult::kError;
    }
  }
  if (!ParseFields(data, pos, end, limits, out, err) || !ClassifyFields(out, false, err)) {
    err->status = 502;
    return ParseResult::kError;
  }
  if (status < 200 || status == 204 || status == 304 || request_method == "HEAD" ||
      (request_method == "CONNECT" && status < 300)) {
    out->framing = Framing::kNone;
  } else if (!out->has_te && out->framing == Framing::kNone) {
    bool has_cl = false;
    for (const Header& h : out->headers) has_cl |= IEquals(h.name, "content-length");
    if (!has_cl) out->framing = Framing::kUntilClose;
  }
  return ParseResult::kComplete;
}

// ---------------------------------------------------------------------------
// Chunked decoding.

namespace {
inline int HexValue(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
constexpr size_t kMaxChunkExtBytes = 4096;
}  // namespace

void ChunkedDecoder::Reset() {
  state_ = State::kSize;
  remaining_ = 0;
  size_digits_ = 0;
  ext_len_ = 0;
  trailer_raw_.clear();
  trailers_.clear();
}

long ChunkedDecoder::Feed(const char* data, size_t len, std::vector<std::string_view>* out,
                          Error* err) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = static_cast<unsigned char>(data[i]);
    switch (state_) {
      case State::kSize: {
        int h = HexValue(c);
        if (h >= 0) {
          if (++size_digits_ > 15) {
            *err = {400, "chunk size too large"};
            return -1;
          }
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(h);
          ++i;
        } else if (size_digits_ > 0 && c == '\r') {
          state_ = State::kSizeLF;
          ++i;
        } else if (size_digits_ > 0 && (c == ';' || c == ' ' || c == '\t')) {
          state_ = State::kExt;
          ext_state_ = ExtState::kBeforeSemi;
          ext_len_ = 0;
        } else {
          *err = {400, "invalid chunk size"};
          return -1;
        }
        break;
      }
      case State::kExt: {
        // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
        if (++ext_len_ > kMaxChunkExtBytes) {
          *err = {400, "chunk extension too long"};
          return -1;
        }
        if (!StepExtension(c)) {
          *err = {400, "invalid chunk extension"};
          return -1;
        }
        if (c == '\r' && ext_state_ != ExtState::kQuoted) state_ = State::kSizeLF;
        ++i;
        break;
      }
      case State::kSizeLF:
        if (c != '\n') {
          *err = {400, "invalid chunk size line ending"};
          return -1;
        }
        ++i;
        size_digits_ = 0;
        if (remaining_ == 0) {
          state_ = State::kTrailer;
          trailer_raw_.clear();
        } else {
          state_ = State::kData;
        }
        break;
      case State::kData: {
        size_t take = len - i;
        if (take > remaining_) take = static_cast<size_t>(remaining_);
        out->emplace_back(data + i, take);
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::kDataCR;
        break;
      }
      case State::kDataCR:
        if (c != '\r') {
          *err = {400, "chunk data not followed by CRLF"};
          return -1;
        }
        state_ = State::kDataLF;
        ++i;
        break;
      case State::kDataLF:
        if (c != '\n') {
          *err = {400, "chunk data not followed by CRLF"};
          return -1;
        }
        state_ = State::kSize;
        ++i;
        break;
      case State::kTrailer: {
        // Collect the trailer section up to its empty line, then parse it.
        const char* nl = static_cast<const char*>(memchr(data + i, '\n', len - i));
        size_t take = nl ? static_cast<size_t>(nl - (data + i)) + 1 : len - i;
        if (trailer_raw_.size() + take > limits_.max_header_bytes) {
          *err = {431, "trailer section too large"};
          return -1;
        }
        trailer_raw_.append(data + i, take);
        i += take;
        if (nl != nullptr) {
          size_t n = trailer_raw_.size();
          bool line_empty = n == 2 || (n >= 3 && trailer_raw_[n - 3] == '\n');
          if (n == 1 || (n >= 2 && trailer_raw_[n - 2] != '\r')) {
            *err = kErrBareLF;
            return -1;
          }
          if (line_empty) {
            if (!FinishTrailers(err)) return -1;
            state_ = State::kDone;
            return static_cast<long>(i);
          }
        }
        break;
      }
      case State::kDone:
        return static_cast<long>(i);
    }
  }
  return static_cast<long>(i);
}

bool ChunkedDecoder::StepExtension(unsigned char c) {
  const bool ws = c == ' ' || c == '\t';
  const bool tok = IsTokenChar(c);
  auto go = [this](ExtState next) {
    ext_state_ = next;
    return true;
  };
  switch (ext_state_) {
    case ExtState::kBeforeSemi:
      return ws || (c == ';' && go(ExtState::kBeforeName));
    case ExtState::kBeforeName:
      return ws || (tok && go(ExtState::kName));
    case ExtState::kName:
    case ExtState::kAfterName:
      if (c == '\r' || (tok && ext_state_ == ExtState::kName)) return true;
      if (ws) return go(ExtState::kAfterName);
      if (c == ';') return go(ExtState::kBeforeName);
      return c == '=' && go(ExtState::kBeforeValue);
    case ExtState::kBeforeValue:
      if (ws) return true;
      if (c == '"') return go(ExtState::kQuoted);
      return tok && go(ExtState::kToken);
    case ExtState::kToken:
      if (tok || c == '\r') return true;
      if (ws) return go(ExtState::kAfterValue);
      return c == ';' && go(ExtState::kBeforeName);
    case ExtState::kQuoted:
      if (c == '"') return go(ExtState::kAfterValue);
      if (c == '\\') return go(ExtState::kQuotedEscape);
      return c == '\t' || (c >= 0x20 && c != 0x7f);
    case ExtState::kQuotedEscape:
      ext_state_ = ExtState::kQuoted;
      return c == '\t' || (c >= 0x20 && c != 0x7f);
    case ExtState::kAfterValue:
      if (ws || c == '\r') return true;
      return c == ';' && go(ExtState::kBeforeName);
  }
  return false;
}

bool ChunkedDecoder::FinishTrailers(Error* err) {
  trailers_.clear();
  Head tmp;
  size_t pos = 0;
  if (!ParseFields(trailer_raw_.data(), pos, trailer_raw_.size(), limits_, &tmp, err)) return false;
  for (const Header& h : tmp.headers) {
    // Framing and routing fields are never allowed in trailers.
    if (IEquals(h.name, "content-length") || IEquals(h.name, "transfer-encoding") ||
        IEquals(h.name, "host") || IEquals(h.name, "connection")) {
      continue;
    }
    trailers_.push_back(h);
  }
  return true;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace weft::http1
