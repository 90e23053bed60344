// What the API commands share (cli/ctl_internal.h), and BadUsage.
#include "cli/ctl.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "base/file.h"
#include "base/log.h"
#include "base/strings.h"
#include "cli/ctl_internal.h"
#include "mesh/manifest.h"

namespace weft::cli {

int BadUsage(const std::string& msg, const char* usage) {
  std::fprintf(stderr, "weft: %s\n\nusage: %s\n", msg.c_str(), usage);
  return 2;
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "weft: %s\n", msg.c_str());
  return 1;
}

bool LogLevelFlag(const Args& args, size_t* i, std::string* err) {
  std::string v;
  if (!FlagValue(args, i, "--log-level", &v)) return false;
  log::Level l;
  if (!log::ParseLevel(v, &l)) {
    *err = "--log-level \"" + v + "\": use trace, debug, info, warn, error or off";
  } else {
    log::SetLevel(l);
  }
  return true;
}

std::string ServerAddress(const std::string& flag) {
  std::string s = flag;
  if (s.empty()) {
    const char* env = std::getenv("WEFT_SERVER");
    if (env) s = env;
  }
  if (s.empty()) s = "127.0.0.1:8500";
  if (s.rfind("http://", 0) == 0) s = s.substr(7);
  if (s.rfind("https://", 0) == 0) s = s.substr(8);  // TLS: decided in ParseCtlFlags
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

namespace {
std::string g_api_token;  // set once, by ParseCtlFlags
std::string g_ca_pem;     // --ca-file / WEFT_CA_FILE, set once by ParseCtlFlags
bool g_https = false;     // --server / WEFT_SERVER is https://, set by ParseCtlFlags
}  // namespace

const std::string& ApiToken() { return g_api_token; }

std::string ReadSecretFile(const std::string& path, std::string* err) {
  std::string secret(TrimSpace(ReadWholeFile(path, err)));
  if (err->empty() && secret.empty()) *err = "the file is empty";
  return secret;
}

void WarnSecretInArgv(const char* flag, const char* instead) {
  std::fprintf(stderr,
               "weft: warning: %s puts a secret on the command line, where every local user can "
               "read it (ps, /proc); use %s\n",
               flag, instead);
}

http::ClientOptions ApiClientOptions() {
  http::ClientOptions o;
  if (!g_api_token.empty()) o.headers.emplace_back("x-consul-token", g_api_token);
  if (g_https) {
    o.tls = true;
    // The mesh CA's bundle: servers present a certificate for server.weft
    // from it, whatever address they are reached at.
    o.tls_ca_pem = g_ca_pem;
    if (!g_ca_pem.empty()) o.tls_server_name = "server.weft";
  }
  return o;
}

int ParseCtlFlags(const Args& args, CtlFlags* f, const char* usage) {
  std::string token, token_file, ca_file;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v, err;
    if (FlagValue(args, &i, "--server", &v)) {
      f->server = v;
    } else if (FlagValue(args, &i, "--ca-file", &v)) {
      ca_file = v;
    } else if (FlagValue(args, &i, "--token", &v)) {
      token = v;
    } else if (FlagValue(args, &i, "--token-file", &v)) {
      token_file = v;
    } else if (FlagValue(args, &i, "-f", &v) || FlagValue(args, &i, "--filename", &v)) {
      f->files.push_back(v);
    } else if (FlagValue(args, &i, "-n", &v) || FlagValue(args, &i, "--namespace", &v)) {
      f->ns = v;
    } else if (args[i] == "-A" || args[i] == "--all-namespaces") {
      f->all_namespaces = true;
    } else if (FlagValue(args, &i, "-o", &v) || FlagValue(args, &i, "--output", &v)) {
      if (v != "yaml" && v != "json" && v != "table")
        return BadUsage("-o \"" + v + "\": use yaml, json or table", usage);
      f->output = v;
    } else if (LogLevelFlag(args, &i, &err)) {
      if (!err.empty()) return BadUsage(err, usage);
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::printf("usage: %s\n", usage);
      return 0;
    } else if (!args[i].empty() && args[i][0] == '-' && args[i] != "-") {
      return BadUsage("unknown or incomplete flag \"" + std::string(args[i]) + "\"", usage);
    } else {
      f->positional.emplace_back(args[i]);
    }
  }
  {
    // The scheme decides TLS for every client made from ApiClientOptions()
    // (which may be evaluated before ServerAddress() in one expression).
    std::string url = f->server;
    if (url.empty())
      if (const char* env = std::getenv("WEFT_SERVER")) url = env;
    g_https = url.rfind("https://", 0) == 0;
  }
  if (ca_file.empty())
    if (const char* env = std::getenv("WEFT_CA_FILE")) ca_file = env;
  if (!ca_file.empty()) {
    std::string err;
    g_ca_pem = ReadWholeFile(ca_file, &err);
    if (!err.empty()) return BadUsage("--ca-file: " + err, usage);
    if (g_ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
      return BadUsage("--ca-file " + ca_file + ": no PEM certificate in it", usage);
  }
  if (!token.empty() && !token_file.empty())
    return BadUsage("--token and --token-file: give one", usage);
  if (!token_file.empty()) {
    std::string err;
    token = ReadSecretFile(token_file, &err);
    if (!err.empty()) return BadUsage("--token-file: " + err, usage);
  } else if (token.empty()) {
    if (const char* env = std::getenv("WEFT_TOKEN")) token = env;
  }
  g_api_token = token;
  return -1;
}

std::string CanonicalKind(std::string_view s) {
  std::string l;
  for (char c : s) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& k : mesh::Kinds()) {
    std::string kl;
    for (char c : k) kl += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (l == kl || l == kl + "s" || (kl.back() == 'y' && l == kl.substr(0, kl.size() - 1) + "ies"))
      return k;
  }
  return "";
}

std::string KindList() {
  std::string s;
  for (const auto& k : mesh::Kinds()) s += (s.empty() ? "" : ", ") + k;
  return s;
}

std::string ApiError(const http::ClientResponse& r) {
  std::string b = r.body;
  while (!b.empty() && (b.back() == '\n' || b.back() == '\r')) b.pop_back();
  return b.empty() ? ("HTTP " + std::to_string(r.status)) : b;
}

}  // namespace weft::cli
