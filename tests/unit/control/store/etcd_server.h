// A real etcd (Debian's etcd-server) for the store tests, on loopback ports
// the kernel hands out, in a data directory of its own; killed and removed
// on destruction. error() says why it is not there (the tests fail with it:
// CI installs etcd-server through scripts/deps.sh).
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "http/client.h"

namespace weft::control::store {

class EtcdServer {
 public:
  explicit EtcdServer(const std::string& tag) {
    if (access("/usr/bin/etcd", X_OK) != 0) {
      error_ = "etcd is required for these tests (Debian's etcd-server): run scripts/deps.sh";
      return;
    }
    dir_ = std::filesystem::temp_directory_path() /
           ("weft-" + tag + "-etcd-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    client_ = ReservePort();
    const int peer = ReservePort();
    const std::string c = "http://127.0.0.1:" + std::to_string(client_);
    const std::string p = "http://127.0.0.1:" + std::to_string(peer);
    pid_ = fork();
    if (pid_ == 0) {
      freopen("/dev/null", "w", stdout);
      freopen("/dev/null", "w", stderr);
      execl("/usr/bin/etcd", "etcd", "--name", "t", "--data-dir", dir_.c_str(),
            "--listen-client-urls", c.c_str(), "--advertise-client-urls", c.c_str(),
            "--listen-peer-urls", p.c_str(), "--initial-advertise-peer-urls", p.c_str(),
            "--initial-cluster", ("t=" + p).c_str(), nullptr);
      _exit(127);
    }
    http::Client probe(endpoint());
    for (int i = 0; i < 200; ++i) {
      auto r = probe.Do("GET", "/health");
      if (r.ok() && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    error_ = "etcd did not start";
  }
  ~EtcdServer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  const std::string& error() const { return error_; }
  int port() const { return client_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(client_); }

  // A port the kernel picked and that is free now (etcd must be told its
  // ports: it advertises them). Also a port nothing listens on, for tests.
  static int ReservePort() {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
  }

 private:
  std::filesystem::path dir_;
  std::string error_;
  int client_ = 0;
  pid_t pid_ = -1;
};

}  // namespace weft::control::store
