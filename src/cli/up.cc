// `weft up FILE`: a whole mesh on this machine. It starts a server, an agent,
// demo services each behind its own sidecar, applies the file's manifests,
// sends traffic and shows the services' golden metrics every second until
// Ctrl-C (or --duration), then stops every process it started.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/file.h"
#include "base/strings.h"
#include "base/yaml_fields.h"
#include "cli/ctl.h"
#include "cli/flags.h"
#include "cli/stat.h"
#include "http/client.h"
#include "mesh/manifest.h"
#include "mesh/names.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kUpUsage =
    "weft up FILE [--duration DUR] [--dir DIR] [--keep]\n"
    "  FILE: a LocalMesh document (server, agent, services, traffic) and the manifests to apply";

int BadUsageUp(const std::string& msg) { return BadUsage("up: " + msg, kUpUsage); }

struct UpCall {
  std::string service;
  std::string path = "/";
};

struct UpService {
  std::string name;
  std::string version = "v1";
  uint16_t port = 0;  // the app's; 0: from portBase
  int64_t latency_ms = 0, jitter_ms = 0;
  double error_rate = 0;
  std::vector<UpCall> calls;
  // Assigned:
  uint16_t sidecar = 0, admin = 0;
  std::vector<uint16_t> upstream_ports;  // one per call
};

struct UpSpec {
  std::string server_http = "127.0.0.1:8500", server_grpc = "127.0.0.1:8502";
  std::string agent_http = "127.0.0.1:8501", agent_dns = "127.0.0.1:8600";
  uint16_t port_base = 21000;
  std::string traffic_to;
  std::string traffic_path = "/";
  double rate = 20;
  std::vector<UpService> services;
  std::vector<mesh::Manifest> manifests;
  // Assigned: the traffic generator's sidecar.
  uint16_t loadgen_sidecar = 0, loadgen_sidecar_admin = 0, loadgen_upstream = 0;
};

uint16_t PortOf(const std::string& host_port) {
  const size_t c = host_port.rfind(':');
  return c == std::string::npos ? 0 : static_cast<uint16_t>(std::atoi(host_port.c_str() + c + 1));
}

// Parses the LocalMesh document; the other documents are manifests.
bool ParseUpFile(const std::string& text, UpSpec* spec, std::string* err) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    *err = std::string("not YAML: ") + e.what();
    return false;
  }
  std::string manifests;
  bool found = false;
  try {
    for (const auto& d : docs) {
      if (!d.IsMap()) continue;
      if (!(d["kind"] && d["kind"].IsScalar() && d["kind"].as<std::string>() == "LocalMesh")) {
        YAML::Emitter e;
        e << d;
        manifests += std::string("---\n") + e.c_str() + "\n";
        continue;
      }
      if (found) yaml::Fail("kind LocalMesh", "only one LocalMesh document per file");
      found = true;
      yaml::CheckKeys(d, "", {"kind", "spec"});
      const YAML::Node s = d["spec"];
      if (!s || !s.IsMap()) yaml::Fail("spec", "a map is required");
      yaml::CheckKeys(s, "spec", {"server", "agent", "portBase", "traffic", "services"});
      auto addr = [](const YAML::Node& n, const std::string& path, std::string* out) {
        if (!n) return;
        *out = yaml::Scalar(n, path);
        if (PortOf(*out) == 0) yaml::Fail(path + " " + yaml::Quoted(n), "use HOST:PORT");
      };
      if (const auto n = s["server"]) {
        yaml::CheckKeys(n, "spec.server", {"http", "grpc"});
        addr(n["http"], "spec.server.http", &spec->server_http);
        addr(n["grpc"], "spec.server.grpc", &spec->server_grpc);
      }
      if (const auto n = s["agent"]) {
        yaml::CheckKeys(n, "spec.agent", {"http", "dns"});
        addr(n["http"], "spec.agent.http", &spec->agent_http);
        addr(n["dns"], "spec.agent.dns", &spec->agent_dns);
      }
      if (s["portBase"])
        spec->port_base =
            static_cast<uint16_t>(yaml::Unsigned(s["portBase"], "spec.portBase", 1024, 64000));
      if (const auto n = s["traffic"]) {
        yaml::CheckKeys(n, "spec.traffic", {"to", "path", "rate"});
        if (n["to"]) spec->traffic_to = yaml::Scalar(n["to"], "spec.traffic.to");
        if (n["path"]) spec->traffic_path = yaml::Scalar(n["path"], "spec.traffic.path");
        if (n["rate"])
          spec->rate = static_cast<double>(yaml::Unsigned(n["rate"], "spec.traffic.rate", 1, 2000));
      }
      const YAML::Node svcs = s["services"];
      if (!svcs || !svcs.IsSequence() || svcs.size() == 0)
        yaml::Fail("spec.services", "a list of at least one service is required");
      if (svcs.size() > 50) yaml::Fail("spec.services", "at most 50 services");
      std::set<std::string> names;
      for (size_t i = 0; i < svcs.size(); ++i) {
        const std::string p = "spec.services[" + std::to_string(i) + "]";
        const YAML::Node n = svcs[i];
        yaml::CheckKeys(n, p,
                        {"name", "version", "port", "latency", "jitter", "errorRate", "calls"});
        UpService u;
        if (!n["name"]) yaml::Fail(p + ".name", "required");
        u.name = yaml::Scalar(n["name"], p + ".name");
        if (!mesh::IsDnsLabel(u.name) || u.name == "loadgen")
          yaml::Fail(p + ".name " + yaml::Quoted(n["name"]),
                     "use a DNS label other than loadgen (lower-case letters, digits, '-')");
        if (!names.insert(u.name).second) yaml::Fail(p + ".name", "\"" + u.name + "\" twice");
        if (n["version"]) u.version = yaml::Scalar(n["version"], p + ".version");
        if (n["port"])
          u.port = static_cast<uint16_t>(yaml::Unsigned(n["port"], p + ".port", 1, 65535));
        if (n["latency"]) u.latency_ms = yaml::Duration(n["latency"], p + ".latency");
        if (n["jitter"]) u.jitter_ms = yaml::Duration(n["jitter"], p + ".jitter");
        if (n["errorRate"]) {
          const std::string v = yaml::Scalar(n["errorRate"], p + ".errorRate");
          char* end = nullptr;
          u.error_rate = std::strtod(v.c_str(), &end);
          if (end == v.c_str() || *end || u.error_rate < 0 || u.error_rate > 1)
            yaml::Fail(p + ".errorRate " + yaml::Quoted(n["errorRate"]),
                       "use a number from 0 to 1");
        }
        if (const auto c = n["calls"]) {
          if (!c.IsSequence()) yaml::Fail(p + ".calls", "a list of SERVICE or SERVICE/PATH");
          for (size_t k = 0; k < c.size(); ++k) {
            const std::string v = yaml::Scalar(c[k], p + ".calls[" + std::to_string(k) + "]");
            UpCall call;
            const size_t slash = v.find('/');
            call.service = v.substr(0, slash);
            if (slash != std::string::npos) call.path = v.substr(slash);
            if (!mesh::IsDnsLabel(call.service))
              yaml::Fail(p + ".calls[" + std::to_string(k) + "] " + yaml::Quoted(c[k]),
                         "use SERVICE or SERVICE/PATH");
            u.calls.push_back(call);
          }
        }
        spec->services.push_back(std::move(u));
      }
    }
  } catch (const yaml::FieldError& e) {
    *err = e.Line("");
    return false;
  } catch (const YAML::Exception& e) {
    *err = std::string("not YAML: ") + e.what();
    return false;
  }
  if (!found) {
    *err = "no `kind: LocalMesh` document (see examples/quickstart.yaml)";
    return false;
  }
  if (spec->traffic_to.empty()) spec->traffic_to = spec->services[0].name;
  bool to_known = false;
  for (const auto& u : spec->services) to_known |= u.name == spec->traffic_to;
  if (!to_known) {
    *err = "spec.traffic.to \"" + spec->traffic_to + "\": not one of the services";
    return false;
  }
  if (!manifests.empty()) {
    auto r = mesh::ParseManifests(manifests);
    if (!r.ok()) {
      *err = r.status().message();
      return false;
    }
    spec->manifests = std::move(r.value());
  }
  // Ports: sidecars from portBase, admin ports from +100, upstreams from
  // +200, apps without a port from +300.
  uint16_t up = spec->port_base + 200;
  for (size_t i = 0; i < spec->services.size(); ++i) {
    UpService& u = spec->services[i];
    u.sidecar = static_cast<uint16_t>(spec->port_base + i);
    u.admin = static_cast<uint16_t>(spec->port_base + 100 + i);
    if (u.port == 0) u.port = static_cast<uint16_t>(spec->port_base + 300 + i);
    for (size_t k = 0; k < u.calls.size(); ++k) u.upstream_ports.push_back(up++);
  }
  spec->loadgen_sidecar = static_cast<uint16_t>(spec->port_base + 99);
  spec->loadgen_sidecar_admin = static_cast<uint16_t>(spec->port_base + 199);
  spec->loadgen_upstream = up++;
  return true;
}

// True when nothing listens on 127.0.0.1:port (a bind succeeds).
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

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

struct Child {
  std::string name;
  pid_t pid = -1;
  std::string log;
};

class Processes {
 public:
  explicit Processes(std::string dir) : dir_(std::move(dir)) {}
  ~Processes() { StopAll(); }

  // Runs this binary with `args`, output to DIR/NAME.log, in its own process
  // group (Ctrl-C reaches only `weft up`, which stops the rest in order) and
  // with SIGTERM as its parent-death signal.
  bool Start(const std::string& name, const std::vector<std::string>& args, std::string* err) {
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

  // The first child that has exited, with how; "" when all run.
  std::string Dead() {
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

  // SIGTERM in reverse start order (sidecars and apps, then the agent, then
  // the server), 5 s to exit each, then SIGKILL. Returns how many stopped.
  size_t StopAll() {
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

  static std::string Tail(const std::string& path, size_t lines) {
    std::ifstream in(path);
    std::vector<std::string> all;
    for (std::string l; std::getline(in, l);) all.push_back(l);
    std::string out;
    for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
      out += "    " + all[i] + "\n";
    return out;
  }

 private:
  std::string dir_;
  std::vector<Child> children_;
};

// Polls GET http://ADDR/PATH until it answers 200, a child dies, or the
// deadline; returns "" or what went wrong.
std::string WaitHttp(Processes& procs, const std::string& addr, const std::string& path,
                     int64_t timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  http::ClientOptions o;
  o.connect_timeout_ms = 500;
  o.io_timeout_ms = 2000;
  std::string last = "no answer";
  while (Clock::now() < deadline && !g_stop.load()) {
    if (std::string d = procs.Dead(); !d.empty()) return d;
    http::Client c(addr, o);
    auto r = c.Do("GET", path);
    if (r.ok() && r->status == 200) return "";
    last = r.ok() ? "status " + std::to_string(r->status) + ": " + r->body.substr(0, 200)
                  : r.status().message();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (g_stop.load()) return "interrupted";
  return "http://" + addr + path + " not ready after " + std::to_string(timeout_ms / 1000) + "s (" +
         last + ")";
}

// An HTTP PUT to the agent's API; "" or the error.
std::string AgentPut(const std::string& agent, const std::string& target, const json& body) {
  http::Client c(agent);
  auto r = c.Do("PUT", target, body.dump(), {{"content-type", "application/json"}});
  if (!r.ok()) return r.status().message();
  if (r->status != 200) return "status " + std::to_string(r->status) + ": " + r->body;
  return "";
}

// Sends GETs at a fixed rate from a few threads (each with its own kept-alive
// connection); counts what came back.
class Traffic {
 public:
  Traffic(std::string addr, std::string path, double rate)
      : addr_(std::move(addr)), path_(std::move(path)), rate_(rate) {}
  ~Traffic() { Stop(); }
  void Start() {
    start_ = Clock::now();
    const int threads = rate_ > 200 ? 8 : 4;
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  void Stop() {
    stop_.store(true);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  uint64_t ok() const { return ok_.load(); }
  uint64_t failed() const { return failed_.load(); }

 private:
  void Run() {
    http::ClientOptions o;
    o.connect_timeout_ms = 1000;
    o.io_timeout_ms = 5000;
    http::Client c(addr_, o);
    while (!stop_.load()) {
      const uint64_t i = next_.fetch_add(1);
      const auto at = start_ + std::chrono::microseconds(static_cast<int64_t>(1e6 * i / rate_));
      while (Clock::now() < at && !stop_.load())
        std::this_thread::sleep_for(
            std::min<Clock::duration>(at - Clock::now(), std::chrono::milliseconds(50)));
      if (stop_.load()) break;
      auto r = c.Do("GET", path_);
      (r.ok() && r->status < 500 ? ok_ : failed_).fetch_add(1);
    }
  }
  const std::string addr_, path_;
  const double rate_;
  Clock::time_point start_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> next_{0}, ok_{0}, failed_{0};
  std::vector<std::thread> threads_;
};

}  // namespace

int UpMain(const Args& args) {
  std::string file, dir;
  int64_t duration_ms = 0;
  bool keep = false;
  for (size_t i = 0; i < args.size(); ++i) {
    FlagArg flag(args, &i);
    const std::string a(flag.name());
    auto value = [&](std::string* out) { return flag.Value(out); };
    std::string v;
    if (a == "--duration") {
      if (!value(&v)) return BadUsageUp("--duration needs a value");
      auto ms = ParseDurationMs(v);
      if (!ms || *ms <= 0) return BadUsageUp("--duration \"" + v + "\": use a duration like 30s");
      duration_ms = *ms;
    } else if (a == "--dir") {
      if (!value(&dir)) return BadUsageUp("--dir needs a value");
    } else if (a == "--keep") {
      keep = true;
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n", kUpUsage);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return BadUsageUp("unknown or incomplete flag \"" + a + "\"");
    } else if (file.empty()) {
      file = a;
    } else {
      return BadUsageUp("one FILE only");
    }
  }
  if (file.empty()) return BadUsageUp("FILE is required (try examples/quickstart.yaml)");
  std::string err;
  const std::string text = ReadWholeFile(file, &err);
  if (!err.empty()) {
    std::fprintf(stderr, "weft up: %s\n", err.c_str());
    return 1;
  }
  UpSpec spec;
  if (!ParseUpFile(text, &spec, &err)) {
    std::fprintf(stderr, "weft up: %s: %s\n", file.c_str(), err.c_str());
    return 1;
  }

  // Every port we will listen on must be free before anything starts.
  std::vector<std::pair<uint16_t, std::string>> ports = {
      {PortOf(spec.server_http), "server API"},
      {PortOf(spec.server_grpc), "server config stream"},
      {PortOf(spec.agent_http), "agent API"},
      {spec.loadgen_sidecar, "traffic sidecar"},
      {spec.loadgen_sidecar_admin, "traffic sidecar admin"},
      {spec.loadgen_upstream, "traffic sidecar upstream"}};
  for (const auto& u : spec.services) {
    ports.emplace_back(u.port, u.name + " app");
    ports.emplace_back(u.sidecar, u.name + " sidecar");
    ports.emplace_back(u.admin, u.name + " sidecar admin");
    for (uint16_t p : u.upstream_ports) ports.emplace_back(p, u.name + " sidecar upstream");
  }
  std::set<uint16_t> seen;
  for (const auto& [p, what] : ports) {
    if (!seen.insert(p).second) {
      std::fprintf(stderr,
                   "weft up: port %u (%s) is used twice in %s; change the ports or portBase\n", p,
                   what.c_str(), file.c_str());
      return 1;
    }
    if (!PortFree(p)) {
      std::fprintf(stderr,
                   "weft up: port %u (%s) is in use; stop what holds it (is another `weft up` "
                   "running?) or change portBase in %s\n",
                   p, what.c_str(), file.c_str());
      return 1;
    }
  }

  namespace fs = std::filesystem;
  bool made_dir = false;
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "weft-up-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      std::fprintf(stderr, "weft up: mkdtemp: %s\n", std::strerror(errno));
      return 1;
    }
    dir = tmpl;
    made_dir = true;
  } else {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      std::fprintf(stderr, "weft up: --dir %s: %s\n", dir.c_str(), ec.message().c_str());
      return 1;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const bool tty = ::isatty(STDOUT_FILENO);
  auto step = [](const std::string& what, const std::string& detail) {
    std::printf("  %-12s %s\n", what.c_str(), detail.c_str());
    std::fflush(stdout);
  };
  Processes procs(dir);
  int rc = 0;
  auto fail = [&](const std::string& msg) {
    std::fprintf(stderr, "weft up: %s\n", msg.c_str());
    rc = g_stop.load() ? 0 : 1;
  };
  std::unique_ptr<Traffic> traffic;
  const std::string sock = "unix:" + dir + "/agent/weft.sock";
  const std::string loadgen_addr = "127.0.0.1:" + std::to_string(spec.loadgen_upstream);
  const auto t0 = Clock::now();
  auto elapsed = [&] {
    return fmt::format("{:.1f}s", std::chrono::duration<double>(Clock::now() - t0).count());
  };
  std::printf("weft up %s (logs in %s)\n", file.c_str(), dir.c_str());
  do {
    if (!procs.Start("server",
                     {"server", "--dev", "--data-dir", dir + "/server", "--http", spec.server_http,
                      "--grpc", spec.server_grpc, "--grpc-tls"},
                     &err)) {
      fail(err);
      break;
    }
    if (err = WaitHttp(procs, spec.server_http, "/ready", 20000); !err.empty()) {
      fail("server: " + err);
      break;
    }
    step("server", "http://" + spec.server_http + " (API)  " + spec.server_grpc +
                       " (config stream, TLS)  embedded store, mesh CA  [" + elapsed() + "]");
    if (!procs.Start("agent",
                     {"agent", "--server", spec.server_grpc, "--node", "local", "--data-dir",
                      dir + "/agent", "--http", spec.agent_http, "--dns", spec.agent_dns,
                      "--server-ca", dir + "/server/ca.pem"},
                     &err)) {
      fail(err);
      break;
    }
    if (err = WaitHttp(procs, spec.agent_http, "/v1/agent/self", 20000); !err.empty()) {
      fail("agent: " + err);
      break;
    }
    step("agent", "http://" + spec.agent_http + " (API)  " + spec.agent_dns +
                      " (DNS: NAME.service.weft)  [" + elapsed() + "]");
    if (!spec.manifests.empty()) {
      if (ApplyManifests(spec.server_http, spec.manifests, nullptr) != 0) {
        fail("applying the manifests of " + file + " failed (above)");
        break;
      }
      std::string names;
      for (const auto& m : spec.manifests)
        names += (names.empty() ? "" : ", ") + m.kind + "/" + m.name;
      step("applied", names);
    }
    // Apps and their registrations first (health checks), then sidecars.
    for (const auto& u : spec.services) {
      std::vector<std::string> a = {"demo-app",
                                    "--name",
                                    u.name,
                                    "--version",
                                    u.version,
                                    "--listen",
                                    "127.0.0.1:" + std::to_string(u.port)};
      if (u.latency_ms) a.insert(a.end(), {"--latency", std::to_string(u.latency_ms) + "ms"});
      if (u.jitter_ms) a.insert(a.end(), {"--jitter", std::to_string(u.jitter_ms) + "ms"});
      if (u.error_rate > 0) a.insert(a.end(), {"--error-rate", fmt::format("{}", u.error_rate)});
      for (size_t k = 0; k < u.calls.size(); ++k)
        a.insert(a.end(),
                 {"--call", "127.0.0.1:" + std::to_string(u.upstream_ports[k]) + u.calls[k].path});
      if (!procs.Start(u.name, a, &err)) break;
      json reg = {{"Name", u.name},
                  {"ID", u.name + "-1"},
                  {"Address", "127.0.0.1"},
                  {"Port", u.port},
                  {"Meta", {{"version", u.version}}},
                  {"Check",
                   {{"HTTP", "http://127.0.0.1:" + std::to_string(u.port) + "/healthz"},
                    {"Interval", "1s"}}}};
      json ups = json::array();
      for (size_t k = 0; k < u.calls.size(); ++k)
        ups.push_back(
            {{"DestinationName", u.calls[k].service}, {"LocalBindPort", u.upstream_ports[k]}});
      json sc = {{"Name", u.name + "-sidecar"},
                 {"ID", u.name + "-sidecar"},
                 {"Kind", "connect-proxy"},
                 {"Address", "127.0.0.1"},
                 {"Port", u.sidecar},
                 {"Proxy",
                  {{"DestinationServiceName", u.name},
                   {"DestinationServiceID", u.name + "-1"},
                   {"LocalServicePort", u.port},
                   {"Upstreams", ups}}}};
      if (err = AgentPut(spec.agent_http, "/v1/agent/service/register", reg); err.empty())
        err = AgentPut(spec.agent_http, "/v1/agent/service/register", sc);
      if (!err.empty()) {
        err = "registering " + u.name + " with the agent: " + err;
        break;
      }
    }
    if (!err.empty()) {
      fail(err);
      break;
    }
    json lg = {{"Name", "loadgen-sidecar"},
               {"ID", "loadgen-sidecar"},
               {"Kind", "connect-proxy"},
               {"Address", "127.0.0.1"},
               {"Port", spec.loadgen_sidecar},
               {"Proxy",
                {{"DestinationServiceName", "loadgen"},
                 {"Upstreams", json::array({{{"DestinationName", spec.traffic_to},
                                             {"LocalBindPort", spec.loadgen_upstream}}})}}}};
    if (err = AgentPut(spec.agent_http, "/v1/agent/service/register", lg); !err.empty()) {
      fail("registering the traffic sidecar: " + err);
      break;
    }
    auto start_proxy = [&](const std::string& svc, uint16_t admin) {
      return procs.Start(svc + "-sidecar",
                         {"proxy", "--agent", sock, "--service", svc, "--admin",
                          "127.0.0.1:" + std::to_string(admin), "--workers", "1"},
                         &err);
    };
    for (const auto& u : spec.services)
      if (!start_proxy(u.name, u.admin)) break;
    if (err.empty()) start_proxy("loadgen", spec.loadgen_sidecar_admin);
    if (!err.empty()) {
      fail(err);
      break;
    }
    for (const auto& u : spec.services) {
      if (err = WaitHttp(procs, "127.0.0.1:" + std::to_string(u.port), "/healthz", 10000);
          !err.empty())
        break;
      if (err = WaitHttp(procs, "127.0.0.1:" + std::to_string(u.admin), "/ready", 20000);
          !err.empty())
        break;
      std::string calls;
      for (const auto& c : u.calls) calls += (calls.empty() ? "  calls " : ", ") + c.service;
      step(u.name, fmt::format("{} app 127.0.0.1:{}  sidecar 127.0.0.1:{} (mTLS)  admin "
                               "127.0.0.1:{}{}  [{}]",
                               u.version, u.port, u.sidecar, u.admin, calls, elapsed()));
    }
    if (!err.empty()) {
      fail(err);
      break;
    }
    if (err = WaitHttp(procs, "127.0.0.1:" + std::to_string(spec.loadgen_sidecar_admin), "/ready",
                       20000);
        !err.empty()) {
      fail("traffic sidecar: " + err);
      break;
    }
    // The first request through the whole graph proves it is wired.
    if (err = WaitHttp(procs, loadgen_addr, spec.traffic_path, 20000); !err.empty()) {
      fail("the mesh does not answer through the traffic sidecar: " + err);
      break;
    }
    step("traffic", fmt::format("{:g} req/s GET {} to {} from the loadgen sidecar  [{}]", spec.rate,
                                spec.traffic_path, spec.traffic_to, elapsed()));
    std::printf(
        "\n  try: weft stat   weft check   weft get routes   weft members   "
        "(WEFT_SERVER=http://%s)\n"
        "       dig @127.0.0.1 -p %u %s.service.weft\n\n",
        spec.server_http.c_str(), PortOf(spec.agent_dns), spec.traffic_to.c_str());
    std::fflush(stdout);
    traffic = std::make_unique<Traffic>(loadgen_addr, spec.traffic_path, spec.rate);
    traffic->Start();

    std::set<std::string> shown;
    for (const auto& u : spec.services) shown.insert(u.name);
    StatSampler sampler(spec.server_http, "");
    const auto run_start = Clock::now();
    auto last = Clock::now();
    if (!sampler.Sample(&err)) {
      fail("stats: " + err);
      break;
    }
    while (!g_stop.load()) {
      const auto next = last + std::chrono::seconds(1);
      while (Clock::now() < next && !g_stop.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (g_stop.load()) break;
      if (std::string d = procs.Dead(); !d.empty()) {
        fail(d);
        break;
      }
      const auto now = Clock::now();
      const double secs = std::chrono::duration<double>(now - last).count();
      last = now;
      std::vector<ServiceStat> rows;
      std::string note;
      if (sampler.Sample(&err)) {
        for (auto& r : sampler.Rows(secs))
          if (shown.count(r.service)) rows.push_back(std::move(r));
      } else {
        note = "  (stats: " + err + ")\n";
      }
      const double up_s = std::chrono::duration<double>(now - run_start).count();
      std::string out = tty ? "\033[H\033[2J" : "\n";
      out += fmt::format(
          "weft up: {} services, traffic {:g} req/s for {:.0f}s (sent ok {}, failed {}){}\n\n",
          spec.services.size(), spec.rate, up_s, traffic->ok(), traffic->failed(),
          tty ? "   Ctrl-C to stop" : "");
      out += FormatStatTable(rows) + note;
      std::fputs(out.c_str(), stdout);
      std::fflush(stdout);
      if (duration_ms > 0 && up_s * 1000 >= static_cast<double>(duration_ms)) break;
    }
  } while (false);

  if (traffic) traffic->Stop();
  const size_t n = procs.StopAll();
  std::printf("\nweft up: stopped %zu processes%s\n", n,
              keep || !made_dir ? (", logs kept in " + dir).c_str() : "");
  if (made_dir && !keep) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return rc;
}

}  // namespace weft::cli
