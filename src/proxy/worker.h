// A proxy worker: one thread, one event loop, its own accepted connections,
// upstream pools, load balancer state and stat slots (shared nothing). The
// only cross-thread traffic is Apply() (a new snapshot, posted to the loop),
// BeginDrain(), and stats scrapes that read relaxed counters.
#pragma once

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/random.h"
#include "io/asio.h"
#include "io/stream.h"
#include "proxy/config.h"
#include "proxy/rate_limit.h"
#include "proxy/span_sink.h"
#include "proxy/stats.h"
#include "proxy/tap.h"
#include "proxy/tls.h"
#include "proxy/upstream/cluster.h"

namespace weft::proxy {

using tcp = asio::ip::tcp;

// An access log destination shared by the workers. Workers buffer whole lines
// and append them with one write(2) each flush (O_APPEND keeps lines whole).
struct AccessLogSink {
  int fd = -1;
  bool owned = false;
  ~AccessLogSink();
};

// Everything a config load produces that all workers share. Immutable.
struct Snapshot {
  std::shared_ptr<const ProxyConfig> cfg;
  std::vector<PerWorker<ListenerStats>*> listener_stats;         // by listener
  std::vector<std::vector<PerWorker<RouteStats>*>> route_stats;  // by listener, route
  // Golden metrics by listener, route: (cluster index, block) for each
  // cluster the route sends to; empty on the mesh's inbound listeners.
  std::vector<std::vector<std::vector<std::pair<size_t, PerWorker<GoldenStats>*>>>> golden;
  std::vector<PerWorker<ClusterStats>*> cluster_stats;  // by cluster
  // Outlier detection, by cluster (null: off), shared by the workers.
  std::vector<std::shared_ptr<upstream::OutlierDetector>> outliers;
  // Local rate limits, by listener and route (null: none), shared by the
  // workers.
  std::vector<std::vector<std::shared_ptr<RateLimiter>>> rate_limiters;
  std::vector<std::shared_ptr<AccessLogSink>> access_logs;       // by listener; null: off
  std::vector<std::vector<PerWorker<AuthzStats>*>> authz_stats;  // by listener, policy
  StatsRegistry* registry = nullptr;                             // per-source blocks on demand
  // Tracing: where finished spans go (null: off), and the share of new
  // traces recorded.
  std::shared_ptr<SpanSink> spans;
  double trace_sampling = 0;
};

// Sockets of one listener, one per worker (SO_REUSEPORT), created by the main
// thread so that port 0 resolves to one port for every worker.
struct ListenerSockets {
  std::string key;       // protocol + address: reused across reloads when equal
  std::vector<int> fds;  // one per worker; each worker takes ownership of its own
  std::string bound;     // the address really bound ("127.0.0.1:41234")
};

struct WorkerState {
  std::shared_ptr<const Snapshot> snap;
  std::vector<std::shared_ptr<ClusterRuntime>> clusters;  // by cluster index
};

// A listener on one worker. The index into the current snapshot is updated
// by Apply() when the listener survives a reload; removed marks it gone.
struct ListenerRuntime {
  explicit ListenerRuntime(asio::io_context& io) : acceptor(io) {}
  std::string name;
  size_t index = 0;
  bool removed = false;
  uint64_t active = 0;  // open downstream connections on this worker
  tcp::acceptor acceptor;
};

// Something with a deadline that the worker's watchdog checks every tick.
// The watchdog calls OnDeadline() once when now >= deadline_ms, on the worker
// thread, and resets deadline_ms to "never". OnDeadline must not destroy the
// object (cancel its I/O instead).
class Deadline {
 public:
  static constexpr int64_t kNever = INT64_MAX;
  int64_t deadline_ms = kNever;  // on the worker's clock (Now())
  bool idle = false;             // waiting for a next request: cancelled at drain
  virtual void OnDeadline() = 0;
  // The monotonic time deadlines are measured against: the tracking
  // worker's clock (the real one until Track).
  int64_t Now() const { return clock_->MonoMillis(); }

 protected:
  ~Deadline() = default;

 private:
  friend class Worker;
  const Clock* clock_ = &Clock::Real();
  Deadline* prev_ = nullptr;
  Deadline* next_ = nullptr;
};

class Worker {
 public:
  // `clock` (deadlines) must outlive the worker.
  explicit Worker(size_t id, const Clock& clock = Clock::Real());
  // Sessions still open live in io_, which goes last: their destructors call
  // Untrack and ConnectionClosed on a Worker already torn down. The proxy
  // never destroys its workers.
  ~Worker();

  size_t id() const { return id_; }
  asio::io_context& io() { return io_; }

  // Thread-safe: hands the worker a new snapshot and its listener sockets.
  // `fds` maps listener name -> (fd for this worker, reused-from-before flag).
  void Apply(std::shared_ptr<const Snapshot> snap, std::map<std::string, std::pair<int, bool>> fds);
  // Thread-safe: the workload identity for mesh TLS (certificate, key,
  // bundle). Connections already open keep the identity they started with.
  void SetIdentity(std::shared_ptr<const MeshIdentity> id, std::shared_ptr<const TicketKeys> keys);
  // Thread-safe: stop accepting; end busy connections after their current
  // request and idle ones after `idle_grace_ms` unless they send one more.
  void BeginDrain(int64_t idle_grace_ms);
  // From the owner's thread: Start once, then Stop, which joins the worker
  // thread (so never call it from there). What is posted after Stop never
  // runs: no Apply, SetIdentity or BeginDrain takes effect.
  void Start();
  void Stop();
  int64_t active_connections() const { return active_.load(std::memory_order_relaxed); }

  // Worker thread only.
  // state() and tls() are replaced by Apply and SetIdentity on the loop:
  // copy the shared_ptr to keep one across a co_await.
  const std::shared_ptr<WorkerState>& state() const { return state_; }
  // Mesh TLS contexts for the current identity; null until one arrives.
  const std::shared_ptr<TlsContexts>& tls() const { return tls_; }
  bool draining() const { return draining_; }
  Rng& rng() { return rng_; }
  // The worker keeps `d` in its list until Untrack: call it before `d` dies.
  void Track(Deadline* d);
  void Untrack(Deadline* d);
  void ConnectionOpened() { active_.fetch_add(1, std::memory_order_relaxed); }
  void ConnectionClosed() { active_.fetch_sub(1, std::memory_order_relaxed); }
  // Appends a line to the access log buffer of `sink`; flushed every tick.
  void AccessLog(const std::shared_ptr<AccessLogSink>& sink, const std::string& line);
  // The buffer for finished spans bound for `sink` (not null): the worker
  // hands it over every tick, and once it holds kSpanBatch after SpansAdded.
  // Worker thread only.
  std::vector<otlp::Span>* SpanBuffer(const std::shared_ptr<SpanSink>& sink) {
    if (sink != span_sink_) {
      FlushSpans();
      span_sink_ = sink;
    }
    return &spans_;
  }
  void SpansAdded() {
    if (spans_.size() >= kSpanBatch) FlushSpans();
  }
  static constexpr size_t kSpanBatch = 128;
  // Live requests: set once, before Start (null: none). Tap() is the hub
  // when a tap session wants an exchange of (route, method, path) and the
  // sidecar's budget allows one more; null otherwise, which is all that is
  // asked (one atomic load) while nobody taps. Worker thread only.
  void SetTap(TapHub* hub) { tap_ = hub; }
  TapHub* Tap(std::string_view route, std::string_view method, std::string_view path);
  // The runtime of listener `index` of the current snapshot (null: none).
  std::shared_ptr<ListenerRuntime> ListenerAt(size_t index) const {
    return index < by_index_.size() ? by_index_[index] : nullptr;
  }
  // Starts the session for an accepted (or captured) connection, or refuses
  // it at the listener's max_connections. `empty_settings_sent`: the
  // capture listener sent the client http2::kEmptySettings (an HTTP
  // listener's HTTP/2 codec takes it as its own; see StartHttpSession).
  void Serve(const std::shared_ptr<ListenerRuntime>& l, tcp::socket sock,
             bool empty_settings_sent = false);
  // The watchdog: OnDeadline for every tracked deadline that has passed on
  // the worker's clock. Runs every tick; a test that moves a ManualClock
  // calls it itself. Worker thread only.
  void CheckDeadlines();

 private:
  void ApplyOnLoop(std::shared_ptr<const Snapshot> snap,
                   std::map<std::string, std::pair<int, bool>> fds);
  asio::awaitable<void> AcceptLoop(std::shared_ptr<ListenerRuntime> l);
  void ArmTick();
  void FlushAccessLogs();
  void FlushSpans();

  // Constant after construction.
  const size_t id_;
  const Clock* const clock_;
  asio::io_context io_;
  std::thread thread_;
  std::atomic<int64_t> active_{0};

  // Worker thread only.
  asio::steady_timer tick_;
  std::shared_ptr<WorkerState> state_;
  std::shared_ptr<TlsContexts> tls_;
  std::map<std::string, std::shared_ptr<ListenerRuntime>> listeners_;
  std::vector<std::shared_ptr<ListenerRuntime>> by_index_;  // by listener index
  Deadline* deadlines_ = nullptr;                           // intrusive list head
  bool draining_ = false;
  Rng rng_;
  std::map<std::shared_ptr<AccessLogSink>, std::string> access_bufs_;
  std::shared_ptr<SpanSink> span_sink_;  // the sink spans_ is for
  std::vector<otlp::Span> spans_;
  TapHub* tap_ = nullptr;
  uint64_t tap_gen_ = ~uint64_t{0};  // of tap_filters_
  std::vector<TapFilter> tap_filters_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
};

// Spawns the session for an accepted connection (conn_manager.cc, tcp_session.cc).
// `empty_settings_sent`: see HttpConnectionManager::EmptySettingsSent.
void StartHttpSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s,
                      bool empty_settings_sent = false);
// `direct`: connect there instead of the listener's cluster (a captured
// connection to a destination outside the mesh, passed through as is).
// `pending`: bytes the capture took off the connection, written to `direct`
// before anything more the client sends.
void StartTcpSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s,
                     std::optional<SocketAddress> direct = std::nullopt, std::string pending = {});
// A connection redirected to a capture listener (capture.cc): finds its
// mesh destination and hands it to that virtual listener's session.
void StartCaptureSession(Worker* w, std::shared_ptr<ListenerRuntime> l, tcp::socket s);

// The coroutines below run on `w`'s thread; every reference, pointer and view
// they take must outlive the awaitable.

// Mesh TLS on an accepted connection, as its listener's mode asks: off does
// nothing; strict runs the server handshake and requires a client
// certificate chained to the bundle with a SPIFFE ID of our trust domain;
// permissive does that when the first byte is a TLS handshake and lets
// plaintext through otherwise. Sets *peer to the client's SPIFFE ID ("" for
// plaintext). False (counted and logged) when the connection must close.
asio::awaitable<bool> AcceptMeshTls(Worker* w, const ListenerConfig& lc, ListenerStats& ls,
                                    io::Stream& s, Deadline* dl, std::string* peer);
// Mesh TLS towards an upstream endpoint that runs a sidecar: client
// handshake with our certificate, then the peer must be `expected` (the
// destination service's SPIFFE ID). False with *err set otherwise.
asio::awaitable<bool> ConnectMeshTls(Worker* w, const ClusterConfig& cc, size_t ep,
                                     std::string_view alpn, UpstreamConn& conn, Deadline* dl,
                                     std::string* err);

// Copies bytes both ways between a and b until both directions end, passing
// half-closes through. `a_pending` / `b_pending` are bytes already read from
// a / b that go out first. Counts bytes into each of a_to_b / b_to_a and keeps
// `dl->deadline_ms` at now + idle_ms while data moves.
asio::awaitable<void> Tunnel(io::Stream& a, io::Stream& b, std::string_view a_pending,
                             std::string_view b_pending, Deadline* dl, int64_t idle_ms,
                             std::array<Counter*, 2> a_to_b, std::array<Counter*, 2> b_to_a);

using io::ToEndpoint;
// Every upstream socket carries this SO_MARK (0: none), so that `weft
// redirect`'s rules can tell the proxy's own traffic from the app's. Set
// once at start.
void SetUpstreamMark(uint32_t mark);
// Opens `s` for `to` and marks it; the caller then connects it.
asio::error_code PrepareUpstream(tcp::socket& s, const tcp::endpoint& to);

}  // namespace weft::proxy
