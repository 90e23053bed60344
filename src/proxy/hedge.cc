#include "proxy/hedge.h"

#include <span>

#include "base/log.h"
#include "base/time.h"
#include "http/grpc.h"
#include "proxy/upstream/cluster.h"

namespace weft::proxy {

HedgeCall::HedgeCall(Worker* w, HedgeOwner* owner)
    : w_(w), owner_(owner), timer_(w->io()), done_(w->io()) {
  done_.expires_at(asio::steady_timer::time_point::max());
  w_->Track(this);
}

HedgeCall::~HedgeCall() {
  up_.reset();  // its connection goes back before the cluster might
  w_->Untrack(this);
}

void HedgeCall::Arm(int64_t delay_us) {
  timer_.expires_after(std::chrono::microseconds(delay_us));
  timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (!ec && self->owner_ && self->state_ == State::kArmed) self->owner_->OnHedgeDelay();
  });
}

void HedgeCall::Send(std::shared_ptr<WorkerState> state, std::shared_ptr<ClusterRuntime> cr,
                     size_t ep, const http::RequestHeaders& req, std::string_view authority,
                     std::string_view body, int64_t deadline_ms, const http1::Limits& limits,
                     int attempt, size_t attempt_field, size_t grpc_timeout_field,
                     std::string_view grpc_timeout) {
  up_ = std::make_unique<upstream::PoolUpstream>(w_);  // only once sent: arming stays cheap
  state_keep_ = std::move(state);
  cr_ = std::move(cr);
  ep_ = ep;
  deadline_at_ = deadline_ms;
  limits_ = limits;
  copy_.Assign(req, authority, {}, body);
  if (copy_.head.authority.empty()) copy_.head.authority = cr_->cfg.endpoints[ep].address.text;
  attempt_text_[0] = static_cast<char>('0' + std::min(attempt, 9));
  if (attempt_field < copy_.head.fields.size())
    copy_.head.fields[attempt_field].value = std::string_view(attempt_text_, 1);
  if (grpc_timeout_field > 0 && grpc_timeout_field < copy_.head.fields.size()) {
    grpc_timeout_.assign(grpc_timeout);
    copy_.head.fields[grpc_timeout_field].value = grpc_timeout_;
  }
  state_ = State::kRunning;
  ++cr_->retries_active;  // a circuit breaker's "retries in flight"
  asio::co_spawn(w_->io(), Run(shared_from_this()), asio::detached);
}

asio::awaitable<void> HedgeCall::Run(std::shared_ptr<HedgeCall> self) { co_await self->Attempt(); }

int HedgeCall::OutcomeStatus(const http::ResponseHeaders& h) {
  const int code = h.body == http::BodyKind::kNone ? http::grpc::StatusOf(h.fields) : -1;
  return code > 0 ? http::grpc::HttpStatusForCode(code) : h.status;
}

asio::awaitable<void> HedgeCall::Attempt() {
  // Every step checks whether the owner is done with it (dropped_), gave it
  // up (given_up_) or its connect timed out: a cancel that lands between two
  // reads is not lost.
  auto live = [this] { return !dropped_ && !given_up_ && !timed_out_; };
  bool ok = live() && up_->TakePooled(cr_, ep_, limits_, &lease_);
  if (!ok && live()) {
    // Within the circuit breakers' view, as the exchange's own attempts.
    const bool opens = !cr_->speaks_h2[ep_];
    ++cr_->rq_pending;
    cr_->cx_opening += opens;
    ok = co_await up_->Acquire(cr_, ep_, limits_, this, &timed_out_, &lease_, &err_);
    cr_->cx_opening -= opens;
    --cr_->rq_pending;
  }
  started_ns_ = MonoNanos();
  http::ResponseHeaders* h = nullptr;
  ok = ok && live();
  if (ok) {
    connected_ = true;  // from here its deadline is the owner's: given up, not failed
    deadline_ms = deadline_at_;
    http::ClientStream& us = *lease_.stream;
    ok = co_await us.SendHeaders(copy_.head, !copy_.head.has_body());
    if (ok && live() && copy_.head.has_body()) {
      view_[0] = copy_.body;
      ok = co_await us.SendBody(std::span<const std::string_view>(view_, 1), true, nullptr);
    }
    while (ok && live()) {
      h = co_await us.ReadHeaders(&herr_);
      if (h == nullptr || !h->interim()) break;
    }
    if (!live()) h = nullptr;
  }
  deadline_ms = kNever;
  const int64_t now = MonoNanos();
  if (h != nullptr) {
    if (owner_ && owner_->OnHedgeAnswer(*h)) {
      // It won: the owner adopts this upstream and tells the balancer.
      resp_ = h;
      Finish(State::kAnswered);
      co_return;
    }
    // An answer the policy would retry: it counts, and goes.
    cr_->Answered(ep_, OutcomeStatus(*h), now - started_ns_, now);
  } else if (dropped_ || given_up_) {
    // Given up (the other attempt answered first, or the exchange's
    // deadline passed with less time for this one): only slower than this.
    if (connected_) cr_->Abandoned(ep_, now - started_ns_, now);
  } else {
    cr_->Failed(ep_, now);
    LOG_DEBUG("hedge to cluster {}: {}", cr_->cfg.name,
              err_.empty() ? std::string("no answer") : err_);
  }
  up_->Release(false);
  Finish(State::kFailed);
}

void HedgeCall::Finish(State s) {
  state_ = s;
  --cr_->retries_active;
  done_.cancel();
}

void HedgeCall::Drop() {
  owner_ = nullptr;
  timer_.cancel();
  if (state_ == State::kRunning) {
    dropped_ = true;
    up_->Abort();
  } else if (state_ == State::kAnswered) {
    // Both answered at once and the owner kept its own: this stream is reset.
    const int64_t now = MonoNanos();
    cr_->Answered(ep_, OutcomeStatus(*resp_), now - started_ns_, now);
    up_->Release(false);
    state_ = State::kFailed;
  }
}

void HedgeCall::Cancel() {
  timer_.cancel();
  if (state_ == State::kRunning) {
    given_up_ = true;
    up_->Abort();
  }
}

void HedgeCall::OnDeadline() {
  deadline_ms = kNever;
  // Connecting: the connect timeout (a failure of the endpoint); after:
  // the owner's deadline.
  (connected_ ? given_up_ : timed_out_) = true;
  if (up_) up_->Abort();
}

}  // namespace weft::proxy
