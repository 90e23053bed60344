// `weft up`'s process supervisor (see up_processes.h).
#include "cli/up_processes.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "http/client.h"

namespace weft::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

}  // namespace

void CatchStopSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool StopRequested() { return g_stop.load(); }

bool PortFree(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // As the listeners will: connections in TIME_WAIT do not hold the port.
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

bool Processes::Start(const std::string& name, const std::vector<std::string>& args,
                      std::string* err) {
  std::string log = dir_ + "/" + name + ".log";
  // Exec'd by its real path, not /proc/self/exe: the kernel names a process
  // after the file it runs, and ps, top and ss should say "weft", not "exe".
  std::error_code ec;
  std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec || ::access(self.c_str(), X_OK) != 0) self = "/proc/self/exe";  // moved or deleted
  std::vector<std::string> argv_s = {"weft"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_s.size() + 1);
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    *err = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int nul = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || nul < 0) ::_exit(126);
    ::dup2(nul, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    ::execv(self.c_str(), argv.data());
    ::_exit(127);
  }
  children_.push_back({name, pid, log});
  return true;
}

std::string Processes::Dead() {
  for (auto& c : children_) {
    if (c.pid < 0) continue;
    int status = 0;
    if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.pid = -1;
      std::string how = WIFEXITED(status)
                            ? "exited with status " + std::to_string(WEXITSTATUS(status))
                            : "was killed by signal " + std::to_string(WTERMSIG(status));
      return c.name + " " + how + "; the end of " + c.log + ":\n" + Tail(c.log, 8);
    }
  }
  return "";
}

size_t Processes::StopAll() {
  size_t n = 0;
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    if (it->pid < 0) continue;
    ::kill(it->pid, SIGTERM);
    int status = 0;
    bool gone = false;
    for (int i = 0; i < 500 && !gone; ++i) {
      gone = ::waitpid(it->pid, &status, WNOHANG) == it->pid;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!gone) {
      std::fprintf(stderr, "weft up: %s did not stop in 5s; killing it\n", it->name.c_str());
      ::kill(it->pid, SIGKILL);
      ::waitpid(it->pid, &status, 0);
    }
    it->pid = -1;
    ++n;
  }
  return n;
}

std::string Processes::Tail(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "    " + all[i] + "\n";
  return out;
}

std::string WaitHttp(Processes& procs, const std::string& addr, const std::string& path,
                     int64_t timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  http::ClientOptions o;
  o.connect_timeout_ms = 500;
  o.io_timeout_ms = 2000;
  std::string last = "no answer";
  while (Clock::now() < deadline && !StopRequested()) {
    if (std::string d = procs.Dead(); !d.empty()) return d;
    http::Client c(addr, o);
    auto r = c.Do("GET", path);
    if (r.ok() && r->status == 200) return "";
    last = r.ok() ? "status " + std::to_string(r->status) + ": " + r->body.substr(0, 200)
                  : r.status().message();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (StopRequested()) return "interrupted";
  return "http://" + addr + path + " not ready after " + std::to_string(timeout_ms / 1000) + "s (" +
         last + ")";
}

}  // namespace weft::cli
