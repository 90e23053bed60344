#include "control/store/etcd_store.h"

#include <chrono>
#include <condition_variable>

#include "base/log.h"
#include "base/strings.h"

namespace weft::control::store {
namespace {

using json = nlohmann::json;

int64_t AsInt(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;  // the gateway omits zero values
  if (it->is_string()) return std::strtoll(it->get_ref<const std::string&>().c_str(), nullptr, 10);
  if (it->is_number_integer()) return it->get<int64_t>();
  return 0;
}

std::string B64(std::string_view s) { return Base64Encode(s); }

// etcd's range end for a prefix ("\0" for the whole key space).
std::string RangeEnd(const std::string& prefix) {
  std::string end = PrefixEnd(prefix);
  return end.empty() ? std::string(1, '\0') : end;
}

Status KvFromJson(const json& j, size_t strip, KeyValue* out) {
  auto k = Base64Decode(j.value("key", ""));
  auto v = Base64Decode(j.value("value", ""));
  if (!k || !v || k->size() < strip)
    return {StatusCode::kInternal, "etcd: bad key or value encoding"};
  out->key = k->substr(strip);
  out->value = std::move(*v);
  out->create_revision = AsInt(j, "create_revision");
  out->mod_revision = AsInt(j, "mod_revision");
  return {};
}

}  // namespace

struct EtcdStore::Watcher {
  int64_t id;
  std::string prefix;  // without the store prefix
  int64_t next_revision;
  WatchCallback cb;
  std::atomic<bool> stop{false};
  std::mutex mu;
  http::Client* active = nullptr;  // guarded by mu: the stream in progress
  std::thread thread;
};

Result<std::unique_ptr<EtcdStore>> EtcdStore::Open(const std::string& url, EtcdOptions o) {
  std::string_view kScheme = "etcd://";
  if (url.rfind("etcds://", 0) == 0) {
    kScheme = "etcds://";
    o.tls = true;
  } else if (url.rfind(kScheme, 0) != 0) {
    return Status(
        StatusCode::kInvalidArgument,
        "--store \"" + url + "\": expected etcd://HOST:PORT[,HOST:PORT...] or etcds://... (TLS)");
  }
  if (!o.tls && (!o.ca_pem.empty() || !o.cert_pem.empty()))
    return Status(StatusCode::kInvalidArgument,
                  "--etcd-ca/--etcd-cert are for TLS: use etcds://HOST:PORT");
  for (std::string ep : SplitCommas(std::string_view(url).substr(kScheme.size()))) {
    while (!ep.empty() && ep.back() == '/') ep.pop_back();
    if (!ep.empty()) o.endpoints.push_back(ep);
  }
  if (o.endpoints.empty())
    return Status(StatusCode::kInvalidArgument, "--store \"" + url + "\": no endpoints");
  return Open(std::move(o));
}

Result<std::unique_ptr<EtcdStore>> EtcdStore::Open(EtcdOptions opts) {
  std::unique_ptr<EtcdStore> s(new EtcdStore(std::move(opts)));
  if (!s->opts_.user.empty()) {
    if (Status a = s->Authenticate(); !a.ok())
      return Status(StatusCode::kUnavailable, "etcd: authentication: " + a.message());
  }
  auto st = s->Call("/v3/maintenance/status", json::object());
  if (!st.ok())
    return Status(StatusCode::kUnavailable, "etcd: no member answers: " + st.status().message());
  LOG_INFO("etcd {} reached ({} endpoints)", st.value().value("version", "?"),
           s->opts_.endpoints.size());
  return s;
}

EtcdStore::~EtcdStore() {
  stop_ = true;
  std::vector<std::shared_ptr<Watcher>> ws;
  {
    std::lock_guard<std::mutex> l(watch_mu_);
    for (auto& [id, w] : watchers_) ws.push_back(w);
    watchers_.clear();
  }
  for (auto& w : ws) {
    w->stop = true;
    {
      std::lock_guard<std::mutex> l(w->mu);
      if (w->active) w->active->Shutdown();
    }
    if (w->thread.joinable()) w->thread.join();
  }
  if (keepalive_.joinable()) keepalive_.join();
}

http::ClientOptions EtcdStore::ClientOpts(int64_t io_timeout_ms) {
  http::ClientOptions co;
  co.connect_timeout_ms = 1000;
  co.io_timeout_ms = io_timeout_ms;
  co.tls = opts_.tls;
  co.tls_ca_pem = opts_.ca_pem;
  co.tls_cert_pem = opts_.cert_pem;
  co.tls_key_pem = opts_.key_pem;
  std::lock_guard<std::mutex> l(pool_mu_);
  if (!auth_token_.empty()) co.headers.emplace_back("authorization", auth_token_);
  return co;
}

Status EtcdStore::Authenticate() {
  {
    std::lock_guard<std::mutex> l(pool_mu_);
    auth_token_.clear();
    idle_.clear();
  }
  auto r =
      CallOnce("/v3/auth/authenticate", json{{"name", opts_.user}, {"password", opts_.password}});
  if (!r.ok()) return r.status();
  const json& got = r.value();
  if (!got.contains("token") || !got["token"].is_string())
    return Status(StatusCode::kUnavailable, "etcd gave no auth token");
  std::lock_guard<std::mutex> l(pool_mu_);
  auth_token_ = got["token"].get<std::string>();
  idle_.clear();
  return {};
}

Result<json> EtcdStore::Call(const std::string& path, const json& body) {
  auto r = CallOnce(path, body);
  if (!r.ok() && !opts_.user.empty() &&
      (r.status().message().find("invalid auth token") != std::string::npos ||
       r.status().message().find("user name is empty") != std::string::npos)) {
    if (Status a = Authenticate(); !a.ok()) return a;
    r = CallOnce(path, body);
  }
  return r;
}

Result<json> EtcdStore::CallOnce(const std::string& path, const json& body) {
  const std::string payload = body.dump();
  Status last;
  // Every endpoint once, starting with the one that worked last.
  const size_t n = opts_.endpoints.size();
  for (size_t attempt = 0; attempt < n; ++attempt) {
    const size_t idx = (next_endpoint_.load() + attempt) % n;
    const std::string& ep = opts_.endpoints[idx];
    std::unique_ptr<http::Client> c;
    {
      std::lock_guard<std::mutex> l(pool_mu_);
      for (size_t i = 0; i < idle_.size(); ++i) {
        if (idle_[i]->host_port() == ep) {
          c = std::move(idle_[i]);
          idle_.erase(idle_.begin() + static_cast<long>(i));
          break;
        }
      }
    }
    if (!c) c = std::make_unique<http::Client>(ep, ClientOpts(opts_.request_timeout_ms));
    auto r = c->Do("POST", path, payload, {{"content-type", "application/json"}});
    if (!r.ok()) {
      last = r.status();
      if (r.status().code() == StatusCode::kInvalidArgument) return r.status();  // TLS setup
      LOG_WARN("etcd {}: {}: trying the next member", ep, r.status().message());
      continue;
    }
    {
      std::lock_guard<std::mutex> l(pool_mu_);
      if (idle_.size() < 32) idle_.push_back(std::move(c));
    }
    next_endpoint_ = idx;
    json j = json::parse(r->body, nullptr, false);
    if (r->status != 200) {
      std::string msg = j.is_object() ? j.value("error", j.value("message", r->body)) : r->body;
      // Leader changes and lost quorum: let the caller retry.
      if (r->status == 503 || msg.find("leader") != std::string::npos ||
          msg.find("timed out") != std::string::npos) {
        last = {StatusCode::kUnavailable, "etcd " + ep + ": " + msg};
        continue;
      }
      return Status(StatusCode::kInternal, "etcd " + ep + " " + path + ": " + msg);
    }
    if (j.is_discarded()) return Status(StatusCode::kInternal, "etcd: response is not JSON");
    return j;
  }
  return Status(StatusCode::kUnavailable, "etcd: no member answered: " + last.message());
}

Result<int64_t> EtcdStore::Put(std::string_view key, std::string_view value) {
  return PutWithLease(key, value, 0, -1);
}

Result<int64_t> EtcdStore::PutIf(std::string_view key, std::string_view value, int64_t expected) {
  return PutWithLease(key, value, 0, expected);
}

Result<int64_t> EtcdStore::PutWithLease(std::string_view key, std::string_view value, int64_t lease,
                                        int64_t expected) {
  const std::string k = B64(opts_.prefix + std::string(key));
  json put = {{"key", k}, {"value", B64(value)}};
  if (lease) put["lease"] = std::to_string(lease);
  if (expected < 0) {
    auto r = Call("/v3/kv/put", put);
    if (!r.ok()) return r.status();
    return AsInt(r.value()["header"], "revision");
  }
  json cmp =
      expected == 0
          ? json{{"key", k}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}}
          : json{{"key", k},
                 {"target", "MOD"},
                 {"result", "EQUAL"},
                 {"mod_revision", std::to_string(expected)}};
  auto r = Call("/v3/kv/txn", {{"compare", json::array({cmp})},
                               {"success", json::array({{{"request_put", put}}})}});
  if (!r.ok()) return r.status();
  if (!r.value().value("succeeded", false))
    return Status(StatusCode::kFailedPrecondition, "key " + std::string(key) +
                                                       " changed (expected revision " +
                                                       std::to_string(expected) + ")");
  return AsInt(r.value()["header"], "revision");
}

Result<int64_t> EtcdStore::Delete(std::string_view key) {
  auto r = Call("/v3/kv/deleterange", {{"key", B64(opts_.prefix + std::string(key))}});
  if (!r.ok()) return r.status();
  if (AsInt(r.value(), "deleted") == 0)
    return Status(StatusCode::kNotFound, "key " + std::string(key) + " not found");
  return AsInt(r.value()["header"], "revision");
}

Result<int64_t> EtcdStore::DeleteIf(std::string_view key, int64_t expected) {
  const std::string k = B64(opts_.prefix + std::string(key));
  json cmp = {{"key", k},
              {"target", "MOD"},
              {"result", "EQUAL"},
              {"mod_revision", std::to_string(expected)}};
  auto r =
      Call("/v3/kv/txn", {{"compare", json::array({cmp})},
                          {"success", json::array({{{"request_delete_range", {{"key", k}}}}})}});
  if (!r.ok()) return r.status();
  if (!r.value().value("succeeded", false)) {
    // Gone, or changed: tell them apart for the caller.
    auto cur = Get(key);
    if (!cur.ok()) return cur.status();
    return Status(StatusCode::kFailedPrecondition, "key " + std::string(key) +
                                                       " changed (expected revision " +
                                                       std::to_string(expected) + ")");
  }
  return AsInt(r.value()["header"], "revision");
}

Result<KeyValue> EtcdStore::Get(std::string_view key) {
  auto r = Call("/v3/kv/range", {{"key", B64(opts_.prefix + std::string(key))}});
  if (!r.ok()) return r.status();
  auto it = r.value().find("kvs");
  if (it == r.value().end() || !it->is_array() || it->empty())
    return Status(StatusCode::kNotFound, "key " + std::string(key) + " not found");
  KeyValue kv;
  if (Status s = KvFromJson((*it)[0], opts_.prefix.size(), &kv); !s.ok()) return s;
  return kv;
}

Result<bool> EtcdStore::ScrubHistory(std::string_view key) {
  auto cur = Get(key);
  if (!cur.ok()) return cur.status();
  auto r = Call("/v3/kv/compaction",
                {{"revision", std::to_string(cur->mod_revision)}, {"physical", true}});
  if (!r.ok()) {
    // Compacted past it already (another replica, or etcd's own schedule).
    if (r.status().message().find("compacted") != std::string::npos) return true;
    return r.status();
  }
  LOG_INFO("etcd: history compacted at revision {} to drop the earlier values of {}",
           cur->mod_revision, key);
  return true;
}

Result<RangeResult> EtcdStore::Range(std::string_view prefix) {
  const std::string full = opts_.prefix + std::string(prefix);
  const std::string end = B64(RangeEnd(full));
  RangeResult out;
  std::string from = full;
  int64_t at = 0;
  // Paged at one revision, so the result is one consistent view.
  for (;;) {
    json req = {
        {"key", B64(from)}, {"range_end", end}, {"limit", std::to_string(opts_.range_page)}};
    if (at) req["revision"] = std::to_string(at);
    auto r = Call("/v3/kv/range", req);
    if (!r.ok()) return r.status();
    if (!at) at = AsInt(r.value()["header"], "revision");
    const json& kvs = r.value().value("kvs", json::array());
    for (const auto& j : kvs) {
      KeyValue kv;
      if (Status s = KvFromJson(j, opts_.prefix.size(), &kv); !s.ok()) return s;
      out.kvs.push_back(std::move(kv));
    }
    if (!r.value().value("more", false) || kvs.empty()) break;
    from = opts_.prefix + out.kvs.back().key + std::string(1, '\0');
  }
  out.revision = at;
  return out;
}

int64_t EtcdStore::Revision() {
  auto r = Call("/v3/kv/range", {{"key", B64(opts_.prefix)}, {"limit", "1"}, {"count_only", true}});
  if (!r.ok()) return 0;
  return AsInt(r.value()["header"], "revision");
}

Result<int64_t> EtcdStore::Watch(std::string_view prefix, int64_t after_revision,
                                 WatchCallback cb) {
  auto w = std::make_shared<Watcher>();
  w->prefix = std::string(prefix);
  w->next_revision = after_revision + 1;
  w->cb = std::move(cb);
  {
    std::lock_guard<std::mutex> l(watch_mu_);
    w->id = next_watch_++;
    watchers_[w->id] = w;
  }
  w->thread = std::thread([this, w] { RunWatch(w); });
  return w->id;
}

void EtcdStore::Unwatch(int64_t id) {
  std::shared_ptr<Watcher> w;
  {
    std::lock_guard<std::mutex> l(watch_mu_);
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    w = it->second;
    watchers_.erase(it);
  }
  w->stop = true;
  {
    std::lock_guard<std::mutex> l(w->mu);
    if (w->active) w->active->Shutdown();
  }
  if (w->thread.joinable()) w->thread.join();
}

void EtcdStore::RunWatch(std::shared_ptr<Watcher> w) {
  const std::string full = opts_.prefix + w->prefix;
  size_t ep = next_endpoint_.load();
  int failures = 0;
  while (!w->stop) {
    // A watch may be quiet for a long time: no read timeout.
    http::Client c(opts_.endpoints[ep % opts_.endpoints.size()], ClientOpts(0));
    {
      std::lock_guard<std::mutex> l(w->mu);
      if (w->stop) break;
      w->active = &c;
    }
    json req = {{"create_request",
                 {{"key", B64(full)},
                  {"range_end", B64(RangeEnd(full))},
                  {"start_revision", std::to_string(w->next_revision)},
                  {"progress_notify", true}}}};
    std::string pending;
    bool compacted = false;
    bool got = false;
    bool auth_failed = false;
    http::ClientResponse head;
    Status s = c.Stream("POST", "/v3/watch", req.dump(), &head, [&](std::string_view data) {
      pending.append(data);
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        json msg = json::parse(pending.substr(0, nl), nullptr, false);
        pending.erase(0, nl + 1);
        if (msg.is_discarded()) continue;
        if (msg.contains("error") && msg["error"].is_object()) {
          const std::string em = msg["error"].value("message", "");
          auth_failed = em.find("auth token") != std::string::npos;
          LOG_WARN("etcd watch on {}: {}", w->prefix, em);
          return false;
        }
        const json& res = msg.contains("result") ? msg["result"] : msg;
        got = true;
        if (AsInt(res, "compact_revision") > 0 || res.value("canceled", false)) {
          compacted = AsInt(res, "compact_revision") > 0;
          LOG_WARN("etcd watch on {} canceled{}: {}", w->prefix,
                   compacted ? " (history compacted)" : "", res.value("cancel_reason", ""));
          return false;
        }
        auto evs = res.find("events");
        if (evs == res.end() || !evs->is_array() || evs->empty()) continue;
        std::vector<Event> out;
        for (const auto& e : *evs) {
          Event ev;
          ev.type = e.value("type", "PUT") == "DELETE" ? Event::Type::kDelete : Event::Type::kPut;
          if (!KvFromJson(e.value("kv", json::object()), opts_.prefix.size(), &ev.kv).ok())
            continue;
          out.push_back(std::move(ev));
        }
        // Group by revision: one callback per committed write.
        size_t i = 0;
        while (i < out.size()) {
          size_t j = i;
          while (j < out.size() && out[j].kv.mod_revision == out[i].kv.mod_revision) ++j;
          std::vector<Event> batch(std::make_move_iterator(out.begin() + static_cast<long>(i)),
                                   std::make_move_iterator(out.begin() + static_cast<long>(j)));
          w->next_revision = batch.back().kv.mod_revision + 1;
          if (!w->stop) w->cb(batch);
          i = j;
        }
      }
      return !w->stop;
    });
    {
      std::lock_guard<std::mutex> l(w->mu);
      w->active = nullptr;
    }
    if (w->stop) break;
    if (auth_failed && !opts_.user.empty()) {
      if (Status a = Authenticate(); !a.ok())
        LOG_WARN("etcd watch on {}: authentication: {}", w->prefix, a.message());
    }
    if (compacted) {
      // The events we missed are gone: hand over the whole current state as
      // one reset batch, then follow from there.
      auto r = Range(w->prefix);
      if (r.ok()) {
        LOG_WARN(
            "etcd watch on {}: history compacted; resynchronised from a full read at "
            "revision {}",
            w->prefix, r->revision);
        std::vector<Event> batch;
        batch.reserve(r->kvs.size() + 1);
        Event reset;
        reset.type = Event::Type::kReset;
        reset.kv.mod_revision = r->revision;
        batch.push_back(std::move(reset));
        for (const auto& kv : r->kvs) batch.push_back(Event{Event::Type::kPut, kv});
        if (!w->stop) w->cb(batch);
        w->next_revision = r->revision + 1;
      }
    }
    if (!got)
      ++failures;
    else
      failures = 0;
    if (!s.ok())
      LOG_WARN("etcd watch on {} via {}: {}; reconnecting", w->prefix, c.host_port(), s.message());
    ++ep;  // try the next member
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min(1000, 50 * (1 << std::min(failures, 5)))));
  }
}

Result<int64_t> EtcdStore::EnsureLease() {
  std::lock_guard<std::mutex> l(lease_mu_);
  if (lease_) return lease_;
  auto r = Call("/v3/lease/grant", {{"TTL", std::to_string(opts_.lease_ttl_s)}});
  if (!r.ok()) return r.status();
  lease_ = AsInt(r.value(), "ID");
  if (!lease_) return Status(StatusCode::kInternal, "etcd: lease grant returned no id");
  if (!keepalive_.joinable()) keepalive_ = std::thread([this] { KeepAlive(); });
  return lease_;
}

void EtcdStore::KeepAlive() {
  while (!stop_) {
    for (int i = 0; i < opts_.lease_ttl_s * 10 / 3 && !stop_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stop_) break;
    int64_t id;
    {
      std::lock_guard<std::mutex> l(lease_mu_);
      id = lease_;
    }
    auto r = Call("/v3/lease/keepalive", {{"ID", std::to_string(id)}});
    if (!r.ok()) {
      LOG_WARN("etcd lease keepalive: {}", r.status().message());
      continue;
    }
    const json& res = r.value().contains("result") ? r.value()["result"] : r.value();
    if (AsInt(res, "TTL") <= 0) {
      LOG_ERROR("etcd lease {} expired: this replica's ephemeral keys are gone", id);
      std::lock_guard<std::mutex> l(lease_mu_);
      lease_ = 0;
    }
  }
}

Result<int64_t> EtcdStore::PutEphemeral(std::string_view key, std::string_view value) {
  auto lease = EnsureLease();
  if (!lease.ok()) return lease.status();
  return PutWithLease(key, value, lease.value(), -1);
}

Result<bool> EtcdStore::Campaign(std::string_view key, std::string_view id) {
  auto lease = EnsureLease();
  if (!lease.ok()) return lease.status();
  auto w = PutWithLease(key, id, lease.value(), 0);
  if (w.ok()) return true;
  if (w.status().code() != StatusCode::kFailedPrecondition) return w.status();
  auto cur = Get(key);
  if (!cur.ok())
    return cur.status().code() == StatusCode::kNotFound ? Result<bool>(false) : cur.status();
  return cur->value == id;
}

}  // namespace weft::control::store
