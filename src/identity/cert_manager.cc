#include "identity/cert_manager.h"

#include <unistd.h>

#include <algorithm>

#include "base/log.h"
#include "base/time.h"
#include "identity/ca.h"

namespace weft::identity {

namespace {

constexpr int64_t kBackoffMinMs = 500;
constexpr int64_t kBackoffMaxMs = 15000;
constexpr int64_t kRotateSpreadMs = 3000;  // a new signing root: renew within this

}  // namespace

CertManager::CertManager(SignFn sign, OnCertFn on_cert, const Clock& clock)
    : sign_(std::move(sign)),
      on_cert_(std::move(on_cert)),
      clock_(clock),
      rng_(static_cast<uint64_t>(MonoNanos()) ^ (static_cast<uint64_t>(getpid()) << 32)) {}

CertManager::~CertManager() { Stop(); }

int64_t CertManager::RenewAt(int64_t now_ms, int64_t not_after_ms, Rng& rng) {
  const int64_t left = std::max<int64_t>(0, not_after_ms - now_ms);
  const int64_t pct = 40 + static_cast<int64_t>(rng.Below(21));  // 40..60
  return now_ms + left * pct / 100;
}

void CertManager::Want(const std::string& ns, const std::string& service) {
  std::lock_guard<std::mutex> l(mu_);
  const std::string key = ns + "/" + service;
  if (entries_.count(key)) return;
  Entry e;
  e.ns = ns;
  e.service = service;
  entries_.emplace(key, std::move(e));
  cv_.notify_all();
}

void CertManager::SetBundle(const std::string& trust_domain, const std::string& active_root_id) {
  std::lock_guard<std::mutex> l(mu_);
  trust_domain_ = trust_domain;
  if (active_root_ == active_root_id) {
    cv_.notify_all();
    return;
  }
  active_root_ = active_root_id;
  const int64_t now = clock_.WallMillis();
  for (auto& [k, e] : entries_) {
    if (!e.cert.cert_chain_pem.empty() && e.cert.root_id != active_root_id) {
      e.next_ms = std::min(e.next_ms, now + static_cast<int64_t>(rng_.Below(kRotateSpreadMs)));
    }
  }
  cv_.notify_all();
}

void CertManager::Start() {
  thread_ = std::thread([this] { Run(); });
}

void CertManager::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

uint64_t CertManager::issued() const {
  std::lock_guard<std::mutex> l(mu_);
  return issued_;
}

uint64_t CertManager::failures() const {
  std::lock_guard<std::mutex> l(mu_);
  return failures_;
}

uint64_t CertManager::passes() const {
  std::lock_guard<std::mutex> l(mu_);
  return passes_;
}

void CertManager::Run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    ++passes_;
    if (trust_domain_.empty()) {
      cv_.wait(l);
      continue;
    }
    // The entry due first.
    Entry* due = nullptr;
    for (auto& [k, e] : entries_)
      if (!due || e.next_ms < due->next_ms) due = &e;
    if (!due) {
      cv_.wait(l);
      continue;
    }
    if (due->next_ms > clock_.WallMillis()) {
      clock_.WaitUntilWall(l, cv_, due->next_ms);
      continue;
    }
    const std::string ns = due->ns, service = due->service, td = trust_domain_;
    const std::string key_name = ns + "/" + service;
    l.unlock();
    // Key and CSR here; only the CSR leaves this process.
    Result<Issued> got = Status(StatusCode::kInternal, "no key");
    std::string key_pem;
    auto key = NewKey();
    auto id = SpiffeId(td, ns, service);
    if (key.ok() && id.ok()) {
      key_pem = key.value();
      auto csr = NewCsr(key_pem, id.value());
      got = csr.ok() ? sign_(csr.value(), ns, service) : Result<Issued>(csr.status());
    } else {
      got = key.ok() ? Result<Issued>(id.status()) : Result<Issued>(key.status());
    }
    l.lock();
    auto it = entries_.find(key_name);
    if (it == entries_.end()) continue;
    Entry& e = it->second;
    if (got.ok()) {
      e.cert = got.value();
      e.failures = 0;
      e.next_ms = RenewAt(clock_.WallMillis(), e.cert.not_after_unix * 1000, rng_);
      // Issued by a root that is already being replaced: go again soon.
      if (!active_root_.empty() && e.cert.root_id != active_root_)
        e.next_ms = std::min(e.next_ms, clock_.WallMillis() + kRotateSpreadMs);
      ++issued_;
      const Issued cert = e.cert;
      const int64_t renew_in_s = (e.next_ms - clock_.WallMillis()) / 1000;
      l.unlock();
      LOG_INFO("workload certificate for {} issued, valid until {} (renewing in {} s)",
               cert.spiffe_id, cert.not_after_unix, renew_in_s);
      on_cert_(ns, service, key_pem, cert);
      l.lock();
    } else {
      ++failures_;
      ++e.failures;
      int64_t backoff = kBackoffMinMs << std::min(e.failures - 1, 5);
      backoff = std::min(backoff, kBackoffMaxMs);
      backoff =
          backoff / 2 + static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(backoff / 2 + 1)));
      e.next_ms = clock_.WallMillis() + backoff;
      LOG_WARN("workload certificate for {}/{}: {} (retrying in {} ms)", ns, service,
               got.status().message(), backoff);
    }
  }
}

}  // namespace weft::identity
