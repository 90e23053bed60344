// A minimal gRPC echo server straight on libnghttp2 (HTTP/2 prior
// knowledge, one thread, epoll): every request that ends with a body gets
// :status 200, content-type application/grpc, the request body back as is
// (the gRPC message it carried) and the trailer grpc-status: 0; a request
// without a body gets 200 "ok". It does what the grpc++ echo server does at
// a fraction of the CPU, so that on a small machine the proxy in front of it
// saturates before it does (bench/h2.py, "proxy-bound").
//
//   weft_h2_echo_server [--port N]
//
// Prints `listening 127.0.0.1:PORT` once it serves.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Conn {
  int fd = -1;
  nghttp2_session* session = nullptr;
  std::string out;            // bytes the socket did not take yet
  bool watching_out = false;  // EPOLLOUT is armed
};

struct Req {
  std::string body;
  size_t sent = 0;
  bool grpc = false;
};

nghttp2_nv Nv(const char* n, const char* v) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n)),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v)), std::strlen(n),
                    std::strlen(v), NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

ssize_t OnSend(nghttp2_session*, const uint8_t* data, size_t len, int, void* user) {
  auto* c = static_cast<Conn*>(user);
  c->out.append(reinterpret_cast<const char*>(data), len);  // one write per loop turn
  return static_cast<ssize_t>(len);
}

int OnBeginHeaders(nghttp2_session* s, const nghttp2_frame* f, void*) {
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, new Req);
  return 0;
}

int OnHeader(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name, size_t nlen,
             const uint8_t* value, size_t vlen, uint8_t, void*) {
  auto* r = static_cast<Req*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
  if (r && nlen == 12 && !std::memcmp(name, "content-type", 12) && vlen >= 16 &&
      !std::memcmp(value, "application/grpc", 16))
    r->grpc = true;
  return 0;
}

int OnData(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len, void*) {
  auto* r = static_cast<Req*>(nghttp2_session_get_stream_user_data(s, id));
  if (r) r->body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

ssize_t ReadBody(nghttp2_session* s, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                 nghttp2_data_source* src, void*) {
  auto* r = static_cast<Req*>(src->ptr);
  size_t n = std::min(len, r->body.size() - r->sent);
  std::memcpy(buf, r->body.data() + r->sent, n);
  r->sent += n;
  if (r->sent == r->body.size()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (r->grpc) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      nghttp2_nv tr[] = {Nv("grpc-status", "0")};
      nghttp2_submit_trailer(s, id, tr, 1);
    }
  }
  return static_cast<ssize_t>(n);
}

int OnFrameRecv(nghttp2_session* s, const nghttp2_frame* f, void*) {
  if ((f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) ||
      !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  auto* r = static_cast<Req*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
  if (!r) return 0;
  if (!r->grpc && r->body.empty()) r->body = "ok";
  nghttp2_nv grpc_head[] = {Nv(":status", "200"), Nv("content-type", "application/grpc")};
  nghttp2_nv plain_head[] = {Nv(":status", "200"), Nv("content-type", "text/plain")};
  nghttp2_data_provider dp;
  dp.source.ptr = r;
  dp.read_callback = ReadBody;
  nghttp2_submit_response(s, f->hd.stream_id, r->grpc ? grpc_head : plain_head, 2, &dp);
  return 0;
}

int OnClose(nghttp2_session* s, int32_t id, uint32_t, void*) {
  delete static_cast<Req*>(nghttp2_session_get_stream_user_data(s, id));
  nghttp2_session_set_stream_user_data(s, id, nullptr);
  return 0;
}

void Close(int ep, Conn* c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  nghttp2_session_del(c->session);
  delete c;
}

// Sends what the session has; false when the connection is over.
bool Flush(int ep, Conn* c) {
  if (nghttp2_session_send(c->session) != 0) return false;
  while (!c->out.empty()) {
    ssize_t n = ::send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN) return false;
      break;
    }
    c->out.erase(0, static_cast<size_t>(n));
  }
  if (c->watching_out == c->out.empty()) {  // arm or disarm EPOLLOUT
    c->watching_out = !c->out.empty();
    epoll_event ev{};
    ev.events = EPOLLIN | (c->watching_out ? static_cast<uint32_t>(EPOLLOUT) : 0u);
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
  return nghttp2_session_want_read(c->session) || nghttp2_session_want_write(c->session) ||
         !c->out.empty();
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port")) port = std::atoi(argv[i + 1]);
  }
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 4096) != 0) {
    std::perror("listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &al);
  std::printf("listening 127.0.0.1:%d\n", ntohs(a.sin_port));
  std::fflush(stdout);

  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, OnSend);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, OnData);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, OnFrameRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, OnClose);

  int ep = epoll_create1(0);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.ptr = nullptr;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  static char buf[65536];
  epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; ++i) {
      if (!evs[i].data.ptr) {
        for (;;) {
          int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto* c = new Conn;
          c->fd = fd;
          nghttp2_session_server_new(&c->session, cbs, c);
          nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
                                         {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
          nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2);
          nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 16 << 20);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
          if (!Flush(ep, c)) Close(ep, c);
        }
        continue;
      }
      auto* c = static_cast<Conn*>(evs[i].data.ptr);
      bool alive = true;
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (;;) {
          ssize_t r = ::read(c->fd, buf, sizeof buf);
          if (r > 0) {
            if (nghttp2_session_mem_recv(c->session, reinterpret_cast<uint8_t*>(buf),
                                         static_cast<size_t>(r)) < 0) {
              alive = false;
              break;
            }
            if (static_cast<size_t>(r) < sizeof buf) break;
            continue;
          }
          if (r == 0 || errno != EAGAIN) alive = false;
          break;
        }
      }
      if (!alive || !Flush(ep, c)) Close(ep, c);
    }
  }
}
