// Hedged requests (a route's `hedge`): when the first attempt has not
// answered within the hedge delay (fixed, or its endpoint's recent p95), a
// second attempt goes to another endpoint; the first answer the retry
// policy would not retry wins and the other attempt is cancelled.
//
// A HedgeCall is that second attempt: it owns a copy of the request, its own
// upstream and coroutine, so that both attempts wait side by side. Its
// owner (the exchange, HttpConnectionManager's ActiveStream) arms it, is
// called back when the delay passes (and sends it, or not), is asked
// whether an answer wins (and then stops its own attempt), and adopts the
// winner's upstream. Which requests are hedged, and the budget, are the
// owner's (docs/traffic.md). Worker thread only.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "http/http1/codec.h"
#include "http/message.h"
#include "proxy/request_copy.h"
#include "proxy/upstream/pool.h"
#include "proxy/worker.h"

namespace weft::proxy {

class HedgeOwner {
 public:
  // The hedge delay passed with the owner's attempt unanswered: the owner
  // sends the hedge (HedgeCall::Send) or lets it be.
  virtual void OnHedgeDelay() = 0;
  // The hedge has a final response head: true when it wins (the owner
  // then stops its own attempt and adopts the hedge's); false when the
  // retry policy would retry it (the hedge then ends).
  virtual bool OnHedgeAnswer(const http::ResponseHeaders& h) = 0;

 protected:
  ~HedgeOwner() = default;
};

class HedgeCall final : public Deadline, public std::enable_shared_from_this<HedgeCall> {
 public:
  enum class State : uint8_t { kArmed, kRunning, kAnswered, kFailed };

  HedgeCall(Worker* w, HedgeOwner* owner);
  ~HedgeCall();
  HedgeCall(const HedgeCall&) = delete;
  HedgeCall& operator=(const HedgeCall&) = delete;

  // Calls the owner's OnHedgeDelay after `delay_us`, unless dropped first.
  void Arm(int64_t delay_us);
  // Sends `req` (as the owner's attempt sent it, with `authority`: the
  // request's, or empty for the endpoint's address) and `body` (when
  // req.has_body()) to endpoint `ep` of `cr`, waiting for its head until
  // `deadline_ms` (worker clock; the owner's). `state` keeps the snapshot
  // cr->cfg lives in. `attempt` is the x-weft-attempt value at
  // `attempt_field` of req.fields; `grpc_timeout_field` (0: none) gets
  // `grpc_timeout`.
  void Send(std::shared_ptr<WorkerState> state, std::shared_ptr<ClusterRuntime> cr, size_t ep,
            const http::RequestHeaders& req, std::string_view authority, std::string_view body,
            int64_t deadline_ms, const http1::Limits& limits, int attempt, size_t attempt_field,
            size_t grpc_timeout_field, std::string_view grpc_timeout);
  // The owner is done with it: the timer stops, a running attempt is
  // cancelled (its endpoint is told it was given up), an answered one's
  // stream is reset. The owner is never called again.
  void Drop();
  // The owner's deadline fired: a running attempt stops (and its endpoint
  // is told it was given up, not that it failed: it had less time).
  void Cancel();

  void OnDeadline() override;

  State state() const { return state_; }
  bool sent() const { return state_ != State::kArmed; }
  // Signalled (cancelled) when a running hedge ends: answered or failed.
  asio::steady_timer& done() { return done_; }

  // kAnswered: the winning head, and what the owner adopts.
  http::ResponseHeaders* response() const { return resp_; }
  std::unique_ptr<upstream::HttpUpstream>& upstream() { return up_; }
  const upstream::HttpUpstream::Lease& lease() const { return lease_; }
  size_t endpoint() const { return ep_; }
  int64_t started_ns() const { return started_ns_; }  // when it was connected (the balancer's)

  // What an answer's head says of its endpoint: its status, or a gRPC
  // trailers-only answer's status as its HTTP equivalent.
  static int OutcomeStatus(const http::ResponseHeaders& h);

 private:
  static asio::awaitable<void> Run(std::shared_ptr<HedgeCall> self);
  asio::awaitable<void> Attempt();
  void Finish(State s);

  Worker* const w_;
  HedgeOwner* owner_;  // null once dropped
  asio::steady_timer timer_, done_;
  State state_ = State::kArmed;
  bool dropped_ = false;    // the owner is done with it
  bool given_up_ = false;   // the owner's deadline (or its own, once connected)
  bool timed_out_ = false;  // its connect timed out (Acquire's)
  bool connected_ = false;
  std::shared_ptr<WorkerState> state_keep_;
  std::shared_ptr<ClusterRuntime> cr_;
  size_t ep_ = 0;
  int64_t deadline_at_ = kNever;
  http1::Limits limits_;
  std::unique_ptr<upstream::HttpUpstream> up_;
  upstream::HttpUpstream::Lease lease_;
  RequestCopy copy_;
  std::string grpc_timeout_;
  char attempt_text_[2] = {'2', 0};
  std::string_view view_[1];
  http::ResponseHeaders* resp_ = nullptr;
  http::HeadError herr_;
  std::string err_;
  int64_t started_ns_ = 0;
};

}  // namespace weft::proxy
