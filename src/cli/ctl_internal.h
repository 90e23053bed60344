// What the commands that talk to a server's (or agent's) API share: the
// server address, their common flags, error lines. Only for src/cli/.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cli/flags.h"
#include "http/client.h"

namespace weft::cli {

// "weft: MSG" on stderr; returns exit code 1.
int Fail(const std::string& msg);

// Reads --log-level at args[*i] and applies it; false when args[*i] is not
// that flag. A bad level leaves *err set.
bool LogLevelFlag(const Args& args, size_t* i, std::string* err);

// The server's HOST:PORT from --server / WEFT_SERVER (an http:// URL or
// HOST:PORT), default 127.0.0.1:8500.
std::string ServerAddress(const std::string& flag);

// The API token of this command (--token, --token-file or WEFT_TOKEN), set
// by ParseCtlFlags; "" for none (the anonymous token).
const std::string& ApiToken();
// A secret from a file (a token), surrounding white space trimmed; "" with
// *err when unreadable or empty.
std::string ReadSecretFile(const std::string& path, std::string* err);
// Warns (stderr) that a secret was given as a flag's value.
void WarnSecretInArgv(const char* flag, const char* instead);
// Client options for calls to a server's or agent's API: they carry the
// token as X-Consul-Token.
http::ClientOptions ApiClientOptions();

// Common flags of the API commands: --server, --token, --token-file,
// --log-level.
struct CtlFlags {
  std::string server;
  std::string ns = "default";
  bool all_namespaces = false;
  std::string output;
  std::vector<std::string> files;
  std::vector<std::string> positional;
};

// Fills *f from args. Returns -1 to go on, else the exit code to return
// (0 after --help, 2 after a usage error).
int ParseCtlFlags(const Args& args, CtlFlags* f, const char* usage);

// "service", "Services", "route" ... -> the manifest kind; "" when unknown.
std::string CanonicalKind(std::string_view s);
// The manifest kinds, comma-separated, for error lines.
std::string KindList();

// What the API said: its body without trailing newlines, or "HTTP STATUS".
std::string ApiError(const http::ClientResponse& r);

}  // namespace weft::cli
