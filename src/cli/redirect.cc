// `weft redirect`: transparent interception for the current network
// namespace, as a sidecar's init step. It adds two chains to iptables' nat
// table: outbound TCP from applications goes to the proxy's capture port,
// inbound TCP to its inbound (mTLS) port. The proxy's own connections are
// recognised by their socket mark (`weft proxy --socket-mark`) or their uid
// and left alone. `--undo` removes exactly the chains and jumps it added.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/strings.h"
#include "cli/ctl.h"
#include "cli/flags.h"

namespace weft::cli {
namespace {

constexpr const char* kRedirectUsage =
    "weft redirect [--id NAME] [--outbound-port 15001] [--proxy-mark N] [--proxy-uid UID]...\n"
    "              [--app-uid UID]... [--inbound-port PORT [--inbound-ports P,P...]]\n"
    "              [--exclude-outbound-ports P,P...] [--exclude-outbound-cidrs CIDR,...]\n"
    "              [--exclude-inbound-ports P,P...] [--dry-run]\n"
    "       weft redirect --undo [--id NAME] [--dry-run]";

int RedirectUsage(const std::string& msg) { return BadUsage("redirect: " + msg, kRedirectUsage); }

std::string Iptables() {
  for (const char* p : {"/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// Runs iptables with `args`; returns its exit status, stderr to *err.
int RunIptables(const std::string& bin, const std::vector<std::string>& args, std::string* err,
                bool quiet) {
  std::vector<std::string> all = {bin, "-w", "5", "-t", "nat"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(all.size() + 1);
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    *err = std::string("pipe: ") + std::strerror(errno);
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    *err = std::string("fork: ") + std::strerror(errno);
    return -1;
  }
  if (pid == 0) {
    ::dup2(pipefd[1], 2);
    if (quiet) ::dup2(pipefd[1], 1);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  err->clear();
  char buf[512];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;)
    err->append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  while (!err->empty() && err->back() == '\n') err->pop_back();
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool ParsePorts(const std::string& v, std::vector<std::string>* out) {
  for (const auto& p : SplitCommas(v)) {
    char* end = nullptr;
    const long n = std::strtol(p.c_str(), &end, 10);
    if (p.empty() || *end || n < 1 || n > 65535) return false;
    out->push_back(std::to_string(n));
  }
  return true;
}

bool ParseUid(const std::string& v, std::string* out) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || n < 0 || n > 0x7fffffff) return false;
  *out = std::to_string(n);
  return true;
}

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 16) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  return true;
}

}  // namespace

int RedirectMain(const Args& args) {
  std::string id = "weft", outbound_port = "15001", inbound_port, mark;
  std::vector<std::string> proxy_uids, app_uids, inbound_ports, ex_out_ports, ex_in_ports, ex_cidrs;
  bool undo = false, dry = false;
  for (size_t i = 0; i < args.size(); ++i) {
    FlagArg flag(args, &i);
    const std::string a(flag.name());
    std::string v;
    auto value = [&]() { return flag.Value(&v); };
    std::vector<std::string> one;
    if (a == "--undo") {
      undo = true;
    } else if (a == "--dry-run") {
      dry = true;
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n", kRedirectUsage);
      return 0;
    } else if (a == "--id") {
      if (!value() || !ValidId(v)) return RedirectUsage("--id: 1-16 of letters, digits, - and _");
      id = v;
    } else if (a == "--outbound-port" && value() && v == "0") {
      outbound_port.clear();  // inbound only (another sidecar here takes the outbound)
    } else if (a == "--outbound-port" || a == "--inbound-port") {
      if ((a == "--inbound-port" && !value()) || !ParsePorts(v, &one) || one.size() != 1)
        return RedirectUsage(a + ": one port, 1-65535 (--outbound-port 0: no outbound capture)");
      (a == "--outbound-port" ? outbound_port : inbound_port) = one[0];
    } else if (a == "--proxy-mark") {
      char* end = nullptr;
      if (!value()) return RedirectUsage("--proxy-mark needs a value");
      const unsigned long m = std::strtoul(v.c_str(), &end, 0);
      if (v.empty() || *end || m == 0 || m > 0xffffffffUL)
        return RedirectUsage("--proxy-mark: a number from 1 to 4294967295");
      mark = std::to_string(m);
    } else if (a == "--proxy-uid" || a == "--app-uid") {
      std::string uid;
      if (!value() || !ParseUid(v, &uid)) return RedirectUsage(a + ": a numeric uid");
      (a == "--proxy-uid" ? proxy_uids : app_uids).push_back(uid);
    } else if (a == "--inbound-ports" || a == "--exclude-outbound-ports" ||
               a == "--exclude-inbound-ports") {
      auto* list = a == "--inbound-ports"            ? &inbound_ports
                   : a == "--exclude-outbound-ports" ? &ex_out_ports
                                                     : &ex_in_ports;
      if (!value() || !ParsePorts(v, list))
        return RedirectUsage(a + ": ports 1-65535, comma-separated");
    } else if (a == "--exclude-outbound-cidrs") {
      if (!value()) return RedirectUsage(a + " needs a value");
      for (const auto& c : SplitCommas(v)) {
        if (c.empty() || c.find_first_not_of("0123456789./") != std::string::npos)
          return RedirectUsage(a + " \"" + c + "\": use IPv4 CIDRs like 10.0.0.0/8");
        ex_cidrs.push_back(c);
      }
    } else {
      return RedirectUsage("unknown or incomplete flag \"" + a + "\"");
    }
  }
  if (!inbound_ports.empty() && inbound_port.empty())
    return RedirectUsage("--inbound-ports needs --inbound-port (where to send them)");
  // Without a way to tell the proxy's own traffic, it would be captured
  // again and loop: the mark is the default.
  if (mark.empty() && proxy_uids.empty()) mark = "1337";

  const std::string out_chain = "WEFT-OUT-" + id, in_chain = "WEFT-IN-" + id;
  const std::string bin = Iptables();
  if (bin.empty() && !dry) {
    std::fprintf(stderr,
                 "weft redirect: iptables not found; install Debian's iptables package "
                 "(scripts/deps.sh does)\n");
    return 1;
  }
  std::string err;
  auto run = [&](const std::vector<std::string>& rule, bool quiet = false) {
    if (dry) {
      std::string line = "iptables -t nat";
      for (const auto& r : rule) line += " " + r;
      std::printf("%s\n", line.c_str());
      return 0;
    }
    return RunIptables(bin, rule, &err, quiet);
  };
  // Removes our jumps and chains; returns how many things it removed.
  auto remove_all = [&]() {
    int removed = 0;
    const std::vector<std::pair<std::string, std::string>> hooks = {{"OUTPUT", out_chain},
                                                                    {"PREROUTING", in_chain}};
    for (const auto& [hook, chain] : hooks) {
      if (dry) {
        run({"-D", hook, "-p", "tcp", "-j", chain});
        run({"-F", chain});
        run({"-X", chain});
        continue;
      }
      for (int k = 0;
           k < 16 && RunIptables(bin, {"-D", hook, "-p", "tcp", "-j", chain}, &err, true) == 0; ++k)
        ++removed;
      if (RunIptables(bin, {"-F", chain}, &err, true) == 0) {
        RunIptables(bin, {"-X", chain}, &err, true);
        ++removed;
      }
    }
    return removed;
  };
  if (undo) {
    const int n = remove_all();
    if (!dry)
      std::printf(n ? "weft redirect: removed chains %s and %s and their jumps\n"
                    : "weft redirect: nothing to remove (no %s or %s chain)\n",
                  out_chain.c_str(), in_chain.c_str());
    return 0;
  }
  for (const auto& chain : {out_chain, in_chain}) {
    if (!dry && RunIptables(bin, {"-S", chain}, &err, true) == 0) {
      std::fprintf(stderr,
                   "weft redirect: chain %s already exists: this namespace is already redirected "
                   "under --id %s; `weft redirect --undo --id %s` first\n",
                   chain.c_str(), id.c_str(), id.c_str());
      return 1;
    }
  }
  std::vector<std::vector<std::string>> rules;
  if (outbound_port.empty() && inbound_port.empty())
    return RedirectUsage("nothing to do: --outbound-port 0 and no --inbound-port");
  // Outbound: the apps' TCP to the capture port.
  if (!outbound_port.empty()) {
    rules.push_back({"-N", out_chain});
    if (!mark.empty())
      rules.push_back({"-A", out_chain, "-m", "mark", "--mark", mark, "-j", "RETURN"});
    for (const auto& u : proxy_uids)
      rules.push_back({"-A", out_chain, "-m", "owner", "--uid-owner", u, "-j", "RETURN"});
    // Loopback stays local: the proxy to its app, apps to the agent.
    rules.push_back({"-A", out_chain, "-d", "127.0.0.0/8", "-j", "RETURN"});
    for (const auto& p : ex_out_ports)
      rules.push_back({"-A", out_chain, "-p", "tcp", "--dport", p, "-j", "RETURN"});
    for (const auto& c : ex_cidrs) rules.push_back({"-A", out_chain, "-d", c, "-j", "RETURN"});
    if (app_uids.empty()) {
      rules.push_back(
          {"-A", out_chain, "-p", "tcp", "-j", "REDIRECT", "--to-ports", outbound_port});
    } else {
      for (const auto& u : app_uids)
        rules.push_back({"-A", out_chain, "-p", "tcp", "-m", "owner", "--uid-owner", u, "-j",
                         "REDIRECT", "--to-ports", outbound_port});
    }
    rules.push_back({"-A", "OUTPUT", "-p", "tcp", "-j", out_chain});
  }
  // Inbound: TCP arriving from the network to the proxy's inbound port.
  if (!inbound_port.empty()) {
    rules.push_back({"-N", in_chain});
    for (const auto& p : ex_in_ports)
      rules.push_back({"-A", in_chain, "-p", "tcp", "--dport", p, "-j", "RETURN"});
    if (inbound_ports.empty()) {
      rules.push_back({"-A", in_chain, "-p", "tcp", "--dport", inbound_port, "-j", "RETURN"});
      rules.push_back({"-A", in_chain, "-p", "tcp", "-j", "REDIRECT", "--to-ports", inbound_port});
    } else {
      for (const auto& p : inbound_ports)
        rules.push_back({"-A", in_chain, "-p", "tcp", "--dport", p, "-j", "REDIRECT", "--to-ports",
                         inbound_port});
    }
    rules.push_back({"-A", "PREROUTING", "-p", "tcp", "-j", in_chain});
  }
  for (const auto& r : rules) {
    if (run(r) != 0) {
      std::string line;
      for (const auto& x : r) line += " " + x;
      std::fprintf(stderr, "weft redirect: iptables -t nat%s: %s\n", line.c_str(), err.c_str());
      remove_all();
      std::fprintf(stderr, "weft redirect: rolled back; nothing was left installed\n");
      return 1;
    }
  }
  if (!dry) {
    std::printf("weft redirect:");
    if (!outbound_port.empty())
      std::printf(" outbound TCP -> 127.0.0.1:%s (except mark %s%s, loopback%s)",
                  outbound_port.c_str(), mark.empty() ? "-" : mark.c_str(),
                  proxy_uids.empty() ? "" : ", proxy uids",
                  ex_out_ports.empty() ? "" : ", excluded ports");
    if (!inbound_port.empty())
      std::printf("%s inbound TCP%s -> port %s", outbound_port.empty() ? "" : ";",
                  inbound_ports.empty() ? "" : " to listed ports", inbound_port.c_str());
    std::printf("\n  undo: weft redirect --undo --id %s\n", id.c_str());
  }
  return 0;
}

}  // namespace weft::cli
