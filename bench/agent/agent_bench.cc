// Agent lookup benchmark: closed-loop DNS (UDP) and HTTP lookups against the
// agent, and the same loops against bare loopback echo servers (the floor:
// what the kernel and the client cost with no agent work at all).
//
//   weft_agent_bench --echo-udp 127.0.0.1:0        serve as the UDP floor
//   weft_agent_bench --echo-http 127.0.0.1:0       serve as the HTTP floor
//   weft_agent_bench --dns H:P --name N [--seconds S]
//   weft_agent_bench --http H:P --path P [--seconds S]
// Client modes print one JSON line: lookups/s, p50/p99/p999 in µs.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "agent/dns.h"
#include "base/net.h"
#include "http/client.h"

namespace {

using Clock = std::chrono::steady_clock;

bool Parse(const std::string& hp, sockaddr_storage* ss, socklen_t* len) {
  std::string why;
  auto a = weft::ParseSocketAddress(hp, &why);
  if (!a) return false;
  *ss = a->storage;
  *len = a->len;
  return true;
}

int Bound(int fd) {
  sockaddr_in a{};
  socklen_t l = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
  return ntohs(a.sin_port);
}

int EchoUdp(const std::string& addr) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!Parse(addr, &ss, &len)) return 2;
  int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return 1;
  std::printf("echo listening %d\n", Bound(fd));
  std::fflush(stdout);
  char buf[65536];
  for (;;) {
    sockaddr_storage from{};
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n > 0) {
      buf[2] |= static_cast<char>(0x80);  // QR: it looks like an answer
      sendto(fd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), fl);
    }
  }
}

int EchoHttp(const std::string& addr) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!Parse(addr, &ss, &len)) return 2;
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 64) != 0) return 1;
  std::printf("echo listening %d\n", Bound(fd));
  std::fflush(stdout);
  for (;;) {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    std::thread([c] {
      static constexpr char kResp[] =
          "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]";
      std::string in;
      char buf[4096];
      for (;;) {
        ssize_t n = recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        size_t end;
        while ((end = in.find("\r\n\r\n")) != std::string::npos) {
          in.erase(0, end + 4);
          if (send(c, kResp, sizeof(kResp) - 1, MSG_NOSIGNAL) < 0) break;
        }
      }
      close(c);
    }).detach();
  }
}

void Report(std::vector<double>& us, double secs, const std::string& what) {
  std::sort(us.begin(), us.end());
  auto at = [&](double p) {
    return us.empty() ? 0.0 : us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))];
  };
  std::printf(
      "{\"what\":\"%s\",\"lookups\":%zu,\"per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":"
      "%.1f}\n",
      what.c_str(), us.size(), us.size() / secs, at(0.5), at(0.99), at(0.999));
}

int Dns(const std::string& addr, const std::string& name, double seconds) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!Parse(addr, &ss, &len)) return 2;
  int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return 1;
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const std::string q = weft::dns::BuildQuery(name, weft::dns::kA, 4096);
  char buf[65536];
  std::vector<double> us;
  us.reserve(2000000);
  size_t lost = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    const auto t0 = Clock::now();
    send(fd, q.data(), q.size(), 0);
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 12) {
      ++lost;
      continue;
    }
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (lost) std::fprintf(stderr, "%zu queries unanswered\n", lost);
  Report(us, secs, "dns " + name);
  return 0;
}

int Http(const std::string& addr, const std::string& path, double seconds) {
  weft::http::Client c(addr);
  std::vector<double> us;
  us.reserve(1000000);
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    const auto t0 = Clock::now();
    auto r = c.Do("GET", path);
    if (!r.ok() || r->status != 200) {
      std::fprintf(stderr, "request failed\n");
      return 1;
    }
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  Report(us, std::chrono::duration<double>(Clock::now() - start).count(), "http " + path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode, addr, name, path = "/";
  double seconds = 5;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (k == "--echo-udp" || k == "--echo-http" || k == "--dns" || k == "--http") {
      mode = k;
      addr = next();
    } else if (k == "--name") {
      name = next();
    } else if (k == "--path") {
      path = next();
    } else if (k == "--seconds") {
      seconds = std::stod(next());
    } else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (mode == "--echo-udp") return EchoUdp(addr);
  if (mode == "--echo-http") return EchoHttp(addr);
  if (mode == "--dns") return Dns(addr, name, seconds);
  if (mode == "--http") return Http(addr, path, seconds);
  std::fprintf(stderr, "usage: see the comment at the top of bench/agent/agent_bench.cc\n");
  return 2;
}
