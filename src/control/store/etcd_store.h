// The shared store: an etcd v3 cluster, reached through etcd's JSON gateway
// (/v3/kv/*, /v3/watch, /v3/lease/*) with weft's own HTTP client, so weft
// needs no etcd client library. Several server replicas share one cluster:
// etcd's revision is the store revision, compare-and-swap is an etcd
// transaction, and watches are etcd watches.
//
// Every call fails over across the endpoints given; a write is reported
// done only after etcd acknowledged it (committed by a quorum).
//
// Each watch runs on a thread of its own, which calls its callback; Unwatch
// stops and joins that thread, so no callback runs once it has returned, and
// it must not be called from that watch's own callback. The lease keepalive
// thread (started by the first PutEphemeral or Campaign) and every watch
// thread end in the destructor.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "control/store/store.h"
#include "http/client.h"

namespace weft::control::store {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // HOST:PORT
  std::string prefix = "/weft/";       // every key lives under it
  int64_t request_timeout_ms = 5000;
  int64_t lease_ttl_s = 10;  // ephemeral keys vanish this long after a crash
  size_t range_page = 500;   // keys per range request
  // etcds://: TLS, the members' certificates checked against ca_pem, this
  // server's client certificate presented when cert_pem is set.
  bool tls = false;
  std::string ca_pem, cert_pem, key_pem;
  // etcd's own auth: a token from /v3/auth/authenticate on every call.
  std::string user, password;
};

class EtcdStore final : public Store {
 public:
  // Parses "etcd://h:p,h:p" or "etcds://h:p,..." into `base` (TLS and auth
  // settings) and checks that a member answers.
  static Result<std::unique_ptr<EtcdStore>> Open(const std::string& url, EtcdOptions base);
  static Result<std::unique_ptr<EtcdStore>> Open(EtcdOptions opts);
  ~EtcdStore() override;

  Result<int64_t> Put(std::string_view key, std::string_view value) override;
  Result<int64_t> PutIf(std::string_view key, std::string_view value, int64_t expected) override;
  Result<int64_t> Delete(std::string_view key) override;
  Result<int64_t> DeleteIf(std::string_view key, int64_t expected) override;
  Result<KeyValue> Get(std::string_view key) override;
  Result<RangeResult> Range(std::string_view prefix) override;
  int64_t Revision() override;
  Result<int64_t> Watch(std::string_view prefix, int64_t after_revision, WatchCallback cb) override;
  void Unwatch(int64_t id) override;
  bool shared() const override { return true; }
  // etcd keeps every revision until it compacts: compacts at the key's
  // current revision, which drops the key's earlier values (and every other
  // key's values replaced before it; watchers behind it resynchronise with
  // a full read). The freed pages leave the file at etcd's next defrag.
  Result<bool> ScrubHistory(std::string_view key) override;
  Result<int64_t> PutEphemeral(std::string_view key, std::string_view value) override;
  Result<bool> Campaign(std::string_view key, std::string_view id) override;

 private:
  explicit EtcdStore(EtcdOptions opts) : opts_(std::move(opts)) {}
  // One gateway call, failing over across endpoints on network errors;
  // with etcd auth, a new token once when etcd says the old one is bad.
  Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& body);
  Result<nlohmann::json> CallOnce(const std::string& path, const nlohmann::json& body);
  // A new auth token (etcd auth on), dropping pooled connections that carry
  // the old one.
  Status Authenticate();
  // A client's options: timeouts, TLS, and the auth token of the moment.
  http::ClientOptions ClientOpts(int64_t io_timeout_ms);
  Result<int64_t> PutWithLease(std::string_view key, std::string_view value, int64_t lease,
                               int64_t expected);
  Result<int64_t> EnsureLease();
  void KeepAlive();

  struct Watcher;
  void RunWatch(std::shared_ptr<Watcher> w);

  const EtcdOptions opts_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<http::Client>> idle_;  // guarded by pool_mu_
  std::string auth_token_;                           // guarded by pool_mu_
  std::atomic<size_t> next_endpoint_{0};

  std::mutex watch_mu_;
  int64_t next_watch_ = 1;                                // guarded by watch_mu_
  std::map<int64_t, std::shared_ptr<Watcher>> watchers_;  // guarded by watch_mu_

  std::mutex lease_mu_;
  int64_t lease_ = 0;              // guarded by lease_mu_
  std::thread keepalive_;          // started under lease_mu_; joined by the destructor
  std::atomic<bool> stop_{false};  // the destructor ends the keepalive thread
};

}  // namespace weft::control::store
