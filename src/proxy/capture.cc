// Transparent interception: connections that `weft redirect`'s iptables
// rules sent to the capture listener. Each one's original destination
// (SO_ORIGINAL_DST) picks a mesh service; failing that, an HTTP/1.x
// request's Host or an HTTP/2 (prior knowledge) request's :authority does
// (a client that waits for the server's SETTINGS first is sent an empty
// one); what is neither passes through to where it was going, or is
// refused when egress is registry-only.
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio/experimental/awaitable_operators.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string_view>

#include "base/log.h"
#include "base/strings.h"
#include "http/http1/parser.h"
#include "http/http2/wire.h"
#include "proxy/sniff.h"
#include "proxy/worker.h"

namespace weft::proxy {
namespace {

// From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>,
// which clash with the libc headers.
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;

bool OriginalDst(int fd, sockaddr_storage* out) {
  socklen_t len = sizeof *out;
  if (::getsockopt(fd, SOL_IP, kSoOriginalDst, out, &len) == 0) return true;
  len = sizeof *out;
  return ::getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, out, &len) == 0;
}

using Clock = std::chrono::steady_clock;

// How long an HTTP/2 client that sent its preface may be quiet before it is
// taken for one that waits for the server's SETTINGS (gRPC's C core does)
// and is sent an empty one. A client that sends its first request at once
// (curl) has it in the same write: it is never sent one.
constexpr auto kSettingsAfterQuiet = std::chrono::milliseconds(10);
// How long a connection that passes through after such SETTINGS waits, past
// the decision, for the client's ACK of them to take it out.
constexpr auto kAckWait = std::chrono::milliseconds(200);
// A SETTINGS ACK is a frame header alone.
constexpr size_t kSettingsAckBytes = 9;

enum class Peeked { kMore, kQuiet, kClosed };

// Waits until more than `seen` of the client's first bytes are in, peeked
// (not consumed) into `buf`: kMore with *got set to how many; kQuiet once
// `wake` passed first; kClosed when the client closed before a byte or the
// socket failed.
asio::awaitable<Peeked> PeekMore(Worker* w, tcp::socket& s, std::string& buf, size_t seen,
                                 Clock::time_point wake, size_t* got) {
  using namespace asio::experimental::awaitable_operators;
  const int fd = s.native_handle();
  for (;;) {
    if (Clock::now() >= wake) co_return Peeked::kQuiet;
    asio::steady_timer t(w->io());
    t.expires_at(wake);
    auto which =
        co_await (s.async_wait(tcp::socket::wait_read, kNoThrow) || t.async_wait(kNoThrow));
    if (which.index() == 1) co_return Peeked::kQuiet;
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) co_return Peeked::kClosed;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      co_return Peeked::kClosed;
    }
    if (static_cast<size_t>(n) > seen) {
      *got = static_cast<size_t>(n);
      co_return Peeked::kMore;
    }
    // Nothing new (peeked bytes keep the socket readable): wait a little
    // instead of spinning.
    asio::steady_timer pause(w->io(), std::chrono::milliseconds(2));
    co_await pause.async_wait(kNoThrow);
  }
}

// A connection that passes through after the empty SETTINGS was sent: the
// destination did not send that frame, and an HTTP/2 server takes an ACK it
// is not owed for a protocol error. Waits (kAckWait, the rest of `buf`) for
// the client's ACK, consumes the bytes up to its end and sets *pending to
// those before it; the first `seen` bytes of `buf` are what was peeked so
// far. An ACK not found (counted, logged) stays in, *pending empty. False
// when the connection must close.
asio::awaitable<bool> TakeSettingsAck(Worker* w, tcp::socket& s, const ListenerConfig& lc,
                                      ListenerStats& ls, const std::string& key, std::string& buf,
                                      size_t seen, std::string* pending) {
  size_t at = 0;
  int a = SettingsAckOfHttp2Start(std::string_view(buf.data(), seen), &at);
  const Clock::time_point until = Clock::now() + kAckWait;
  while (a == 0 && seen < buf.size()) {
    size_t got = 0;
    const Peeked p = co_await PeekMore(w, s, buf, seen, until, &got);
    if (p == Peeked::kClosed) co_return false;
    if (p == Peeked::kQuiet) break;
    seen = got;
    a = SettingsAckOfHttp2Start(std::string_view(buf.data(), seen), &at);
  }
  if (a != 1) {
    ls.capture_h2_ack_forwarded.Inc();
    LOG_WARN_LIMITED(
        "listener {}: HTTP/2 client to {} passes through with its ACK of our SETTINGS "
        "({}): the destination may take it for a protocol error",
        lc.name, key, a == 0 ? "not seen in time" : "not found in malformed frames");
    co_return true;
  }
  const size_t take = at + kSettingsAckBytes;
  size_t taken = 0;
  while (taken < take) {  // all peeked already: one call takes them
    const ssize_t n = ::recv(s.native_handle(), buf.data() + taken, take - taken, MSG_DONTWAIT);
    if (n > 0) {
      taken += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      co_return false;
    }
  }
  pending->assign(buf.data(), at);
  co_return true;
}

asio::awaitable<void> Capture(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s) {
  if (l->removed) co_return;
  const std::shared_ptr<WorkerState> st = w->state();  // the snapshot outlives this coroutine
  const ListenerConfig& lc = st->snap->cfg->listeners[l->index];
  ListenerStats& ls = st->snap->listener_stats[l->index]->at(w->id());
  const int fd = s.native_handle();
  asio::error_code ignored;
  sockaddr_storage dst{}, local{};
  socklen_t local_len = sizeof local;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len);
  const std::string key = OriginalDst(fd, &dst) ? FormatSockaddr(dst) : "";
  if (key.empty() || key == FormatSockaddr(local)) {
    // Straight to the capture port: proxying it to "itself" would loop.
    ls.Rejected(Reject::kNotRedirected);
    LOG_INFO(
        "listener {}: connection not redirected by iptables (no original destination); "
        "closed",
        lc.name);
    s.close(ignored);
    co_return;
  }
  auto hand_to = [&](size_t index, bool settings_sent) {
    std::shared_ptr<ListenerRuntime> vl = w->ListenerAt(index);
    if (!vl || vl->removed) {
      s.close(ignored);
      return;
    }
    w->Serve(vl, std::move(s), settings_sent);
  };
  if (auto it = lc.by_address.find(key); it != lc.by_address.end()) {
    hand_to(it->second, false);
    co_return;
  }
  // Not a mesh address: an HTTP request may still name a mesh service, by
  // Host (HTTP/1.x) or by :authority (HTTP/2 with prior knowledge). Peek
  // (the session reads the same bytes again) until the head, or the first
  // HEADERS block up to its authority, is in, or the detection timeout or
  // max_detect_bytes is reached: then it is TCP. An HTTP/2 client that
  // sent its preface and is quiet for kSettingsAfterQuiet waits for the
  // server's SETTINGS before its first request, as gRPC's C core does: it
  // is sent an empty SETTINGS frame (a server preface that sets nothing),
  // acknowledges it and goes on with its request. Only where some HTTP
  // service could take it by name: the virtual listener's HTTP/2 codec
  // then takes that frame as its own (EmptySettingsSent). Should the
  // connection pass through instead, the frame changed nothing for the
  // client, and the client's ACK of it is taken out of what goes to the
  // destination (below), which sees the client's bytes as they would have
  // been without us.
  bool http = false;  // an HTTP/1.x head: answered with a 502 under registry-only
  std::string host;   // the name a head or an HTTP/2 start gave
  std::string buf(lc.max_detect_bytes, '\0');
  const Clock::time_point until = Clock::now() + std::chrono::milliseconds(lc.detect_timeout_ms);
  Clock::time_point grew_at = Clock::now();  // when the last new byte came
  size_t seen = 0;
  bool h2_waits = false;        // the HTTP/2 preface is in, its first request is not
  bool settings_tried = false;  // an empty SETTINGS was written (or failed to be)
  bool settings_sent = false;   // ... whole
  for (;;) {
    const bool may_send = h2_waits && !settings_tried && !lc.by_host.empty();
    Clock::time_point wake = until;
    if (may_send) wake = std::min(until, grew_at + kSettingsAfterQuiet);
    size_t got = 0;
    const Peeked p = co_await PeekMore(w, s, buf, seen, wake, &got);
    if (p == Peeked::kClosed) {  // nothing to proxy, or a broken socket
      s.close(ignored);
      co_return;
    }
    if (p == Peeked::kQuiet) {
      if (!may_send || wake >= until) break;  // quiet: decide on what came
      settings_tried = true;
      const ssize_t n = ::send(fd, http2::kEmptySettings.data(), http2::kEmptySettings.size(),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      const int err = n < 0 ? errno : 0;
      if (n == static_cast<ssize_t>(http2::kEmptySettings.size())) {
        settings_sent = true;
        ls.capture_h2_settings.Inc();
        continue;
      }
      ls.capture_h2_settings_failed.Inc();
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
        // Nothing went out: the client is matched by address or passes, as
        // if it had never been tried.
        LOG_WARN_LIMITED("listener {}: HTTP/2 client to {}: SETTINGS not sent (socket full)",
                         lc.name, key);
        continue;
      }
      LOG_WARN_LIMITED("listener {}: HTTP/2 client to {}: SETTINGS not sent whole ({}); closed",
                       lc.name, key, n < 0 ? std::strerror(err) : "a part of it");
      s.close(ignored);
      co_return;
    }
    seen = got;
    grew_at = Clock::now();
    const std::string_view v(buf.data(), seen);
    const bool full = v.size() == buf.size();
    const int h = HttpRequestStart(v);
    // "P" may start either; HttpRequestStart refuses the preface itself.
    const int h2 = h > 0 ? -1 : AuthorityOfHttp2Start(v, &host, settings_sent);
    if (h2 > 0 || (h < 0 && h2 < 0)) break;
    if (h > 0 && (v.find("\r\n\r\n") != std::string_view::npos || full)) {
      http = true;
      host = HostOfRequestHead(v);
      break;
    }
    if (full) break;  // an HTTP/2 start with no authority in max_detect_bytes
    h2_waits = h2 == 0 && v.size() >= http2::kPreface.size();
  }
  if (!host.empty()) {
    if (auto it = lc.by_host.find(host); it != lc.by_host.end()) {
      // The virtual listener's session tells HTTP/2 by its preface again.
      hand_to(it->second, settings_sent);
      co_return;
    }
  }
  if (lc.registry_only) {
    ls.Rejected(Reject::kEgressBlocked);
    const std::string what = !host.empty() ? host + " (" + key + ")" : key;
    LOG_INFO("listener {}: {} is not in the mesh and egress is registry-only: refused", lc.name,
             what);
    if (http) {
      const std::string body =
          "weft: " + what + " is not a mesh service and egress is registry-only\n";
      const std::string resp = fmt::format(
          "HTTP/1.1 502 {}\r\ncontent-type: text/plain\r\nconnection: close\r\n"
          "content-length: {}\r\n\r\n{}",
          http1::ReasonPhrase(502), body.size(), body);
      co_await asio::async_write(s, asio::buffer(resp), kNoThrow);
    }
    s.shutdown(tcp::socket::shutdown_both, ignored);
    s.close(ignored);
    co_return;
  }
  std::string pending;  // taken off the connection, for the destination first
  if (settings_sent) {
    const bool open = co_await TakeSettingsAck(w, s, lc, ls, key, buf, seen, &pending);
    if (!open) {
      s.close(ignored);
      co_return;
    }
  }
  SocketAddress to;
  to.storage = dst;
  to.len = dst.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  to.text = key;
  StartTcpSession(w, l, std::move(s), std::move(to), std::move(pending));
}

}  // namespace

void StartCaptureSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s) {
  asio::co_spawn(w->io(), Capture(w, std::move(l), std::move(s)), asio::detached);
}

}  // namespace weft::proxy
