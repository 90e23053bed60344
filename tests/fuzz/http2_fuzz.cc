// The HTTP/2 codec on the receiving end of anything: a server connection
// (the input follows the client preface) or a client connection (the input
// is what the server sends), over a socket pair on one event loop. The
// server answers every stream it is handed (a head, a body, trailers) and
// the client reads what comes back, so that the encoding side runs too.
// Whatever the input, the loops end once it does (a hang is a libFuzzer
// timeout), every stream is released, and ASan sees no misuse.
//
// The first byte chooses: bit 0 client (else server), bit 1 no preface
// before the input (server), bit 2 Drain() after the first stream (server),
// bit 3 reset streams instead of answering them. The seed corpus
// (corpus/http2: valid and invalid frame sequences) is written by
// tests/fuzz/http2_corpus.py.
#include <sys/socket.h>

#include <asio.hpp>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/counter.h"
#include "http/http2/codec.h"
#include "io/asio.h"
#include "io/stream.h"

namespace {

using namespace std::string_view_literals;
using weft::Counter;
using weft::kNoThrow;
using weft::http2::ClientConnection;
using weft::http2::ServerConnection;
namespace http = weft::http;
using tcp = asio::ip::tcp;

constexpr uint8_t kClient = 1, kRaw = 2, kDrain = 4, kReset = 8;

// Limits small enough for short inputs to reach them.
weft::http2::Settings FuzzSettings() {
  weft::http2::Settings s;
  s.max_concurrent_streams = 16;
  s.initial_window = 65535;
  s.connection_window = 65535 * 2;
  s.max_header_list_bytes = 4096;
  s.send_buffer = 1024;
  s.reset_burst = 20;
  s.reset_rate = 5;
  s.max_reset_streams = 40;
  s.max_empty_data_per_second = 8;
  return s;
}

struct Harness {
  asio::io_context io;
  std::unique_ptr<weft::io::Stream> near, far;  // the codec's end, the input's end
  Counter in, out, goaways;
  Counter violations[weft::http2::kViolationCount];
  weft::http2::Counters Ctr() { return {&in, &out, violations, &goaways}; }
  int live = 0;  // streams being served or read
  asio::steady_timer done{io};
  std::string body = std::string(3000, 'b');  // over send_buffer: Send waits on the window
};

// Writes the input, then ends the stream; reads whatever comes back.
asio::awaitable<void> Feed(Harness* h, std::string input) {
  co_await h->far->Write(input.data(), input.size());  // fails once the codec closes: fine
  asio::error_code ignored;
  h->far->socket().shutdown(tcp::socket::shutdown_send, ignored);
}
asio::awaitable<void> Drain(Harness* h) {
  char buf[16384];
  for (;;) {
    auto [ec, n] = co_await h->far->ReadSome(buf, sizeof buf);
    if (ec || n == 0) break;
  }
}

void Finished(Harness* h) {
  if (--h->live == 0) h->done.cancel();
}

asio::awaitable<void> Answer(Harness* h, ServerConnection* c, http::ServerStream* s, bool reset) {
  bool ok = true;
  for (int i = 0; i < 16; ++i) {
    http::BodyEvent ev;
    if (!s->TryReadBody(&ev)) ev = co_await s->ReadBody();
    if (ev.kind == http::BodyEvent::kReset) {
      ok = false;
      break;
    }
    if (ev.end) break;
  }
  if (ok && reset) {
    s->Reset(http::ResetReason::kLocal);
    ok = false;
  }
  if (ok) {
    http::ResponseHeaders resp;
    resp.status = 200;
    resp.body = http::BodyKind::kStream;
    resp.fields = {{"Content-Type", "text/plain"}, {"connection", "close"}, {"x-a", "b"}};
    ok = co_await s->SendHeaders(resp, false);
    if (ok) {
      const std::string_view parts[2] = {h->body, "tail"sv};
      const http::HeaderList trailers = {{"grpc-status", "0"}, {"te", "x"}};
      const std::span<const std::string_view> data(parts, 2);
      ok = co_await s->SendBody(data, true, &trailers);
    }
  }
  c->StreamDone(s, ok);
  Finished(h);
}

asio::awaitable<void> Serve(Harness* h, std::shared_ptr<ServerConnection> c, uint8_t mode) {
  ++h->live;  // this loop
  for (bool first = true;; first = false) {
    http::Accepted a = co_await c->NextStream();
    if (a.stream == nullptr) break;
    ++h->live;
    asio::co_spawn(h->io, Answer(h, c.get(), a.stream, (mode & kReset) != 0), asio::detached);
    if (first && (mode & kDrain)) c->Drain();
  }
  Finished(h);
  while (h->live > 0) co_await h->done.async_wait(kNoThrow);
  c->Abort("fuzz: done");
  h->near->Close();
}

asio::awaitable<void> Request(Harness* h, ClientConnection* c, int i, bool reset) {
  http::ClientStream* s = c->Open();
  if (s == nullptr) {
    Finished(h);
    co_return;
  }
  http::RequestHeaders req;
  req.method = i == 1 ? "POST"sv : "GET"sv;
  req.scheme = "http"sv;
  req.authority = "fuzz.test"sv;
  req.path = i == 2 ? ""sv : "/p?q=1"sv;
  req.fields = {{"Accept", "*/*"}, {"te", "trailers"}, {"Connection", "x"}, {"x-b", "c"}};
  bool ok;
  if (i == 1) {
    req.body = http::BodyKind::kLength;
    req.content_length = h->body.size();
    ok = co_await s->SendHeaders(req, false);
    if (ok) {
      const std::string_view parts[1] = {h->body};
      const std::span<const std::string_view> data(parts, 1);
      ok = co_await s->SendBody(data, true, nullptr);
    }
  } else {
    ok = co_await s->SendHeaders(req, true);
  }
  if (ok && reset && i == 0) {
    c->Cancel(s);
    ok = false;
  }
  http::ResponseHeaders* resp = nullptr;
  for (int n = 0; ok && n < 4; ++n) {
    http::HeadError err;
    resp = co_await s->ReadHeaders(&err);
    if (resp == nullptr || !resp->interim()) break;
  }
  if (resp != nullptr) {
    for (int n = 0; n < 16; ++n) {
      http::BodyEvent ev;
      if (!s->TryReadBody(&ev)) ev = co_await s->ReadBody();
      if (ev.kind == http::BodyEvent::kReset || ev.end) break;
    }
  }
  c->Done(s);
  Finished(h);
}

asio::awaitable<void> Client(Harness* h, std::shared_ptr<ClientConnection> c, uint8_t mode) {
  for (int i = 0; i < 3; ++i) {
    ++h->live;
    asio::co_spawn(h->io, Request(h, c.get(), i, (mode & kReset) != 0), asio::detached);
  }
  while (h->live > 0) co_await h->done.async_wait(kNoThrow);
  c->Abort("fuzz: done");
  h->near->Close();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string input;
  if (!(mode & kClient) && !(mode & kRaw)) input.assign(weft::http2::kPreface);
  input.append(reinterpret_cast<const char*>(data + 1), size - 1);

  Harness h;
  h.done.expires_at(asio::steady_timer::time_point::max());
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) std::abort();
  {
    tcp::socket a(h.io), b(h.io);
    a.assign(tcp::v4(), fds[0]);
    b.assign(tcp::v4(), fds[1]);
    h.near = std::make_unique<weft::io::Stream>(std::move(a));
    h.far = std::make_unique<weft::io::Stream>(std::move(b));
  }
  const weft::http2::Settings settings = FuzzSettings();
  if (mode & kClient) {
    auto c = std::make_shared<ClientConnection>(*h.near, settings, h.Ctr(), "fuzz");
    if (!c->Init()) std::abort();
    c->Start();
    asio::co_spawn(h.io, Client(&h, c, mode), asio::detached);
  } else {
    auto c = std::make_shared<ServerConnection>(*h.near, settings, h.Ctr(), "fuzz");
    if (!c->Init()) std::abort();
    c->Start();
    asio::co_spawn(h.io, Serve(&h, c, mode), asio::detached);
  }
  asio::co_spawn(h.io, Feed(&h, std::move(input)), asio::detached);
  asio::co_spawn(h.io, Drain(&h), asio::detached);
  h.io.run();
  // Every coroutine ended; the connection is gone with the last of them.
  if (h.live != 0) std::abort();
  h.far->Close();
  return 0;
}
