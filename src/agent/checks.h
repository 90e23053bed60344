// Health checks the agent runs on its local services: HTTP (2xx/3xx
// passing, 429 warning, anything else critical), TCP (a connection opens)
// and gRPC (grpc.health.v1 Check answers SERVING). Each runs every
// interval with a timeout; SuccessBeforePassing / FailuresBeforeCritical
// debounce flapping. Results are reported on the io thread.
//
// Io thread only (Sync and the destructor included).
#pragma once

#include <asio.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "agent/local.h"

namespace weft::agent {

class CheckRunner {
 public:
  // Called on the io thread after a probe when the check has a status to
  // report (it may repeat the last one); never after Sync() dropped or
  // changed that check, nor after the runner is destroyed. The strings are
  // valid during the call only.
  using Report = std::function<void(const std::string& check_id, const std::string& status,
                                    const std::string& output)>;
  CheckRunner(asio::io_context& io, Report report);
  ~CheckRunner();

  // Starts checks that are new or changed, stops those that are gone.
  void Sync(const std::map<std::string, CheckDefinition>& defs);
  size_t running() const { return running_.size(); }

 private:
  struct Running {
    CheckDefinition def;
    std::shared_ptr<bool> alive;
  };
  asio::awaitable<void> Loop(CheckDefinition def, std::shared_ptr<bool> alive);
  // One probe: passing / warning / critical, and what was seen.
  asio::awaitable<std::pair<std::string, std::string>> Probe(const CheckDefinition& def);
  asio::awaitable<std::pair<std::string, std::string>> ProbeTcp(const CheckDefinition& def);
  asio::awaitable<std::pair<std::string, std::string>> ProbeHttp(const CheckDefinition& def);
  asio::awaitable<std::pair<std::string, std::string>> ProbeGrpc(const CheckDefinition& def);

  asio::io_context& io_;
  Report report_;
  std::map<std::string, Running> running_;
  asio::thread_pool blocking_{2};  // gRPC health calls (blocking client)
};

}  // namespace weft::agent
