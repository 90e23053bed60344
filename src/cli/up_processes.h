// `weft up`'s process supervisor: the processes it starts (this binary with
// other arguments), how it waits for them, and how it stops them; and the
// stop request of Ctrl-C.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace weft::cli {

// From now on SIGINT and SIGTERM request a stop (StopRequested), and SIGPIPE
// is ignored. The handler only sets a flag.
void CatchStopSignals();
// A stop was requested: every wait of `weft up` ends early. Any thread.
bool StopRequested();

// True when nothing listens on 127.0.0.1:port (a bind succeeds).
bool PortFree(uint16_t port);

struct Child {
  std::string name;
  pid_t pid = -1;
  std::string log;
};

// The processes `weft up` started. One thread (the main one); the destructor
// stops whatever still runs.
class Processes {
 public:
  explicit Processes(std::string dir) : dir_(std::move(dir)) {}
  ~Processes() { StopAll(); }

  // Runs this binary with `args`, output to DIR/NAME.log, in its own process
  // group (Ctrl-C reaches only `weft up`, which stops the rest in order) and
  // with SIGTERM as its parent-death signal.
  bool Start(const std::string& name, const std::vector<std::string>& args, std::string* err);
  // The first child that has exited, with how; "" when all run.
  std::string Dead();
  // SIGTERM in reverse start order (sidecars and apps, then the agent, then
  // the server), 5 s to exit each, then SIGKILL. Returns how many stopped.
  size_t StopAll();
  // The last `lines` lines of the file at `path`, indented.
  static std::string Tail(const std::string& path, size_t lines);

 private:
  std::string dir_;
  std::vector<Child> children_;
};

// Polls GET http://ADDR/PATH until it answers 200, a child dies, or the
// deadline; returns "" or what went wrong.
std::string WaitHttp(Processes& procs, const std::string& addr, const std::string& path,
                     int64_t timeout_ms);

}  // namespace weft::cli
