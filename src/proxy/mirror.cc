#include "proxy/mirror.h"

#include <asio.hpp>
#include <span>
#include <string>

#include "base/log.h"
#include "base/time.h"
#include "proxy/request_copy.h"
#include "proxy/upstream/cluster.h"
#include "proxy/upstream/pool.h"
#include "proxy/worker.h"

namespace weft::proxy {
namespace {

size_t& InFlight() {
  thread_local size_t n = 0;
  return n;
}

class MirrorCall final : public Deadline {
 public:
  MirrorCall(Worker* w, std::shared_ptr<WorkerState> state, size_t cluster, int64_t timeout_ms,
             const http1::Limits& limits)
      : w_(w),
        state_(std::move(state)),
        cr_(state_->clusters[cluster]),
        up_(w),
        timeout_ms_(timeout_ms),
        limits_(limits) {
    w_->Track(this);
    ++InFlight();
  }
  ~MirrorCall() {
    up_.Release(false);
    w_->Untrack(this);
    --InFlight();
  }
  MirrorCall(const MirrorCall&) = delete;
  MirrorCall& operator=(const MirrorCall&) = delete;

  void OnDeadline() override {
    timed_out_ = true;
    deadline_ms = kNever;
    up_.Cancel();
  }

  void Copy(const http::RequestHeaders& req, std::string_view authority, std::string_view body) {
    copy_.Assign(req, authority, "-shadow", body);
  }

  // `self` keeps the call alive while it runs.
  static asio::awaitable<void> Run(std::shared_ptr<MirrorCall> self) { co_await self->Send(); }

 private:
  asio::awaitable<void> Send() {
    const size_t ep = cr_->Pick(-1);
    if (copy_.head.authority.empty()) copy_.head.authority = cr_->cfg.endpoints[ep].address.text;
    upstream::HttpUpstream::Lease lease;
    std::string err;
    deadline_ms = timeout_ms_ > 0 ? Now() + timeout_ms_ : kNever;
    bool ok = up_.TakePooled(cr_, ep, limits_, &lease);
    if (!ok) ok = co_await up_.Acquire(cr_, ep, limits_, this, &timed_out_, &lease, &err);
    const int64_t started = MonoNanos();  // as Forward times an attempt: once connected
    if (ok && !timed_out_) {
      deadline_ms = timeout_ms_ > 0 ? Now() + timeout_ms_ : kNever;
      http::ClientStream& us = *lease.stream;
      ok = co_await us.SendHeaders(copy_.head, !copy_.head.has_body());
      if (ok && copy_.head.has_body()) {
        view_[0] = copy_.body;
        ok = co_await us.SendBody(std::span<const std::string_view>(view_, 1), true, nullptr);
      }
      http::ResponseHeaders* h = nullptr;
      while (ok) {
        h = co_await us.ReadHeaders(&herr_);
        if (h == nullptr || !h->interim()) break;
      }
      ok = ok && h != nullptr;
      if (ok) {
        // The mirror's balancer and outlier detection learn from its copies
        // as from any request.
        const int64_t answered = MonoNanos();
        cr_->Answered(ep, h->status, answered - started, answered);
        status_ = h->status;
        // The answer's body is read and dropped.
        bool end = h->body == http::BodyKind::kNone;
        while (!end) {
          http::BodyEvent ev;
          if (!us.TryReadBody(&ev)) ev = co_await us.ReadBody();
          if (ev.kind == http::BodyEvent::kReset) break;
          end = ev.end;
        }
        up_.Release(end);
      }
    }
    deadline_ms = kNever;
    if (ok) {
      cr_->stats->mirror_sent.Inc();
      cr_->stats->http.Record(status_, (MonoNanos() - started) / 1000);
    } else {
      cr_->Failed(ep, MonoNanos());
      cr_->stats->mirror_failed.Inc();
      LOG_DEBUG("mirror to cluster {}: {}", cr_->cfg.name,
                timed_out_    ? std::string("timed out")
                : err.empty() ? "no answer"
                              : err);
    }
  }

  Worker* const w_;
  std::shared_ptr<WorkerState> state_;  // keeps the snapshot cr_->cfg lives in (the request's)
  std::shared_ptr<ClusterRuntime> cr_;
  upstream::PoolUpstream up_;
  const int64_t timeout_ms_;
  const http1::Limits limits_;
  bool timed_out_ = false;
  int status_ = 0;
  RequestCopy copy_;
  std::string_view view_[1];
  http::HeadError herr_;
};

}  // namespace

void StartMirror(Worker* w, const std::shared_ptr<WorkerState>& state, size_t cluster,
                 const http::RequestHeaders& req, std::string_view authority, std::string_view body,
                 int64_t timeout_ms, const http1::Limits& limits) {
  ClusterRuntime& cr = *state->clusters[cluster];
  if (InFlight() >= kMaxMirrorsInFlight || cr.cfg.endpoints.empty()) {
    cr.stats->mirror_dropped.Inc();
    return;
  }
  auto call = std::make_shared<MirrorCall>(w, state, cluster, timeout_ms, limits);
  call->Copy(req, authority, body);
  asio::co_spawn(w->io(), MirrorCall::Run(std::move(call)), asio::detached);
}

}  // namespace weft::proxy
