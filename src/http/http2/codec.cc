#include "http/http2/codec.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "base/strings.h"
#include "base/time.h"
#include "io/asio.h"
#include "io/stream.h"

namespace weft::http2 {

using namespace std::string_view_literals;

namespace {

constexpr size_t kReadSize = 16 * 1024;
constexpr size_t kWriteBatch = 64 * 1024;  // frames gathered into one write
// CONTINUATION frames after a HEADERS: 8 of 16 KiB carry any header list
// we accept; more is a flood (nghttp2 returns TOO_MANY_CONTINUATIONS).
constexpr size_t kMaxContinuations = 8;

// Offsets of one field in a stream's head storage (views are made once the
// block is complete: the storage may move while it grows).
struct FieldRef {
  uint32_t name_at, name_len, value_at, value_len;
};

std::string_view Sv(const uint8_t* p, size_t n) {
  return std::string_view(reinterpret_cast<const char*>(p), n);
}

nghttp2_nv Nv(std::string_view name, std::string_view value) {
  nghttp2_nv nv;
  nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
  nv.namelen = name.size();
  nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = NGHTTP2_NV_FLAG_NONE;  // the session copies both at submit
  return nv;
}

// What a peer sent, fit for a log line: printable ASCII, at most 200 bytes.
std::string Printable(std::string_view s) {
  constexpr size_t kMax = 200;
  std::string out;
  out.reserve(std::min(s.size(), kMax) + 3);
  for (char c : s.substr(0, kMax)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > kMax) out.append("...");
  return out;
}

// What a recycled stream keeps of a buffer's capacity: small heads and
// bodies are reused, a large one goes back to the heap.
constexpr size_t kKeepBytes = 4096;

template <typename T>
void Trim(T* buf) {
  buf->clear();
  if (buf->capacity() * sizeof(typename T::value_type) > kKeepBytes) T().swap(*buf);
}

// The session's allocator: a per-thread cache of small blocks. A session
// allocates and frees about a dozen blocks per request (stream and frame
// items, HPACK entries, copies of the fields submitted), more of each size
// at once than the heap's own per-thread cache keeps. Each block carries a
// 16-byte header with its size class. Classes are 32 bytes apart, so that a
// block wastes little (the session's own long-lived state is mostly in
// blocks of the heap's exact size, over the largest class). A thread keeps
// at most kPoolKeep blocks of each class (~1 MiB in all), so what a burst
// leaves behind is bounded.
namespace pool {

constexpr size_t kHeader = 16;   // keeps the heap's alignment
constexpr size_t kStep = 32;     // class k: blocks of (k + 1) * 32 bytes, header included
constexpr size_t kClasses = 32;  // up to 1 KiB
constexpr size_t kPoolKeep = kAsan ? 0 : 64;  // blocks kept per class and thread
constexpr unsigned char kLarge = 0xff;        // not of a class: straight to the heap
constexpr size_t ClassBytes(size_t k) { return (k + 1) * kStep; }

struct Cache {
  void* blocks[kClasses][kPoolKeep ? kPoolKeep : 1];
  uint32_t count[kClasses] = {};
  ~Cache();
};
thread_local bool gone = false;  // this thread's cache is destroyed (thread exit)
thread_local Cache cache;

Cache::~Cache() {
  gone = true;
  for (size_t k = 0; k < kClasses; ++k)
    for (uint32_t i = 0; i < count[k]; ++i) std::free(blocks[k][i]);
}

int ClassOf(size_t n) {
  if (n > ClassBytes(kClasses - 1) - kHeader) return -1;
  return static_cast<int>((n + kHeader - 1) / kStep);
}

void* Malloc(size_t n, void*) {
  // Under AddressSanitizer every block is the heap's, of its exact size.
  const int k = kAsan ? -1 : ClassOf(n);
  unsigned char* p = nullptr;
  if (k < 0) {
    if (n > SIZE_MAX - kHeader) return nullptr;
    p = static_cast<unsigned char*>(std::malloc(n + kHeader));
    if (!p) return nullptr;
    p[0] = kLarge;
    std::memcpy(p + 8, &n, sizeof n);
    return p + kHeader;
  }
  if (!gone && cache.count[k] > 0) {
    p = static_cast<unsigned char*>(cache.blocks[k][--cache.count[k]]);
  } else {
    p = static_cast<unsigned char*>(std::malloc(ClassBytes(k)));
    if (!p) return nullptr;
  }
  p[0] = static_cast<unsigned char>(k);
  return p + kHeader;
}

void Free(void* ptr, void*) {
  if (!ptr) return;
  unsigned char* p = static_cast<unsigned char*>(ptr) - kHeader;
  const unsigned char k = p[0];
  if (k == kLarge || gone || cache.count[k] == kPoolKeep) {
    std::free(p);
    return;
  }
  cache.blocks[k][cache.count[k]++] = p;
}

void* Calloc(size_t nmemb, size_t size, void* ud) {
  if (size && nmemb > SIZE_MAX / size) return nullptr;
  void* p = Malloc(nmemb * size, ud);
  if (p) std::memset(p, 0, nmemb * size);
  return p;
}

void* Realloc(void* ptr, size_t n, void* ud) {
  if (!ptr) return Malloc(n, ud);
  unsigned char* p = static_cast<unsigned char*>(ptr) - kHeader;
  size_t have;
  if (p[0] == kLarge) {
    std::memcpy(&have, p + 8, sizeof have);
  } else {
    have = ClassBytes(p[0]) - kHeader;
    if (n <= have) return ptr;
  }
  void* q = Malloc(n, ud);
  if (!q) return nullptr;
  std::memcpy(q, ptr, std::min(have, n));
  Free(ptr, ud);
  return q;
}

nghttp2_mem mem = {nullptr, Malloc, Free, Calloc, Realloc};

}  // namespace pool

// The read buffer of the thread's connections (see ReadLoop).
char* ThreadReadBuffer() {
  thread_local std::unique_ptr<char[]> buf;
  if (!buf) buf = std::make_unique<char[]>(kReadSize);
  return buf.get();
}

// A head back to its defaults, its field list keeping a small capacity.
template <typename Head>
void ResetKeepingFields(Head* h) {
  http::HeaderList fields = std::move(h->fields);
  Trim(&fields);
  *h = {};
  h->fields = std::move(fields);
}

}  // namespace

struct Connection::NvArray {
  std::vector<nghttp2_nv> v;
};

// ---- One stream, both roles ----

class StreamBase {
 public:
  explicit StreamBase(Connection* c)
      : c_(c),
        recv_signal_(c->io_.socket().get_executor()),
        send_signal_(c->io_.socket().get_executor()) {
    recv_signal_.expires_at(asio::steady_timer::time_point::max());
    send_signal_.expires_at(asio::steady_timer::time_point::max());
  }
  virtual ~StreamBase() = default;

  // Back to a new stream's state, keeping small buffers (a connection
  // reuses its streams: Connection::Remove, Connection::Spare).
  virtual void Recycle() {
    id_ = -1;
    Trim(&harena_);
    Trim(&tarena_);
    Trim(&cookie_);
    Trim(&refs_);
    block_bytes_ = 0;
    overflow_ = head_final_ = head_ready_ = false;
    Trim(&trailers_);
    Trim(&recv_);
    Trim(&handed_);
    handed_n_ = 0;
    span_[0] = {};
    recv_end_ = body_done_ = false;
    Trim(&out_);
    out_off_ = 0;
    out_end_ = sent_end_ = deferred_ = false;
    out_trailers_.clear();
    reset_ = false;
    reason_ = http::ResetReason::kNone;
    error_code_ = 0;
    closed_ = released_ = queued_ = false;
    recv_waiting_ = send_waiting_ = recv_cancel_ = send_cancel_ = false;
    prev_ = next_ = nullptr;
  }

  // -- Head blocks, as the session's callbacks deliver them --
  void BeginBlock() {
    auto& arena = head_final_ ? tarena_ : harena_;
    arena.clear();
    refs_.clear();
    block_bytes_ = 0;
    overflow_ = false;
  }
  // False when the block is over the size limit.
  bool AddField(std::string_view name, std::string_view value, uint32_t limit) {
    block_bytes_ += name.size() + value.size() + 32;  // RFC 9113 6.5.2
    if (block_bytes_ > limit) return false;
    auto& arena = head_final_ ? tarena_ : harena_;
    FieldRef r;
    r.name_at = static_cast<uint32_t>(arena.size());
    r.name_len = static_cast<uint32_t>(name.size());
    arena.append(name);
    r.value_at = static_cast<uint32_t>(arena.size());
    r.value_len = static_cast<uint32_t>(value.size());
    arena.append(value);
    refs_.push_back(r);
    return true;
  }
  // The fields of the block just completed, pseudo-headers handed to `pseudo`.
  template <typename F>
  void EndBlock(http::HeaderList* fields, F&& pseudo) {
    const std::string& arena = head_final_ ? tarena_ : harena_;
    fields->clear();
    fields->reserve(refs_.size() + 1);
    size_t cookies = 0;
    for (const FieldRef& r : refs_) {
      const std::string_view n(arena.data() + r.name_at, r.name_len);
      const std::string_view v(arena.data() + r.value_at, r.value_len);
      if (!n.empty() && n[0] == ':') {
        pseudo(n, v);
      } else if (n == "cookie"sv) {
        ++cookies;
        fields->push_back({n, v});
      } else {
        fields->push_back({n, v});
      }
    }
    if (cookies > 1) JoinCookies(fields);
  }
  // RFC 9113 8.2.3: crumbs are joined with "; " before they reach anyone
  // who might speak HTTP/1.1.
  void JoinCookies(http::HeaderList* fields) {
    cookie_.clear();
    for (const auto& f : *fields) {
      if (f.name != "cookie"sv) continue;
      if (!cookie_.empty()) cookie_.append("; "sv);
      cookie_.append(f.value);
    }
    std::erase_if(*fields, [](const http::HeaderField& f) { return f.name == "cookie"sv; });
    fields->push_back({"cookie"sv, cookie_});
  }

  // -- Receiving body --
  void OnData(std::string_view d) { recv_.append(d); }
  void GiveBack() {
    if (handed_n_ && id_ > 0) c_->Consume(id_, handed_n_);
    handed_n_ = 0;
  }
  bool TryRead(http::BodyEvent* ev) {
    GiveBack();
    if (reset_) {
      *ev = {};
      ev->kind = http::BodyEvent::kReset;
      ev->reason = reason_;
      return true;
    }
    if (recv_.empty() && !recv_end_) return false;
    if (body_done_) {
      *ev = {};
      ev->kind = http::BodyEvent::kReset;
      ev->reason = http::ResetReason::kLocal;
      return true;
    }
    handed_.clear();
    handed_.swap(recv_);
    handed_n_ = handed_.size();
    span_[0] = handed_;
    *ev = {};
    ev->data = std::span<const std::string_view>(span_, handed_.empty() ? 0 : 1);
    ev->end = recv_end_;
    if (recv_end_) {
      body_done_ = true;
      ev->trailers = &trailers_;
    }
    return true;
  }
  asio::awaitable<http::BodyEvent> Read() {
    http::BodyEvent ev;
    for (;;) {
      if (TryRead(&ev)) co_return ev;
      recv_waiting_ = true;
      co_await recv_signal_.async_wait(kNoThrow);
      recv_waiting_ = false;
      if (recv_cancel_) {
        recv_cancel_ = false;
        ev = {};
        ev.kind = http::BodyEvent::kReset;
        ev.reason = http::ResetReason::kTimeout;
        co_return ev;
      }
    }
  }
  // See http::ServerStream::CancelWaits.
  void CancelWaits() {
    if (recv_waiting_) {
      recv_cancel_ = true;
      recv_signal_.cancel();
    }
    if (send_waiting_) {
      send_cancel_ = true;
      send_signal_.cancel();
    }
  }

  // -- Sending body --
  // Queues `data` (and the end, with trailers) for the session's data
  // source: first waits while the connection's streams hold
  // connection_send_buffer, then while this one holds over send_buffer.
  asio::awaitable<bool> Send(std::span<const std::string_view> data, bool end,
                             const http::HeaderList* trailers) {
    if (reset_ || out_end_ || closed_) co_return false;
    size_t add = 0;
    for (std::string_view d : data) add += d.size();
    bool queued = false;
    for (;;) {
      if (reset_ || closed_) co_return queued && !reset_;
      if (!queued) {
        // The connection's cap: while its streams together hold it, wait
        // before queueing more.
        if (add == 0 || c_->queued_ < c_->settings_.connection_send_buffer) {
          Queue(data, add, end, trailers);
          queued = true;
          continue;
        }
        c_->send_blocked_ = true;
      } else if (out_.size() - out_off_ <= c_->settings_.send_buffer) {
        co_return true;
      }
      send_waiting_ = true;
      co_await send_signal_.async_wait(kNoThrow);
      send_waiting_ = false;
      if (send_cancel_) {
        send_cancel_ = false;
        co_return false;
      }
    }
  }
  void Queue(std::span<const std::string_view> data, size_t add, bool end,
             const http::HeaderList* trailers) {
    for (std::string_view d : data) out_.append(d);
    c_->queued_ += add;
    if (end) {
      out_end_ = true;
      if (trailers && !trailers->empty()) {
        out_trailers_.clear();
        for (const auto& f : *trailers) {
          if (http::IsConnectionSpecific(f.name)) continue;
          std::string name(f.name);
          for (char& ch : name) ch = AsciiLower(ch);
          out_trailers_.emplace_back(std::move(name), std::string(f.value));
        }
      }
    }
    Resume();
  }
  // The data source has more to take: tell the session.
  void Resume() {
    if (deferred_ && id_ > 0) {
      deferred_ = false;
      nghttp2_session_resume_data(c_->session_, id_);
    }
    c_->Kick();
  }
  // The session's data source callback.
  ssize_t Produce(uint8_t* buf, size_t length, uint32_t* flags) {
    const size_t avail = out_.size() - out_off_;
    const size_t n = std::min(avail, length);
    if (n) {
      std::memcpy(buf, out_.data() + out_off_, n);
      out_off_ += n;
      c_->Dequeued(n);
      if (out_off_ == out_.size()) {
        out_.clear();
        out_off_ = 0;
      } else if (out_off_ >= 32 * 1024) {
        out_.erase(0, out_off_);
        out_off_ = 0;
      }
      if (out_.size() - out_off_ <= c_->settings_.send_buffer) send_signal_.cancel();
    }
    if (out_end_ && out_.size() == out_off_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      sent_end_ = true;
      send_signal_.cancel();
      if (!out_trailers_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv>& nva = c_->nva_->v;
        nva.clear();
        for (const auto& [k, v] : out_trailers_) nva.push_back(Nv(k, v));
        nghttp2_submit_trailer(c_->session_, id_, nva.data(), nva.size());
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }
  nghttp2_data_provider Provider() {
    nghttp2_data_provider p;
    p.source.ptr = this;
    p.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
      return static_cast<StreamBase*>(src->ptr)->Produce(buf, length, flags);
    };
    return p;
  }

  // -- Ending --
  // The protocol is done with the stream (RST_STREAM either way, or both
  // ends closed).
  void OnClose(uint32_t code) {
    closed_ = true;
    // A reader that has not seen the end sees a reset; a sender sees closed_.
    if (code != NGHTTP2_NO_ERROR || !recv_end_) {
      MarkReset(code);
    } else {
      Wake();
    }
  }
  void MarkReset(uint32_t code) {
    if (reset_) return;
    reset_ = true;
    error_code_ = code;
    switch (code) {
      case NGHTTP2_PROTOCOL_ERROR:
      case NGHTTP2_COMPRESSION_ERROR:
      case NGHTTP2_FLOW_CONTROL_ERROR:
      case NGHTTP2_FRAME_SIZE_ERROR:
        reason_ = http::ResetReason::kProtocolError;
        break;
      default:
        reason_ = http::ResetReason::kRemote;
        break;
    }
    Wake();
  }
  void Wake() {
    recv_signal_.cancel();
    send_signal_.cancel();
  }
  // This side abandons the stream.
  void ResetLocal(http::ResetReason r) {
    uint32_t code = NGHTTP2_CANCEL;
    switch (r) {
      case http::ResetReason::kNone:
        code = NGHTTP2_NO_ERROR;
        break;
      case http::ResetReason::kProtocolError:
        code = NGHTTP2_PROTOCOL_ERROR;
        break;
      case http::ResetReason::kOverflow:
        code = NGHTTP2_ENHANCE_YOUR_CALM;
        break;
      default:
        break;
    }
    if (!closed_ && id_ > 0 && !c_->dead_) {
      c_->NoteLocalReset(id_);
      nghttp2_submit_rst_stream(c_->session_, NGHTTP2_FLAG_NONE, id_, code);
      c_->Kick();
    }
    if (!reset_) {
      reset_ = true;
      reason_ = r == http::ResetReason::kNone ? http::ResetReason::kLocal : r;
    }
    Wake();
  }
  // Nobody will read the rest: it goes back to the peer's window at once.
  void Abandon() {
    GiveBack();
    if (!recv_.empty() && id_ > 0) c_->Consume(id_, recv_.size());
    recv_.clear();
    handed_.clear();
  }

  Connection* const c_;
  StreamBase *prev_ = nullptr, *next_ = nullptr;  // the connection's list of streams
  int32_t id_ = -1;
  asio::steady_timer recv_signal_, send_signal_;
  // Head storage: the current (or final) head, and the trailers.
  std::string harena_, tarena_, cookie_;
  std::vector<FieldRef> refs_;
  size_t block_bytes_ = 0;
  bool overflow_ = false;    // the block being received is over the size limit
  bool head_final_ = false;  // the final head is complete: a next block is trailers
  bool head_ready_ = false;  // a head waits to be taken (client side)
  http::HeaderList trailers_;
  // Body received.
  std::string recv_, handed_;
  size_t handed_n_ = 0;
  std::string_view span_[1];
  bool recv_end_ = false;
  bool body_done_ = false;  // the end was handed out
  // Body to send.
  std::string out_;
  size_t out_off_ = 0;
  bool out_end_ = false;
  bool sent_end_ = false;
  bool deferred_ = false;
  std::vector<std::pair<std::string, std::string>> out_trailers_;
  // State.
  bool reset_ = false;
  http::ResetReason reason_ = http::ResetReason::kNone;
  uint32_t error_code_ = 0;
  bool closed_ = false;    // the session is done with it
  bool released_ = false;  // the user is done with it
  bool queued_ = false;    // server: its head was complete and queued for NextStream
  bool recv_waiting_ = false, send_waiting_ = false;  // a reader / sender is suspended
  bool recv_cancel_ = false, send_cancel_ = false;    // ... and is to fail (CancelWaits)
};

namespace {

// Fields whose value differs in every message (an id). Indexing them in
// HPACK's dynamic table (RFC 7541 2.3.2) would buy nothing and evict what
// repeats, and every one of them in the table lengthens the encoder's search
// for the next: they are sent as literals that are never indexed.
bool UniquePerMessage(std::string_view lower_name) {
  switch (lower_name.size()) {
    case 11:
      return lower_name == "traceparent"sv || lower_name == "x-b3-spanid"sv;
    case 12:
      return lower_name == "x-request-id"sv || lower_name == "x-b3-traceid"sv;
    case 17:
      return lower_name == "x-b3-parentspanid"sv;
    default:
      return false;
  }
}

// Encodes head fields for HTTP/2: lower-case names, no connection-specific
// fields, content-length only for a known length, TE only as "trailers".
void EncodeFields(const http::HeaderList& fields, http::BodyKind body, bool request,
                  std::string* scratch, std::vector<nghttp2_nv>* nva) {
  // Names that need lower-casing are copied into `scratch`, reserved up
  // front so that views into it stay put.
  size_t names = 0;
  for (const auto& f : fields) names += f.name.size();
  scratch->clear();
  scratch->reserve(names);
  for (const auto& f : fields) {
    std::string_view n = f.name;
    if (n.empty()) continue;
    if (n.size() == 2 && IEquals(n, "te")) {
      if (IEquals(TrimOws(f.value), "trailers")) nva->push_back(Nv("te"sv, "trailers"sv));
      continue;
    }
    if (http::IsConnectionSpecific(n)) continue;
    if (n.size() == 4 && IEquals(n, "host")) continue;  // :authority carries it
    if (n.size() == 14 && IEquals(n, "content-length") && body == http::BodyKind::kStream) continue;
    if (request && n.size() == 14 && IEquals(n, "http2-settings")) continue;
    if (HasUpper(n)) {
      const size_t at = scratch->size();
      for (char c : n) scratch->push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
      n = std::string_view(scratch->data() + at, n.size());
    }
    nghttp2_nv nv = Nv(n, f.value);
    if (UniquePerMessage(n)) nv.flags = NGHTTP2_NV_FLAG_NO_INDEX;
    nva->push_back(nv);
  }
}

}  // namespace

// ---- The session's callbacks ----

struct Callbacks {
  static Connection* C(void* ud) { return static_cast<Connection*>(ud); }
  static StreamBase* S(nghttp2_session* s, int32_t id) {
    return static_cast<StreamBase*>(nghttp2_session_get_stream_user_data(s, id));
  }

  static int OnBeginHeaders(nghttp2_session* s, const nghttp2_frame* f, void* ud);
  static int OnHeader(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name, size_t nlen,
                      const uint8_t* value, size_t vlen, uint8_t flags, void* ud);
  static int OnFrameRecv(nghttp2_session* s, const nghttp2_frame* f, void* ud);
  static int OnDataChunk(nghttp2_session* s, uint8_t flags, int32_t id, const uint8_t* data,
                         size_t len, void* ud);
  static int OnStreamClose(nghttp2_session* s, int32_t id, uint32_t code, void* ud);
  static int OnBeginFrame(nghttp2_session* s, const nghttp2_frame_hd* hd, void* ud);
  static int OnFrameSend(nghttp2_session* s, const nghttp2_frame* f, void* ud);
  static int OnFrameNotSend(nghttp2_session* s, const nghttp2_frame* f, int error, void* ud);
  static int OnInvalidFrameRecv(nghttp2_session* s, const nghttp2_frame* f, int error, void* ud);
  static int OnError(nghttp2_session* s, int error, const char* msg, size_t len, void* ud);
  // The session sent (or dropped) a RST_STREAM: false when it was ours.
  static bool TakeLocalReset(Connection* c, int32_t id);
  // A request head over max_header_list_bytes: 431, and the rest of the
  // request is dropped.
  static void RefuseHead(Connection* c, StreamBase* st, bool end_stream);
};

// Server side: request heads and bodies; client side: response heads.
class ServerStreamImpl;
class ClientStreamImpl;

class ServerStreamImpl final : public StreamBase, public http::ServerStream {
 public:
  explicit ServerStreamImpl(ServerConnection* c) : StreamBase(c) {}

  void FinishHead(bool end_stream) {
    std::string_view host;
    EndBlock(&req_.fields, [&](std::string_view n, std::string_view v) {
      if (n == ":method"sv) {
        req_.method = v;
      } else if (n == ":scheme"sv) {
        req_.scheme = v;
      } else if (n == ":authority"sv) {
        req_.authority = v;
      } else if (n == ":path"sv) {
        req_.path = v;
      }
    });
    req_.version = http::Version::kHttp2;
    req_.keep_alive = true;
    req_.body = end_stream ? http::BodyKind::kNone : http::BodyKind::kStream;
    for (const auto& f : req_.fields) {
      const std::string_view n = f.name;
      if (n == "content-length"sv && !end_stream) {
        uint64_t len = 0;
        const auto [p, ec] = std::from_chars(f.value.data(), f.value.data() + f.value.size(), len);
        if (ec == std::errc() && p == f.value.data() + f.value.size()) {
          req_.body = http::BodyKind::kLength;
          req_.content_length = len;
        }
      } else if (n == "host"sv) {
        host = f.value;
      } else if (n == "x-request-id"sv) {
        req_.request_id = f.value;
      } else if (n == "x-forwarded-for"sv) {
        req_.forwarded_for = f.value;
      }
    }
    if (req_.authority.empty()) req_.authority = host;
    head_final_ = true;
    if (end_stream) recv_end_ = true;
  }

  // http::ServerStream
  const http::RequestHeaders& request() const override { return req_; }
  asio::awaitable<http::BodyEvent> ReadBody() override { return Read(); }
  bool TryReadBody(http::BodyEvent* ev) override { return TryRead(ev); }
  asio::awaitable<bool> SendInterim(const http::ResponseHeaders& h) override {
    co_return SubmitHead(h, /*end=*/false, /*interim=*/true);
  }
  asio::awaitable<bool> SendHeaders(const http::ResponseHeaders& h, bool end_stream) override {
    co_return SubmitHead(h, end_stream, false);
  }
  bool QueueHeaders(const http::ResponseHeaders& h) override { return SubmitHead(h, false, false); }
  asio::awaitable<bool> SendBody(std::span<const std::string_view> data, bool end_stream,
                                 const http::HeaderList* trailers) override {
    return Send(data, end_stream, trailers);
  }
  void Reset(http::ResetReason r) override { ResetLocal(r); }
  void CancelWaits() override { StreamBase::CancelWaits(); }
  io::Stream* TakeTunnel(std::string_view*) override { return nullptr; }

  bool SubmitHead(const http::ResponseHeaders& h, bool end, bool interim) {
    if (reset_ || c_->dead_) return false;
    char status[4];
    const int st = std::clamp(h.status, 100, 999);
    status[0] = static_cast<char>('0' + st / 100);
    status[1] = static_cast<char>('0' + st / 10 % 10);
    status[2] = static_cast<char>('0' + st % 10);
    std::vector<nghttp2_nv>& nva = c_->nva_->v;
    nva.clear();
    nva.push_back(Nv(":status"sv, std::string_view(status, 3)));
    EncodeFields(h.fields, h.body, false, &c_->scratch_, &nva);
    int rv;
    if (interim) {
      rv = nghttp2_submit_headers(c_->session_, NGHTTP2_FLAG_NONE, id_, nullptr, nva.data(),
                                  nva.size(), nullptr);
    } else if (end) {
      out_end_ = true;
      sent_end_ = true;
      rv = nghttp2_submit_response(c_->session_, id_, nva.data(), nva.size(), nullptr);
    } else {
      const nghttp2_data_provider p = Provider();
      rv = nghttp2_submit_response(c_->session_, id_, nva.data(), nva.size(), &p);
    }
    c_->Kick();
    return rv == 0;
  }

  void Recycle() override {
    StreamBase::Recycle();
    ResetKeepingFields(&req_);
  }

  http::RequestHeaders req_;
};

class ClientStreamImpl final : public StreamBase, public http::ClientStream {
 public:
  explicit ClientStreamImpl(ClientConnection* c) : StreamBase(c) {}

  void FinishHead(bool end_stream) {
    int status = 0;
    EndBlock(&resp_.fields, [&](std::string_view n, std::string_view v) {
      if (n == ":status"sv) std::from_chars(v.data(), v.data() + v.size(), status);
    });
    resp_.status = status;
    resp_.reason = {};
    resp_.reusable = true;
    resp_.content_length = 0;
    resp_.body = end_stream ? http::BodyKind::kNone : http::BodyKind::kStream;
    if (!end_stream && status != 204 && status != 304 && method_ != "HEAD"sv) {
      for (const auto& f : resp_.fields) {
        if (f.name != "content-length"sv) continue;
        uint64_t len = 0;
        const auto [p, ec] = std::from_chars(f.value.data(), f.value.data() + f.value.size(), len);
        if (ec == std::errc() && p == f.value.data() + f.value.size()) {
          resp_.body = http::BodyKind::kLength;
          resp_.content_length = len;
        }
      }
    }
    if (!resp_.interim()) head_final_ = true;
    if (end_stream) recv_end_ = true;
    head_ready_ = true;
    got_head_ = true;
    recv_signal_.cancel();
  }

  bool Submit(const http::RequestHeaders& h, bool end) {
    if (reset_ || c_->dead_ || id_ > 0) return false;
    method_.assign(h.method);
    std::vector<nghttp2_nv>& nva = c_->nva_->v;
    nva.clear();
    nva.push_back(Nv(":method"sv, h.method));
    nva.push_back(Nv(":scheme"sv, h.scheme.empty() ? "http"sv : h.scheme));
    nva.push_back(Nv(":authority"sv, h.authority));
    nva.push_back(Nv(":path"sv, h.path.empty() ? "/"sv : h.path));
    if (h.body == http::BodyKind::kLength && !HasField(h.fields, "content-length")) {
      length_.clear();
      AppendDecimal(&length_, h.content_length);
      nva.push_back(Nv("content-length"sv, length_));
    }
    EncodeFields(h.fields, h.body, true, &c_->scratch_, &nva);
    int32_t id;
    if (end) {
      out_end_ = true;
      sent_end_ = true;
      id = nghttp2_submit_request(c_->session_, nullptr, nva.data(), nva.size(), nullptr, this);
    } else {
      const nghttp2_data_provider p = Provider();
      id = nghttp2_submit_request(c_->session_, nullptr, nva.data(), nva.size(), &p, this);
    }
    if (id < 0) return false;
    id_ = id;
    c_->Kick();
    return true;
  }
  static bool HasField(const http::HeaderList& fields, std::string_view name) {
    for (const auto& f : fields)
      if (IEquals(f.name, name)) return true;
    return false;
  }

  // http::ClientStream
  asio::awaitable<bool> SendHeaders(const http::RequestHeaders& h, bool end_stream) override {
    co_return Submit(h, end_stream);
  }
  bool QueueHeaders(const http::RequestHeaders& h) override { return Submit(h, false); }
  asio::awaitable<bool> SendBody(std::span<const std::string_view> data, bool end_stream,
                                 const http::HeaderList* trailers) override {
    return Send(data, end_stream, trailers);
  }
  asio::awaitable<http::ResponseHeaders*> ReadHeaders(http::HeadError* err) override {
    while (!head_ready_ && !reset_) {
      co_await recv_signal_.async_wait(kNoThrow);
    }
    if (head_ready_) {
      head_ready_ = false;
      co_return &resp_;
    }
    err->reason = reason_;
    err->status = 502;
    // A stream the peer refused, or one past its GOAWAY, was not processed:
    // safe to try again elsewhere.
    err->bytes_received = got_head_ && error_code_ != NGHTTP2_REFUSED_STREAM;
    err->unprocessed = !got_head_ && error_code_ == NGHTTP2_REFUSED_STREAM;
    err->detail = error_code_ == NGHTTP2_REFUSED_STREAM          ? "HTTP/2 stream refused"
                  : reason_ == http::ResetReason::kProtocolError ? "HTTP/2 protocol error"
                                                                 : "HTTP/2 stream reset";
    co_return nullptr;
  }
  asio::awaitable<http::BodyEvent> ReadBody() override { return Read(); }
  bool TryReadBody(http::BodyEvent* ev) override { return TryRead(ev); }
  io::Stream* TakeTunnel(std::string_view*) override { return nullptr; }
  bool reusable() const override { return !c_->dead_; }

  void Recycle() override {
    StreamBase::Recycle();
    ResetKeepingFields(&resp_);
    method_.clear();
    length_.clear();
    got_head_ = false;
  }

  http::ResponseHeaders resp_;
  std::string method_, length_;
  bool got_head_ = false;
};

int Callbacks::OnBeginHeaders(nghttp2_session* s, const nghttp2_frame* f, void* ud) {
  Connection* c = C(ud);
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  if (c->server_ && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    StreamBase* spare = c->Spare();
    auto* st = spare ? static_cast<ServerStreamImpl*>(spare)
                     : new ServerStreamImpl(static_cast<ServerConnection*>(c));
    st->id_ = f->hd.stream_id;
    c->Link(st);
    ++c->open_streams_;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    st->BeginBlock();
    return 0;
  }
  if (StreamBase* st = S(s, f->hd.stream_id)) st->BeginBlock();
  return 0;
}

int Callbacks::OnHeader(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name,
                        size_t nlen, const uint8_t* value, size_t vlen, uint8_t, void* ud) {
  Connection* c = C(ud);
  StreamBase* st = S(s, f->hd.stream_id);
  if (!st || st->overflow_) return 0;
  if (!st->AddField(Sv(name, nlen), Sv(value, vlen), c->settings_.max_header_list_bytes)) {
    // Over the limit: the rest of the block is decoded (HPACK needs it) and
    // dropped; the block's end answers for it (OnFrameRecv).
    st->overflow_ = true;
  }
  return 0;
}

void Callbacks::RefuseHead(Connection* c, StreamBase* st, bool end_stream) {
  // The stream was never handed out: nobody reads what else comes on it
  // (reset_), and it is freed when the session closes it (not queued_).
  st->reset_ = true;
  st->reason_ = http::ResetReason::kOverflow;
  const nghttp2_nv nva[] = {Nv(":status"sv, "431"sv), Nv("content-length"sv, "0"sv)};
  nghttp2_submit_response(c->session_, st->id_, nva, 2, nullptr);
  if (!end_stream) {
    // RFC 9113 8.1: the response is complete; the client may stop sending.
    c->NoteLocalReset(st->id_);
    nghttp2_submit_rst_stream(c->session_, NGHTTP2_FLAG_NONE, st->id_, NGHTTP2_NO_ERROR);
  }
  c->Kick();
}

int Callbacks::OnFrameRecv(nghttp2_session* s, const nghttp2_frame* f, void* ud) {
  Connection* c = C(ud);
  c->last_error_.clear();  // a notice about a frame that was accepted after all
  switch (f->hd.type) {
    case NGHTTP2_HEADERS: {
      StreamBase* st = S(s, f->hd.stream_id);
      if (!st) return 0;
      const bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
      if (st->overflow_) {
        const std::string detail =
            fmt::format("{} on stream {} over {} bytes", st->head_final_ ? "trailers" : "head",
                        f->hd.stream_id, c->settings_.max_header_list_bytes);
        c->Violate(Violation::kHeaderOverflow, detail);
        if (c->server_ && !st->head_final_) {
          RefuseHead(c, st, end);
        } else {
          // Trailers, or a response head: the stream is in use; reset it.
          st->ResetLocal(http::ResetReason::kOverflow);
        }
        c->ChargeReset();
        return 0;
      }
      if (st->head_final_) {
        // Trailers.
        st->EndBlock(&st->trailers_, [](std::string_view, std::string_view) {});
        st->recv_end_ = true;
        st->recv_signal_.cancel();
        return 0;
      }
      if (c->server_) {
        auto* ss = static_cast<ServerStreamImpl*>(st);
        ss->FinishHead(end);
        static_cast<ServerConnection*>(c)->Ready(st);
      } else {
        static_cast<ClientStreamImpl*>(st)->FinishHead(end);
      }
      return 0;
    }
    case NGHTTP2_DATA:
      if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        if (StreamBase* st = S(s, f->hd.stream_id)) {
          st->recv_end_ = true;
          st->recv_signal_.cancel();
        }
      } else if (f->hd.length <= f->data.padlen) {
        // Nothing in it (padding aside), and not the end either.
        const uint32_t limit = c->settings_.max_empty_data_per_second;
        if (!c->empty_data_.Take(limit, limit, MonoNanos())) {
          const std::string detail = fmt::format("more than {} empty DATA frames a second", limit);
          c->Terminate(Violation::kEmptyFrames, NGHTTP2_ENHANCE_YOUR_CALM, detail);
        }
      }
      return 0;
    case NGHTTP2_RST_STREAM:
      c->ChargeReset();
      return 0;
    case NGHTTP2_GOAWAY:
      c->goaway_received_ = true;
      return 0;
    default:
      return 0;
  }
}

int Callbacks::OnDataChunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* ud) {
  Connection* c = C(ud);
  StreamBase* st = S(s, id);
  if (!st || st->released_ || st->reset_) {
    // Nobody reads it: give the window back at once.
    c->Consume(id, len);
    return 0;
  }
  st->OnData(Sv(data, len));
  st->recv_signal_.cancel();
  return 0;
}

int Callbacks::OnStreamClose(nghttp2_session* s, int32_t id, uint32_t code, void* ud) {
  Connection* c = C(ud);
  if (c->destroying_) return 0;
  StreamBase* st = S(s, id);
  if (!st) return 0;
  nghttp2_session_set_stream_user_data(s, id, nullptr);
  if (c->server_ && c->open_streams_ > 0) --c->open_streams_;
  st->OnClose(code);
  // Freed once its user is done; a server stream reset before its head was
  // complete never had one.
  if (st->released_ || (c->server_ && !st->queued_)) c->Remove(st);
  return 0;
}

int Callbacks::OnBeginFrame(nghttp2_session*, const nghttp2_frame_hd*, void* ud) {
  // A limit was reached in the last frame: nothing after it is processed
  // (the session stops here, between frames; ReadLoop terminates).
  return C(ud)->pending_.has_value() ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

bool Callbacks::TakeLocalReset(Connection* c, int32_t id) {
  auto it = std::find(c->local_rst_.begin(), c->local_rst_.end(), id);
  if (it == c->local_rst_.end()) return false;
  c->local_rst_.erase(it);
  return true;
}

int Callbacks::OnFrameSend(nghttp2_session*, const nghttp2_frame* f, void* ud) {
  Connection* c = C(ud);
  if (f->hd.type == NGHTTP2_RST_STREAM) {
    // One the session sent on its own is for the peer's error (a stream
    // error of RFC 9113 5.4.2, or a stream over the concurrency limit).
    if (TakeLocalReset(c, f->hd.stream_id)) return 0;
    const uint32_t code = f->rst_stream.error_code;
    if (code == NGHTTP2_NO_ERROR) return 0;
    std::string detail =
        fmt::format("RST_STREAM {} on stream {}", nghttp2_http2_strerror(code), f->hd.stream_id);
    for (auto it = c->errors_.begin(); it != c->errors_.end(); ++it) {
      if (it->first != f->hd.stream_id) continue;
      detail.append(": ").append(it->second);
      c->errors_.erase(it);
      break;
    }
    c->Violate(code == NGHTTP2_REFUSED_STREAM ? Violation::kRefusedStream
                                              : Violation::kStreamProtocolError,
               detail);
    c->ChargeReset();
    return 0;
  }
  if (f->hd.type != NGHTTP2_GOAWAY || f->goaway.error_code == NGHTTP2_NO_ERROR) return 0;
  if (c->ctr_.goaways) c->ctr_.goaways->Inc();
  if (c->terminating_) return 0;  // ours: counted when queued
  // A connection error the session found by itself.
  c->terminating_ = true;
  c->goaway_sent_ = true;
  const uint32_t code = f->goaway.error_code;
  Violation v = Violation::kProtocolError;
  switch (code) {
    case NGHTTP2_FLOW_CONTROL_ERROR:
      v = Violation::kFlowControl;
      break;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      v = Violation::kFlood;  // too many settings in one frame
      break;
    case NGHTTP2_INTERNAL_ERROR:
      // The session's own stream reset limit (ours, on the same counts
      // and more, normally acts first).
      if (c->server_) v = Violation::kRapidReset;
      break;
    default:
      // A request HEADERS past the concurrency limit the peer acknowledged.
      if (c->server_ && c->last_invalid_type_ == NGHTTP2_HEADERS &&
          c->last_invalid_error_ == NGHTTP2_ERR_PROTO &&
          c->open_streams_ >= c->settings_.max_concurrent_streams) {
        v = Violation::kRefusedStream;
      }
      break;
  }
  std::string detail = fmt::format("GOAWAY {}", nghttp2_http2_strerror(code));
  if (f->goaway.opaque_data_len > 0) {
    detail.append(": ").append(Printable(Sv(f->goaway.opaque_data, f->goaway.opaque_data_len)));
  } else if (!c->errors_.empty()) {
    detail.append(": ").append(c->errors_.back().second);
  }
  c->Violate(v, detail);
  c->OnTerminate();
  c->StartLinger();
  return 0;
}

int Callbacks::OnFrameNotSend(nghttp2_session*, const nghttp2_frame* f, int, void* ud) {
  if (f->hd.type == NGHTTP2_RST_STREAM) TakeLocalReset(C(ud), f->hd.stream_id);
  return 0;
}

int Callbacks::OnInvalidFrameRecv(nghttp2_session*, const nghttp2_frame* f, int error, void* ud) {
  Connection* c = C(ud);
  c->last_invalid_type_ = f->hd.type;
  c->last_invalid_error_ = error;
  // The message the session gave just before (if any) explains this frame:
  // kept for the RST_STREAM or GOAWAY that answers it (a few at most).
  if (!c->last_error_.empty()) {
    if (c->errors_.size() == 8) c->errors_.erase(c->errors_.begin());
    c->errors_.emplace_back(f->hd.stream_id, std::move(c->last_error_));
  }
  c->last_error_.clear();
  return 0;
}

int Callbacks::OnError(nghttp2_session*, int, const char* msg, size_t len, void* ud) {
  // It may quote the peer's bytes.
  C(ud)->last_error_ = Printable(std::string_view(msg, len));
  return 0;
}

// ---- Connection ----

Connection::Connection(io::Stream& s, const Settings& settings, Counters ctr, bool server,
                       std::string peer)
    : io_(s),
      settings_(settings),
      ctr_(ctr),
      server_(server),
      write_signal_(s.socket().get_executor()),
      done_signal_(s.socket().get_executor()),
      peer_(std::move(peer)),
      linger_(s.socket().get_executor()) {
  write_signal_.expires_at(asio::steady_timer::time_point::max());
  done_signal_.expires_at(asio::steady_timer::time_point::max());
  nva_ = std::make_unique<NvArray>();
}

asio::awaitable<void> Connection::Done() {
  while (reading_ || writing_) co_await done_signal_.async_wait(kNoThrow);
}

Connection::~Connection() {
  destroying_ = true;
  if (session_) nghttp2_session_del(session_);
  for (StreamBase* st = streams_; st;) {
    StreamBase* next = st->next_;
    delete st;
    st = next;
  }
  for (StreamBase* st : spare_) delete st;
}

bool Connection::InitSession() {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, Callbacks::OnStreamClose);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, Callbacks::OnBeginFrame);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, Callbacks::OnFrameSend);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, Callbacks::OnFrameNotSend);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, Callbacks::OnInvalidFrameRecv);
  nghttp2_session_callbacks_set_error_callback2(cb, Callbacks::OnError);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cb);
    return false;
  }
  // The window goes back as the reader takes bytes, not as they arrive.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  // The session's own reset limit (GOAWAY INTERNAL_ERROR, and no close)
  // only backs up ours (ChargeReset), which counts the same resets and more
  // and closes the connection with ENHANCE_YOUR_CALM: twice as loose, so
  // that ours acts first.
  nghttp2_option_set_stream_reset_rate_limit(opt, uint64_t{settings_.reset_burst} * 2,
                                             uint64_t{settings_.reset_rate} * 2);
  nghttp2_option_set_max_continuations(opt, kMaxContinuations);
  // Closed streams are not kept for a priority tree (there is none, below).
  nghttp2_option_set_no_closed_streams(opt, 1);
  // RFC 9113 dropped priorities; a client's PRIORITY frames are parsed
  // and otherwise ignored.
  int rv = server_ ? nghttp2_session_server_new3(&session_, cb, this, opt, &pool::mem)
                   : nghttp2_session_client_new3(&session_, cb, this, opt, &pool::mem);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) {
    session_ = nullptr;
    return false;
  }
  nghttp2_settings_entry iv[7];
  size_t n = 0;
  iv[n++] = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams};
  iv[n++] = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings_.initial_window};
  iv[n++] = {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, settings_.max_frame_size};
  iv[n++] = {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_bytes};
  iv[n++] = {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, settings_.header_table_size};
  if (!server_) iv[n++] = {NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
  // RFC 9218 2.1: no RFC 7540 priority tree; streams are served in turn.
  // Only in the first SETTINGS, so not after an empty one already sent
  // (nghttp2 refuses it there): such a connection keeps the tree.
  if (!empty_settings_sent_) iv[n++] = {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1};
  // The empty SETTINGS already sent goes first, so that the client's ACK of
  // it is expected and changes nothing; the writer drops its bytes.
  if (empty_settings_sent_ && nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0) != 0)
    return false;
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, n) != 0) return false;
  if (settings_.connection_window > 65535) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(settings_.connection_window));
  }
  return true;
}

void Connection::Start() {
  auto self = shared_from_this();
  reading_ = writing_ = true;
  auto ex = io_.socket().get_executor();
  asio::co_spawn(ex, ReadLoop(self), asio::detached);
  asio::co_spawn(ex, WriteLoop(self), asio::detached);
}

void Connection::Kick() { write_signal_.cancel(); }

void Connection::Consume(int32_t id, size_t n) {
  if (!session_ || dead_ || n == 0) return;
  if (nghttp2_session_consume(session_, id, n) != 0)
    nghttp2_session_consume_connection(session_, n);
  Kick();
}

void Connection::Link(StreamBase* st) {
  st->prev_ = nullptr;
  st->next_ = streams_;
  if (streams_) streams_->prev_ = st;
  streams_ = st;
  ++n_streams_;
}

void Connection::Dequeued(size_t n) {
  queued_ -= n;
  if (!send_blocked_ || queued_ >= settings_.connection_send_buffer) return;
  // Under the cap again: the streams waiting on it may queue.
  send_blocked_ = false;
  for (StreamBase* st = streams_; st; st = st->next_)
    if (st->send_waiting_) st->send_signal_.cancel();
}

void Connection::Remove(StreamBase* st) {
  if (st->out_.size() > st->out_off_) Dequeued(st->out_.size() - st->out_off_);
  if (st->prev_) {
    st->prev_->next_ = st->next_;
  } else {
    streams_ = st->next_;
  }
  if (st->next_) st->next_->prev_ = st->prev_;
  --n_streams_;
  if (dead_ || spare_.size() >= kSpareStreams) {
    delete st;
    return;
  }
  st->Recycle();
  spare_.push_back(st);
}

StreamBase* Connection::Spare() {
  if (spare_.empty()) return nullptr;
  StreamBase* st = spare_.back();
  spare_.pop_back();
  return st;
}

const std::string& Connection::peer() {
  if (peer_.empty()) {
    asio::error_code ec;
    const auto ep = io_.socket().remote_endpoint(ec);
    if (ec) {
      peer_ = "?";
    } else if (ep.address().is_v6()) {
      peer_ = fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
    } else {
      peer_ = fmt::format("{}:{}", ep.address().to_string(), ep.port());
    }
  }
  return peer_;
}

bool Connection::Bucket::Take(uint32_t burst, uint32_t rate, int64_t now_ns) {
  if (tokens < 0) {
    tokens = burst;
  } else {
    tokens = std::min<double>(burst, tokens + static_cast<double>(now_ns - last_ns) * rate / 1e9);
  }
  last_ns = now_ns;
  if (tokens < 1) return false;
  tokens -= 1;
  return true;
}

void Connection::Violate(Violation v, std::string_view detail) {
  const size_t i = static_cast<size_t>(v);
  if (ctr_.violations) ctr_.violations[i].Inc();
  // One budget per kind: a flood of one kind does not hide the others.
  static log::Limiter limiters[kViolationCount];
  if (log::GetLevel() > log::Level::kWarn) return;
  uint64_t suppressed = 0;
  if (!limiters[i].Allow(&suppressed)) return;
  log::WriteLimited(log::Level::kWarn,
                    fmt::format("http2: {} {}: {}: {}", server_ ? "client" : "upstream", peer(),
                                ViolationName(v), detail),
                    suppressed);
}

void Connection::Terminate(Violation v, uint32_t code, std::string_view detail) {
  if (terminating_ || dead_ || !session_) return;
  if (in_recv_) {
    // Not from inside nghttp2_session_mem_recv: a frame's processing may
    // go on past the callback and undo what terminating does to the
    // session's reader (after a DATA frame, an assertion in nghttp2 then
    // aborts the process). The session stops at the next frame
    // (OnBeginFrame) and ReadLoop terminates once the call returns.
    if (!pending_.has_value()) pending_ = PendingTerminate{v, code, std::string(detail)};
    return;
  }
  terminating_ = true;
  goaway_sent_ = true;
  if (error_.empty()) error_ = fmt::format("{}: {}", ViolationName(v), detail);
  Violate(v, detail);
  // Streams up to the last one processed may finish; reading stops and the
  // connection closes once the GOAWAY is sent.
  nghttp2_session_terminate_session(session_, code);
  Kick();
  OnTerminate();
  StartLinger();
}

void Connection::ChargeReset() {
  if (!server_ || terminating_ || pending_.has_value()) return;
  ++resets_total_;
  if (resets_total_ > settings_.max_reset_streams) {
    const std::string detail =
        fmt::format("more than {} streams reset on one connection", settings_.max_reset_streams);
    Terminate(Violation::kRapidReset, NGHTTP2_ENHANCE_YOUR_CALM, detail);
  } else if (!resets_.Take(settings_.reset_burst, settings_.reset_rate, MonoNanos())) {
    const std::string detail =
        fmt::format("streams reset faster than {} a second after a burst of {} ({} so far)",
                    settings_.reset_rate, settings_.reset_burst, resets_total_);
    Terminate(Violation::kRapidReset, NGHTTP2_ENHANCE_YOUR_CALM, detail);
  }
}

void Connection::StartLinger() {
  linger_.expires_after(std::chrono::milliseconds(kLingerMs));
  linger_.async_wait([weak = weak_from_this()](asio::error_code) {
    auto self = weak.lock();
    // Dead: the owner has ended it (and may have closed the socket).
    if (!self || self->dead_) return;
    self->Abort("GOAWAY not taken by the peer in time");
  });
}

void Connection::Fail(std::string why) {
  if (dead_) return;
  dead_ = true;
  linger_.cancel();
  if (error_.empty()) error_ = std::move(why);
  for (StreamBase* st = streams_; st; st = st->next_) {
    if (!st->closed_) {
      // The session keeps the stream (it is not driven any more): nothing
      // of it may lead back here once the stream is freed.
      if (session_ && st->id_ > 0) nghttp2_session_set_stream_user_data(session_, st->id_, nullptr);
      st->closed_ = true;
      st->MarkReset(NGHTTP2_CANCEL);
    }
  }
  // Streams the user already let go of are freed now.
  std::vector<StreamBase*> done;
  for (StreamBase* st = streams_; st; st = st->next_)
    if (st->released_ || (server_ && !st->queued_)) done.push_back(st);
  for (StreamBase* st : done) Remove(st);
  Kick();
  OnDead();
  if (on_dead_) {
    auto f = std::move(on_dead_);
    on_dead_ = nullptr;
    f();
  }
}

void Connection::Abort(std::string why) {
  Fail(std::move(why));
  io_.Cancel();
}

asio::awaitable<void> Connection::ReadLoop(std::shared_ptr<Connection> self) {
  while (!dead_) {
    // The thread's read buffer: the session takes all of a read before the
    // loop waits again, so an idle connection holds no read buffer.
    char* const rbuf = ThreadReadBuffer();
    asio::error_code ec;
    size_t n = 0;
    if (io_.tls()) {
      // OpenSSL fills `rbuf` when a record is whole, just before this
      // resumes (its waits are for ciphertext, into the stream's own buffer).
      const io::Stream::IoResult r = co_await io_.ReadSome(rbuf, kReadSize);
      ec = std::get<0>(r);
      n = std::get<1>(r);
    } else {
      std::tie(ec, n) = io_.TryReadSome(rbuf, kReadSize);
      if (ec == asio::error::would_block) {
        const auto [wec] = co_await io_.WaitReadable();
        if (!wec) continue;
        ec = wec;
      }
    }
    if (ec || n == 0) {
      // After an error GOAWAY the writer ends the connection once it is out.
      if (!ec && terminating_) break;
      Fail(ec ? ec.message() : std::string("closed by peer"));
      break;
    }
    if (ctr_.bytes_in) ctr_.bytes_in->Inc(n);
    // An error GOAWAY is queued or sent: what still comes is read (closing
    // on unread bytes would reset the connection, GOAWAY and all) and dropped.
    if (terminating_) continue;
    in_recv_ = true;
    const ssize_t rv =
        nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(rbuf), n);
    in_recv_ = false;
    if (pending_.has_value()) {
      // A limit a callback found (rv: OnBeginFrame stopped the session).
      const PendingTerminate p = std::move(*pending_);
      pending_.reset();
      Terminate(p.violation, p.code, p.detail);
    }
    if (rv < 0) {
      // A fatal error: the session stops reading. Those a peer causes on
      // purpose are answered with GOAWAY here (the session sends none).
      if (error_.empty()) error_ = nghttp2_strerror(static_cast<int>(rv));
      switch (rv) {
        case NGHTTP2_ERR_FLOODED:
          Terminate(Violation::kFlood, NGHTTP2_ENHANCE_YOUR_CALM,
                    "frames to answer (SETTINGS, PING) piling up unread");
          break;
        case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
          Terminate(
              Violation::kContinuationFlood, NGHTTP2_ENHANCE_YOUR_CALM,
              fmt::format("a header block in more than {} CONTINUATION frames", kMaxContinuations));
          break;
        case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
          Terminate(Violation::kProtocolError, NGHTTP2_PROTOCOL_ERROR,
                    "no HTTP/2 connection preface");
          break;
        default:
          break;
      }
      Kick();
      if (terminating_) continue;
      break;
    }
    Kick();
    if (!terminating_ && !nghttp2_session_want_read(session_) &&
        !nghttp2_session_want_write(session_)) {
      break;
    }
  }
  reading_ = false;
  Kick();
  done_signal_.cancel();
}

asio::awaitable<void> Connection::WriteLoop(std::shared_ptr<Connection> self) {
  bool shut = false;
  for (;;) {
    // Dead: its streams may be gone; the session is not driven any more.
    if (dead_) break;
    wbuf_.clear();
    bool fatal = false;
    while (wbuf_.size() < kWriteBatch) {
      const uint8_t* p = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &p);
      if (n < 0) {
        fatal = true;
        if (error_.empty()) error_ = nghttp2_strerror(static_cast<int>(n));
        break;
      }
      if (n == 0) break;
      wbuf_.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    if (empty_settings_sent_ && !wbuf_.empty()) {
      // The session's first frame is the empty SETTINGS the client has had
      // already (ServerConnection::EmptySettingsSent): not sent twice.
      empty_settings_sent_ = false;
      if (!std::string_view(wbuf_).starts_with(kEmptySettings)) {
        LOG_ERROR_LIMITED(
            "http2: client {}: the session's first frame is not the empty SETTINGS "
            "already sent; connection closed",
            peer());
        Fail("first frame is not the SETTINGS already sent");
        break;
      }
      wbuf_.erase(0, kEmptySettings.size());
    }
    if (!wbuf_.empty()) {
      auto [ec, n] = co_await io_.Write(wbuf_.data(), wbuf_.size());
      if (ec) {
        Fail(ec.message());
        break;
      }
      if (ctr_.bytes_out) ctr_.bytes_out->Inc(n);
      continue;
    }
    if (fatal || dead_) break;
    if (terminating_) {
      // The error GOAWAY is out (it goes before anything held back by flow
      // control): a lingering close. Our FIN follows it, and the reader
      // drains what the peer still sends until it closes too (or the linger
      // ends), so that no reset overtakes the GOAWAY.
      if (!shut) {
        shut = true;
        io_.ShutdownSend();
      }
      if (!reading_) break;
      co_await write_signal_.async_wait(kNoThrow);
      continue;
    }
    // Nothing to send: done when the reader is done or the session wants
    // nothing more (GOAWAY exchanged, streams finished).
    if (!reading_) break;
    if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) break;
    co_await write_signal_.async_wait(kNoThrow);
  }
  writing_ = false;
  Fail(error_.empty() ? std::string("connection finished") : error_);
  if (reading_) io_.Cancel();  // the reader waits on the socket: end it
  done_signal_.cancel();
}

// ---- Server ----

ServerConnection::ServerConnection(io::Stream& s, const Settings& settings, Counters ctr,
                                   std::string peer)
    : Connection(s, settings, ctr, true, std::move(peer)),
      accept_signal_(s.socket().get_executor()) {
  accept_signal_.expires_at(asio::steady_timer::time_point::max());
}

void ServerConnection::Ready(StreamBase* st) {
  st->queued_ = true;
  ready_.push_back(st);
  accept_signal_.cancel();
}

void ServerConnection::OnDead() { accept_signal_.cancel(); }
void ServerConnection::OnTerminate() { accept_signal_.cancel(); }

asio::awaitable<http::Accepted> ServerConnection::NextStream() {
  http::Accepted a;
  for (;;) {
    // Past an error GOAWAY no stream is started: the connection closes
    // once the GOAWAY is out (Done).
    while (ready_at_ < ready_.size() && !terminating_) {
      StreamBase* st = ready_[ready_at_++];
      if (ready_at_ == ready_.size()) {
        ready_.clear();
        ready_at_ = 0;
      }
      if (st->reset_) {
        // Reset by the peer before anyone took it.
        st->released_ = true;
        if (st->closed_) Remove(st);
        continue;
      }
      a.stream = static_cast<ServerStreamImpl*>(st);
      co_return a;
    }
    if (dead_ || goaway_sent_) co_return a;
    co_await accept_signal_.async_wait(kNoThrow);
  }
}

void ServerConnection::StreamDone(http::ServerStream* s, bool) {
  auto* st = static_cast<ServerStreamImpl*>(s);
  // A response queued whole goes out and closes the stream by itself (the
  // rest of a request body nobody read is given back to the window as it
  // comes); one cut short is reset.
  if (!st->closed_ && !st->reset_ && !st->out_end_) st->ResetLocal(http::ResetReason::kLocal);
  st->Abandon();
  st->released_ = true;
  if (st->closed_ || dead_) Remove(st);
}

void ServerConnection::Drain() {
  if (goaway_sent_ || dead_) return;
  goaway_sent_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  Kick();
  accept_signal_.cancel();
}

// ---- Client ----

bool ClientConnection::can_open() const {
  if (dead_ || goaway_received_ || goaway_sent_ || !session_) return false;
  if (!nghttp2_session_check_request_allowed(session_)) return false;
  // The peer's limit (ours is what the peer may open towards us).
  const uint32_t peer_max =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return n_streams_ < peer_max;
}

http::ClientStream* ClientConnection::Open() {
  if (!can_open()) return nullptr;
  StreamBase* spare = Spare();
  auto* st = spare ? static_cast<ClientStreamImpl*>(spare) : new ClientStreamImpl(this);
  Link(st);
  return st;
}

void ClientConnection::Cancel(http::ClientStream* s) {
  static_cast<ClientStreamImpl*>(s)->ResetLocal(http::ResetReason::kTimeout);
}

void ClientConnection::Done(http::ClientStream* s) {
  auto* st = static_cast<ClientStreamImpl*>(s);
  if (!st->closed_ && st->id_ > 0 && !(st->recv_end_ && st->out_end_)) {
    st->ResetLocal(http::ResetReason::kLocal);
  }
  st->Abandon();
  st->released_ = true;
  if (st->closed_ || st->id_ <= 0 || dead_) Remove(st);
}

}  // namespace weft::http2
