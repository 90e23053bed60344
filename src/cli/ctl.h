// Subcommands of the weft binary other than the proxy.
#pragma once

#include <string_view>
#include <vector>

namespace weft::cli {

using Args = std::vector<std::string_view>;

int ServerMain(const Args& args);
int AgentMain(const Args& args);
int ApplyMain(const Args& args);
int GetMain(const Args& args);
int DeleteMain(const Args& args);
int MembersMain(const Args& args);
int CaMain(const Args& args);
int DemoMain(const Args& args);
int StatMain(const Args& args);
int CheckMain(const Args& args);

}  // namespace weft::cli
