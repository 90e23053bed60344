// `weft up`'s traffic and what it shows: the generator that sends requests
// into the mesh, and the live table of the services' golden metrics.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "cli/up_processes.h"
#include "cli/up_spec.h"

namespace weft::cli {

// Sends GETs at a fixed rate from a few threads (each with its own kept-alive
// connection); counts what came back. Start and Stop (which joins the
// threads; the destructor calls it) from one thread; ok() and failed() from
// any.
class Traffic {
 public:
  Traffic(std::string addr, std::string path, double rate)
      : addr_(std::move(addr)), path_(std::move(path)), rate_(rate) {}
  ~Traffic() { Stop(); }
  void Start();
  void Stop();
  uint64_t ok() const { return ok_.load(); }
  uint64_t failed() const { return failed_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  void Run();
  const std::string addr_, path_;
  const double rate_;
  Clock::time_point start_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> next_{0}, ok_{0}, failed_{0};
  std::vector<std::thread> threads_;
};

// Prints the services' golden metrics every second (clearing the screen on a
// tty) until a stop is requested, `duration_ms` has passed (0: no limit) or a
// child dies. Returns "" or what ended it early.
std::string ShowLiveTable(const UpSpec& spec, Processes& procs, const Traffic& traffic,
                          int64_t duration_ms, bool tty);

}  // namespace weft::cli
