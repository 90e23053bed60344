// Subcommands of the weft binary other than the proxy.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace weft::mesh {
struct Manifest;
}

namespace weft::cli {

// Views into argv: valid for the whole process.
using Args = std::vector<std::string_view>;

int ServerMain(const Args& args);
int AgentMain(const Args& args);
int ApplyMain(const Args& args);
int GetMain(const Args& args);
int DeleteMain(const Args& args);
int MembersMain(const Args& args);
int CaMain(const Args& args);
int AclMain(const Args& args);
int DemoMain(const Args& args);
int StatMain(const Args& args);
int TapMain(const Args& args);
int TopMain(const Args& args);
int CheckMain(const Args& args);
int UpMain(const Args& args);
int RedirectMain(const Args& args);

// A usage error: the message and the usage line on stderr; returns exit code 2.
int BadUsage(const std::string& msg, const char* usage);

// PUTs each manifest to the server at HOST:PORT, printing one line per
// manifest to `out` (nullptr: silent) and errors to stderr. Returns the
// exit code: 0, or 1 when any was refused or the server unreachable.
int ApplyManifests(const std::string& server, const std::vector<mesh::Manifest>& manifests,
                   std::FILE* out);

}  // namespace weft::cli
