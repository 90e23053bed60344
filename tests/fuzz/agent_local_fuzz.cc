// The agent's persisted local state (DATA_DIR/local.json) may be damaged
// or edited: any bytes must load cleanly or be refused with a reason, never
// crash the agent at start.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "agent/local.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  static const std::string path = "/tmp/weft-fuzz-local-" + std::to_string(getpid()) + ".json";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  weft::agent::LocalState st("fuzz-node", "127.0.0.1", "", path);
  weft::Status s = st.Load();
  if (!s.ok() && s.message().empty()) __builtin_trap();
  if (s.ok()) {
    (void)st.Document();
    (void)st.AgentServices().dump();
    (void)st.AgentChecks().dump();
  }
  return 0;
}
