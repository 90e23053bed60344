// Transparent interception: connections that `weft redirect`'s iptables
// rules sent to the capture listener. Each one's original destination
// (SO_ORIGINAL_DST) picks a mesh service; failing that, an HTTP/1.x
// request's Host or an HTTP/2 (prior knowledge) request's :authority does;
// what is neither passes through to where it was going, or is refused when
// egress is registry-only.
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <asio/experimental/awaitable_operators.hpp>
#include <string_view>

#include "base/log.h"
#include "base/strings.h"
#include "http/http1/parser.h"
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

asio::awaitable<void> Capture(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s) {
  using namespace asio::experimental::awaitable_operators;
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
  auto hand_to = [&](size_t index) {
    std::shared_ptr<ListenerRuntime> vl = w->ListenerAt(index);
    if (!vl || vl->removed) {
      s.close(ignored);
      return;
    }
    w->Serve(vl, std::move(s));
  };
  if (auto it = lc.by_address.find(key); it != lc.by_address.end()) {
    hand_to(it->second);
    co_return;
  }
  // Not a mesh address: an HTTP request may still name a mesh service, by
  // Host (HTTP/1.x) or by :authority (HTTP/2 with prior knowledge). Peek
  // (the session reads the same bytes again) until the head, or the first
  // HEADERS block up to its authority, is in, or the client is quiet for
  // the detection timeout: then it is TCP. (An HTTP/2 client that waits
  // for the server's SETTINGS before its first request, as gRPC's C core
  // does, says no authority in time: it is matched by address or passes.)
  bool http = false;  // an HTTP/1.x head: answered with a 502 under registry-only
  std::string host;   // the name a head or an HTTP/2 start gave
  std::string buf(lc.max_detect_bytes, '\0');
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(lc.detect_timeout_ms);
  size_t seen = 0;
  for (;;) {
    asio::steady_timer t(w->io());
    t.expires_at(until);
    auto which =
        co_await (s.async_wait(tcp::socket::wait_read, kNoThrow) || t.async_wait(kNoThrow));
    if (which.index() == 1) break;  // quiet: decide on what came
    const ssize_t got = ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    if (got == 0) {  // closed before a byte: nothing to proxy
      s.close(ignored);
      co_return;
    }
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      s.close(ignored);
      co_return;
    }
    const std::string_view v(buf.data(), static_cast<size_t>(got));
    const bool full = v.size() == buf.size();
    const int h = HttpRequestStart(v);
    // "P" may start either; HttpRequestStart refuses the preface itself.
    const int h2 = h > 0 ? -1 : AuthorityOfHttp2Start(v, &host);
    if (h2 > 0 || (h < 0 && h2 < 0)) break;
    if (h > 0 && (v.find("\r\n\r\n") != std::string_view::npos || full)) {
      http = true;
      host = HostOfRequestHead(v);
      break;
    }
    if (full) break;  // an HTTP/2 start with no authority in max_detect_bytes
    if (static_cast<size_t>(got) == seen) {
      // Nothing new since the last peek: wait a little instead of spinning.
      asio::steady_timer pause(w->io(), std::chrono::milliseconds(2));
      co_await pause.async_wait(kNoThrow);
    }
    seen = static_cast<size_t>(got);
  }
  if (!host.empty()) {
    if (auto it = lc.by_host.find(host); it != lc.by_host.end()) {
      // The virtual listener's session tells HTTP/2 by its preface again.
      hand_to(it->second);
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
  SocketAddress to;
  to.storage = dst;
  to.len = dst.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  to.text = key;
  StartTcpSession(w, l, std::move(s), std::move(to));
}

}  // namespace

void StartCaptureSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s) {
  asio::co_spawn(w->io(), Capture(w, std::move(l), std::move(s)), asio::detached);
}

}  // namespace weft::proxy
