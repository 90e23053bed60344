// The agent's cache: the servers' catalog and config as last streamed, in
// the memory store the local API reads, and on disk (DATA_DIR/cache.pb) so a
// restart answers at once; and the trust bundle that came with it.
#include <fstream>
#include <map>

#include "agent/agent_internal.h"
#include "base/file.h"
#include "base/log.h"
#include "mesh/catalog.h"

namespace weft::agent {

namespace pb = weft::v1;

namespace {

// Where a streamed resource lives in the agent's copy of the store.
std::string KeyOf(const pb::Resource& r) {
  if (r.type() == "node") return std::string(mesh::kNodePrefix) + r.name();
  if (r.type() == "config") return std::string(control::kConfigPrefix) + r.name();
  return "";
}

const std::string& ValueOf(const pb::Resource& r) {
  return r.type() == "node" ? r.node().json() : r.config().json();
}

}  // namespace

bool Agent::LoadCache() {
  std::ifstream in(CachePath(), std::ios::binary);
  if (!in) return false;
  pb::StreamResponse saved;
  if (!saved.ParseFromIstream(&in)) {
    LOG_WARN("agent cache {} is unreadable; starting empty", CachePath());
    return false;
  }
  xds::ResourceMap state;
  for (auto& r : *saved.mutable_resources()) {
    const std::string key = r.type() + "/" + r.name();
    state[key] = std::make_shared<const pb::Resource>(std::move(r));
  }
  Install(state);
  initial_ = std::move(state);
  initial_version_ = saved.version_info();
  LOG_INFO("restored {} resources (version {}) from {}", initial_.size(), initial_version_,
           CachePath());
  return true;
}

void Agent::SaveCache() {
  save_pending_ = false;
  last_save_ms_ = MonoMillis();
  pb::StreamResponse out;
  out.set_full_state(true);
  out.set_version_info(version_);
  for (const auto& [k, r] : state_) *out.add_resources() = *r;
  std::string bytes;
  if (!out.SerializeToString(&bytes)) {
    LOG_ERROR("writing the agent cache {}: cannot serialize", CachePath());
    return;
  }
  // 0600: the cache holds the private keys of the node's workloads.
  if (Status s = WriteFileAtomic(CachePath(), bytes); !s.ok())
    LOG_ERROR("writing the agent cache: {}", s.message());
}

void Agent::SaveCacheSoon() {
  if (save_pending_) return;
  save_pending_ = true;
  const int64_t since = MonoMillis() - last_save_ms_;
  if (since >= 200) {
    SaveCache();
    return;
  }
  save_timer_.expires_after(std::chrono::milliseconds(200 - since));
  save_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec && save_pending_) SaveCache();
  });
}

void Agent::Install(const xds::ResourceMap& state) {
  std::map<std::string, std::string> kvs;
  for (const auto& [k, r] : state) {
    std::string key = KeyOf(*r);
    if (!key.empty()) kvs.emplace(std::move(key), ValueOf(*r));
  }
  const std::string own = std::string(mesh::kNodePrefix) + opts_.node;
  auto it = kvs.find(own);
  const std::string doc = local_.Document();
  if (stream_ && stream_->connected() && (it == kvs.end() || it->second != doc)) MarkDirty();
  kvs[own] = doc;
  cache_->ReplacePrefix("", kvs);
  state_ = state;
  if (auto b = state.find("bundle/roots"); b != state.end()) {
    bundle_ = b->second;
    TrustBundle(bundle_->bundle());
    if (local_stream_) ApplyBundle(bundle_);
  }
}

void Agent::TrustBundle(const pb::Bundle& b) {
  if (trust_ && trust_->SetFromBundle(b))
    LOG_INFO("servers' certificates now checked against the streamed bundle ({} roots)",
             b.roots_pem_size());
}

void Agent::ApplyBundle(const std::shared_ptr<const pb::Resource>& b) {
  local_stream_->SetBundle(b);
  certs_->SetBundle(b->bundle().trust_domain(), b->bundle().active_root_id());
}

}  // namespace weft::agent
