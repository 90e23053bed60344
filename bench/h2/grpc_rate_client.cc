// An open-loop gRPC (HTTP/2, prior knowledge) load generator for latency at
// a fixed rate: call k is due at t0 + k/RATE and goes out on connection
// k % CONNECTIONS; its latency counts from when it was due, not from when
// it could be sent, so a stall shows in the percentiles instead of hiding
// behind a slower send rate (coordinated omission). The first second is
// warm-up. A call succeeds when it ends with :status 200 and grpc-status 0.
//
//   weft_grpc_rate_client HOST:PORT RATE SECONDS CONNECTIONS PATH MESSAGE_FILE
//
// MESSAGE_FILE is the request body: one gRPC message (flag byte, 4-byte
// big-endian length, payload). Prints one JSON line: requests, errors,
// achieved_rps, p50_us, p90_us, p99_us, p999_us, max_us.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Shared {
  Clock::time_point warm_until;
  std::string body;
  std::vector<int64_t> latencies_ns;
  size_t errors = 0, done = 0, started = 0;
};

struct Call {
  Clock::time_point due;
  size_t sent = 0;  // body bytes handed to nghttp2
  int status = 0;
  int grpc_status = -1;
};

struct Conn {
  int fd = -1;
  nghttp2_session* session = nullptr;
  Shared* shared = nullptr;
  std::string out;  // bytes nghttp2 produced that the socket did not take yet
  bool dead = false;
};

ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                 nghttp2_data_source* src, void* user) {
  auto* call = static_cast<Call*>(src->ptr);
  auto* c = static_cast<Conn*>(user);
  size_t n = std::min(len, c->shared->body.size() - call->sent);
  std::memcpy(buf, c->shared->body.data() + call->sent, n);
  call->sent += n;
  if (call->sent == c->shared->body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int OnHeader(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void*) {
  auto* call = static_cast<Call*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
  if (!call) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":status")
    call->status = std::atoi(v.c_str());
  else if (n == "grpc-status")
    call->grpc_status = std::atoi(v.c_str());
  return 0;
}

int OnClose(nghttp2_session* s, int32_t id, uint32_t error_code, void* user) {
  auto* c = static_cast<Conn*>(user);
  auto* call = static_cast<Call*>(nghttp2_session_get_stream_user_data(s, id));
  if (!call) return 0;
  auto now = Clock::now();
  Shared& sh = *c->shared;
  sh.done++;
  bool ok = error_code == 0 && call->status == 200 && call->grpc_status == 0;
  if (call->due >= sh.warm_until) {
    if (ok)
      sh.latencies_ns.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - call->due).count());
    else
      sh.errors++;
  }
  delete call;
  return 0;
}

ssize_t OnSend(nghttp2_session*, const uint8_t* data, size_t len, int, void* user) {
  auto* c = static_cast<Conn*>(user);
  if (!c->out.empty()) {  // keep order: queue behind what is waiting
    c->out.append(reinterpret_cast<const char*>(data), len);
    return static_cast<ssize_t>(len);
  }
  ssize_t n = ::send(c->fd, data, len, MSG_NOSIGNAL);
  if (n < 0) {
    if (errno == EAGAIN)
      n = 0;
    else
      return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  if (static_cast<size_t>(n) < len) c->out.append(reinterpret_cast<const char*>(data) + n, len - n);
  return static_cast<ssize_t>(len);
}

bool Flush(Conn& c) {
  if (c.dead) return false;
  if (nghttp2_session_send(c.session) != 0) return c.dead = true, false;
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN) break;
      return c.dead = true, false;
    }
    c.out.erase(0, static_cast<size_t>(n));
  }
  return true;
}

double Pct(const std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return static_cast<double>(v[i]) / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s HOST:PORT RATE SECONDS CONNECTIONS PATH MESSAGE_FILE\n",
                 argv[0]);
    return 2;
  }
  std::string hp = argv[1];
  std::string host = hp.substr(0, hp.rfind(':'));
  int port = std::atoi(hp.substr(hp.rfind(':') + 1).c_str());
  double rate = std::atof(argv[2]);
  double secs = std::atof(argv[3]);
  int nconn = std::max(1, std::atoi(argv[4]));
  std::string path = argv[5];
  Shared sh;
  {
    std::ifstream f(argv[6], std::ios::binary);
    sh.body.assign(std::istreambuf_iterator<char>(f), {});
  }
  std::string authority = hp;

  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, OnSend);
  nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnClose);

  int ep = epoll_create1(0);
  std::vector<Conn> conns(static_cast<size_t>(nconn));
  for (auto& c : conns) {
    c.shared = &sh;
    c.fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      std::perror("connect");
      return 1;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    nghttp2_session_client_new(&c.session, cbs, &c);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(c.session, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(c.session, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &c;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    Flush(c);
  }

  auto mk = [](const char* n, const std::string& v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), std::strlen(n),
                      v.size(), NGHTTP2_NV_FLAG_NONE};
  };
  const std::string m = "POST", sc = "http", ct = "application/grpc", te = "trailers";
  const std::string len = std::to_string(sh.body.size());
  nghttp2_nv nva[] = {mk(":method", m),  mk(":scheme", sc),      mk(":authority", authority),
                      mk(":path", path), mk("content-type", ct), mk("te", te)};

  const auto t0 = Clock::now() + std::chrono::milliseconds(50);
  sh.warm_until = t0 + std::chrono::seconds(1);
  const auto end = t0 + std::chrono::nanoseconds(static_cast<int64_t>(secs * 1e9));
  const double interval_ns = 1e9 / rate;
  uint64_t k = 0;
  char buf[65536];
  epoll_event evs[64];
  for (;;) {
    auto now = Clock::now();
    // Submit every call that is due.
    for (;;) {
      auto due =
          t0 + std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(k) * interval_ns));
      if (due > now || due >= end) break;
      Conn& c = conns[k % conns.size()];
      auto* call = new Call{due};
      nghttp2_data_provider dp;
      dp.source.ptr = call;
      dp.read_callback = ReadBody;
      if (nghttp2_submit_request(c.session, nullptr, nva, sizeof nva / sizeof nva[0], &dp, call) <
          0) {
        delete call;
        if (due >= sh.warm_until) sh.errors++;
      } else {
        sh.started++;
      }
      k++;
    }
    for (auto& c : conns) Flush(c);
    bool submitting =
        t0 + std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(k) * interval_ns)) <
        end;
    if (!submitting && sh.done >= sh.started) break;
    if (!submitting && now > end + std::chrono::seconds(5))
      break;  // stragglers count as errors below
    timespec ts{0, 0};
    if (submitting) {
      auto next =
          t0 + std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(k) * interval_ns));
      auto wait = std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::nanoseconds>(next - Clock::now()).count());
      ts.tv_sec = wait / 1000000000;
      ts.tv_nsec = wait % 1000000000;
    } else {
      ts.tv_nsec = 10000000;
    }
    int n = epoll_pwait2(ep, evs, 64, &ts, nullptr);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(evs[i].data.ptr);
      if (c->dead) continue;
      for (;;) {
        ssize_t r = ::read(c->fd, buf, sizeof buf);
        if (r > 0) {
          if (nghttp2_session_mem_recv(c->session, reinterpret_cast<uint8_t*>(buf),
                                       static_cast<size_t>(r)) < 0) {
            c->dead = true;
            break;
          }
          continue;
        }
        if (r == 0 || errno != EAGAIN) {
          c->dead = true;
          epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
        }
        break;
      }
      Flush(*c);
    }
  }
  size_t unfinished = sh.started - sh.done;
  std::sort(sh.latencies_ns.begin(), sh.latencies_ns.end());
  double measured_s = secs - 1.0;
  std::printf(
      "{\"requests\": %zu, \"errors\": %zu, \"achieved_rps\": %.1f, \"p50_us\": %.1f, \"p90_us\": "
      "%.1f, "
      "\"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f}\n",
      sh.latencies_ns.size(), sh.errors + unfinished,
      measured_s > 0 ? static_cast<double>(sh.latencies_ns.size()) / measured_s : 0.0,
      Pct(sh.latencies_ns, 0.50), Pct(sh.latencies_ns, 0.90), Pct(sh.latencies_ns, 0.99),
      Pct(sh.latencies_ns, 0.999),
      sh.latencies_ns.empty() ? 0.0 : static_cast<double>(sh.latencies_ns.back()) / 1000.0);
  for (auto& c : conns) {
    nghttp2_session_del(c.session);
    ::close(c.fd);
  }
  nghttp2_session_callbacks_del(cbs);
  return 0;
}
