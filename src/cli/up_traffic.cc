// `weft up`'s traffic generator and live table (see up_traffic.h).
#include "cli/up_traffic.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "cli/stat.h"
#include "http/client.h"

namespace weft::cli {

void Traffic::Start() {
  start_ = Clock::now();
  const int threads = rate_ > 200 ? 8 : 4;
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

void Traffic::Stop() {
  stop_.store(true);
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Traffic::Run() {
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

std::string ShowLiveTable(const UpSpec& spec, Processes& procs, const Traffic& traffic,
                          int64_t duration_ms, bool tty) {
  using Clock = std::chrono::steady_clock;
  std::set<std::string> shown;
  for (const auto& u : spec.services) shown.insert(u.name);
  StatSampler sampler(spec.server_http, "");
  const auto run_start = Clock::now();
  auto last = Clock::now();
  std::string err;
  if (!sampler.Sample(&err)) return "stats: " + err;
  while (!StopRequested()) {
    const auto next = last + std::chrono::seconds(1);
    while (Clock::now() < next && !StopRequested())
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (StopRequested()) break;
    if (std::string d = procs.Dead(); !d.empty()) return d;
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
        spec.services.size(), spec.rate, up_s, traffic.ok(), traffic.failed(),
        tty ? "   Ctrl-C to stop" : "");
    out += FormatStatTable(rows) + note;
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    if (duration_ms > 0 && up_s * 1000 >= static_cast<double>(duration_ms)) break;
  }
  return "";
}

}  // namespace weft::cli
