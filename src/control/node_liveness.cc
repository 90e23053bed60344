// Node liveness on a server: a node whose agent has had no config stream to
// this server for --node-timeout gets the critical agent check, unless most
// agents went at once (then this server is likely the one cut off).
#include <algorithm>
#include <string>

#include "base/log.h"
#include "base/time.h"
#include "control/stream_server.h"
#include "mesh/catalog.h"

namespace weft::control {

void StreamServer::LivenessTick() {
  liveness_.expires_after(std::chrono::seconds(1));
  liveness_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    CheckLiveness();
    LivenessTick();
  });
}

namespace {

// Sets (critical) or removes the agent check in a node's document; false
// when the node is gone or the write failed.
// Compare-and-swap on the node document, so that a registration or an
// agent's sync that lands between the read and the write is not undone.
bool WriteAgentCheck(store::Store* st, const std::string& node, const std::string* output) {
  const std::string key = std::string(mesh::kNodePrefix) + node;
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto cur = st->Get(key);
    if (!cur.ok()) return false;  // deregistered meanwhile
    auto parsed = mesh::NodeFromJson(cur->value);
    if (!parsed.ok()) return false;
    mesh::Node doc = std::move(parsed).value();
    if (output) {
      mesh::Check c;
      c.id = std::string(mesh::kAgentCheckId);
      c.name = "Agent alive";
      c.status = "critical";
      c.output = *output;
      doc.checks[c.id] = c;
    } else if (doc.checks.erase(std::string(mesh::kAgentCheckId)) == 0) {
      return true;  // already without it (the agent re-synced)
    }
    auto w = st->PutIf(key, mesh::NodeToJson(doc), cur->mod_revision);
    if (w.ok()) return true;
    if (w.status().code() != StatusCode::kFailedPrecondition) return false;
  }
  LOG_WARN("node {}: its document kept changing; the agent check is left as it is", node);
  return false;
}

// Streams lost to one cut are detected up to a keepalive interval plus its
// timeout apart (10 s + 5 s; see Start), so losses this close together may
// be one event.
constexpr int64_t kLossSpreadMs = 20000;

}  // namespace

void StreamServer::CheckLiveness() {
  const int64_t now = MonoMillis();
  size_t gone = 0;
  int64_t newest_loss = 0;
  for (const auto& [node, a] : agents_) {
    if (a.streams > 0) continue;
    ++gone;
    newest_loss = std::max(newest_loss, a.gone_since_ms);
  }
  // Most agents gone looks like this server being cut off, not like that
  // many nodes failing: marking them would move traffic for nothing and
  // flap when the link returns. Streams die one keepalive at a time, so
  // nodes marked just before the pattern showed are part of it: unmark them.
  if (gone * 2 > agents_.size()) {
    if (!partition_warned_) {
      LOG_WARN(
          "{} of {} agents lost their stream to this server: the server may be cut off; "
          "not marking their nodes critical",
          gone, agents_.size());
      partition_warned_ = true;
    }
    for (auto& [node, a] : agents_) {
      if (a.streams > 0 || !a.marked || newest_loss - a.gone_since_ms > kLossSpreadMs) continue;
      if (!WriteAgentCheck(api_.store(), node, nullptr)) continue;
      a.marked = false;
      a.held = true;
      counters_.node_marks_reverted++;
      LOG_WARN("node {}: unmarked: its agent went with most others (this server cut off?)", node);
    }
    return;
  }
  partition_warned_ = false;
  for (auto& [node, a] : agents_) {
    if (a.held) {  // the pattern is over: a fresh timeout for those still gone
      a.held = false;
      a.gone_since_ms = now;
    }
    if (a.streams > 0 || a.marked || now - a.gone_since_ms < opts_.node_timeout_ms) continue;
    const std::string why = "the node's agent has had no stream to a server for " +
                            std::to_string((now - a.gone_since_ms) / 1000) + "s";
    if (!WriteAgentCheck(api_.store(), node, &why)) continue;  // try again next tick
    a.marked = true;
    counters_.nodes_marked_critical++;
    LOG_WARN("node {}: agent gone for {} ms: its instances are critical until it returns", node,
             now - a.gone_since_ms);
  }
}

}  // namespace weft::control
