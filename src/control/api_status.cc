// What a process says about itself and its cluster: readiness, leader and
// peers, /v1/agent/self and /v1/agent/members, /metrics, the CA roots it
// serves; and the membership of replicas that share a store.
#include <chrono>
#include <cstdlib>
#include <utility>

#include "base/log.h"
#include "base/net.h"
#include "base/prometheus.h"
#include "control/api.h"
#include "control/api_internal.h"
#include "io/asio.h"

namespace weft::control {

using json = nlohmann::json;
using http::Response;

Response Api::StatusRequest(std::string_view path) {
  if (path == "/ready") return Response::Text(200, "ready");
  if (path == "/v1/status/peers") return Response::Json(200, json::array({http_addr_}).dump());
  return Response::Json(200, json(http_addr_).dump());  // /v1/status/leader
}

Response Api::MetricsRequest() {
  Response r = Response::Text(200, Metrics());
  r.content_type = "text/plain; version=0.0.4";
  return r;
}

Response Api::AgentSelf() {
  return Reply({{"Config",
                 {{"Datacenter", "dc1"},
                  {"NodeName", opts_.name},
                  {"Server", role_->IsServer()},
                  {"Version", WEFT_VERSION}}},
                {"Member", {{"Name", opts_.name}, {"Addr", http_addr_}, {"Status", 1}}}},
               applied_);
}

Response Api::AgentMembers() { return Reply(MembersJson(), applied_); }

json Api::MembersJson() const {
  json out = json::array();
  std::string addr, why;
  uint16_t port = 0;
  SplitHostPort(http_addr_, &addr, &port, &why);  // the bound address: always of that shape
  out.push_back({{"Name", opts_.name},
                 {"Addr", addr},
                 {"Port", port},
                 {"Status", 1},
                 {"Tags",
                  {{"role", std::string(role_->Label())},
                   {"grpc", grpc_addr_},
                   {"detail", std::string("self") + (leader_ ? ", leader" : "")}}}});
  for (const auto& [key, value] : members_) {
    json m = json::parse(value, nullptr, false);
    if (!m.is_object() || m.value("Name", "") == opts_.name) continue;
    // Another server's record in the store: not trusted to be well formed.
    std::string a;
    uint16_t p = 0;
    if (!SplitHostPort(m.value("Http", ""), &a, &p, &why)) a = m.value("Http", "");
    out.push_back({{"Name", m.value("Name", "")},
                   {"Addr", a},
                   {"Port", p},
                   {"Status", 1},
                   {"Tags",
                    {{"role", m.value("Role", "server")},
                     {"grpc", m.value("Grpc", "")},
                     {"detail", m.value("Name", "") == leader_name_ ? "leader" : ""}}}});
  }
  for (const auto& fn : member_sources_) fn(&out);
  return out;
}

Response Api::CaRoots() {
  if (ca_roots_.is_null()) return Error(404, "no CA on this process");
  return Reply(ca_roots_, applied_);
}

asio::awaitable<void> Api::RunMembership() {
  const std::string key = "members/server/" + opts_.name;
  const std::string record = nlohmann::json{
      {"Name", opts_.name},
      {"Http", http_addr_},
      {"Grpc", grpc_addr_},
      {"Role", "server"}}.dump();
  store::Store* st = store_.get();
  const std::string name = opts_.name;
  bool announced = false;
  while (!stopped_) {
    if (!announced) {
      const auto put = [st, key, record] { return st->PutEphemeral(key, record); };
      auto r = co_await OffLoop(put);
      announced = r.ok();
      if (!r.ok()) LOG_WARN("announcing this replica: {}", r.status().message());
    }
    const auto campaign = [st, name] { return st->Campaign("leader/singleton", name); };
    auto held = co_await OffLoop(campaign);
    if (held.ok()) {
      if (held.value() != leader_)
        LOG_INFO("{} the singleton duties (leader/singleton)", held.value() ? "took" : "lost");
      leader_ = held.value();
    }
    asio::steady_timer t(io_, std::chrono::seconds(2));
    member_timer_ = &t;  // Stop() cancels it
    co_await t.async_wait(kNoThrow);
    member_timer_ = nullptr;
    // A lost lease (etcd restarted, long pause) drops our record: re-announce.
    if (store_->shared() && !members_.count(key)) announced = false;
  }
}

std::string Api::Metrics() const {
  prom::Writer w;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    w.Counter(name, help, {}, v);
  };
  auto gauge = [&](const char* name, const char* help, int64_t v) { w.Gauge(name, help, {}, v); };
  counter("weft_server_http_requests_total", "API requests handled.", counters_.requests);
  counter("weft_server_writes_total", "Acknowledged store writes.", counters_.writes);
  counter("weft_server_write_conflicts_total", "Compare-and-swap retries on node documents.",
          counters_.write_conflicts);
  counter("weft_server_rejected_total", "Requests answered with a 4xx.", counters_.rejected);
  counter("weft_server_store_errors_total", "Requests failed by the store (5xx).",
          counters_.store_errors);
  counter("weft_server_blocking_queries_total", "Blocking queries that waited.",
          counters_.blocking_started);
  counter("weft_server_blocking_refused_total",
          "Blocking queries answered at once because max_blocking_queries were waiting.",
          counters_.blocking_refused);
  counter("weft_server_acl_denied_total",
          "Requests refused with 403 for an unknown token or a missing permission.",
          counters_.acl_denied);
  counter("weft_server_refused_host_total",
          "Requests refused because their Host is not a name this server answers to.",
          counters_.refused_host);
  counter("weft_server_refused_origin_total",
          "Writes refused because a browser sent them from another site (Origin).",
          counters_.refused_origin);
  counter("weft_server_refused_content_type_total",
          "Writes refused for a content type a browser form can send.",
          counters_.refused_content_type);
  gauge("weft_server_blocking_queries_waiting", "Blocking queries waiting now.",
        static_cast<int64_t>(waiters_.size()));
  gauge("weft_server_leader", "1 when this replica holds the singleton duties.", leader_ ? 1 : 0);
  gauge("weft_server_store_revision", "Store revision applied to this replica's view.", applied_);
  gauge("weft_server_catalog_nodes", "Nodes in the catalog.",
        static_cast<int64_t>(catalog_.nodes().size()));
  gauge("weft_server_config_entries", "Config entries.",
        static_cast<int64_t>(config_.List("", "").size()));
  for (const auto& fn : metric_sources_) fn(w);
  return w.Finish();
}

}  // namespace weft::control
