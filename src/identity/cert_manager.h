// Keeps workload certificates fresh: for each workload identity it manages,
// it makes a private key here, sends a CSR to the CA (through `sign`), hands
// the key and certificate to `on_cert`, and renews at about half of the
// certificate's lifetime with jitter (so a fleet issued together does not
// renew together), sooner when the CA's signing root changes. Failures are
// retried with jittered exponential backoff; the last good certificate
// stays in use meanwhile. Runs on its own thread: `sign` may block.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "base/clock.h"
#include "base/random.h"
#include "base/status.h"

namespace weft::identity {

struct Issued {
  std::string cert_chain_pem;
  std::string spiffe_id;
  std::string root_id;  // the signing root's fingerprint
  int64_t not_after_unix = 0;
};

// Want, SetBundle, issued and failures are thread-safe.
class CertManager {
 public:
  // Both run on the renewal thread, never after Stop() returns; on_cert's
  // arguments are valid only during the call.
  using SignFn = std::function<Result<Issued>(const std::string& csr_pem, const std::string& ns,
                                              const std::string& service)>;
  using OnCertFn = std::function<void(const std::string& ns, const std::string& service,
                                      const std::string& key_pem, const Issued& cert)>;

  // `clock` (renewal times, backoff) must outlive the manager.
  CertManager(SignFn sign, OnCertFn on_cert, const Clock& clock = Clock::Real());
  ~CertManager();

  // Starts managing a workload identity (idempotent).
  void Want(const std::string& ns, const std::string& service);
  // The bundle's trust domain and active root: nothing is requested before
  // the first call; certificates from another root are renewed soon after.
  void SetBundle(const std::string& trust_domain, const std::string& active_root_id);

  // Start once, then Stop (also run by the destructor) from the owner's
  // thread, never from sign or on_cert: it joins the renewal thread.
  void Start();
  void Stop();

  uint64_t issued() const;
  uint64_t failures() const;
  // How many times the renewal thread has looked at its work (woken, found
  // nothing due or done one renewal): a test that moved the clock waits for
  // this to grow before it checks that nothing happened.
  uint64_t passes() const;

  // Renewal point: `now` plus 40-60% of what is left of the lifetime.
  static int64_t RenewAt(int64_t now_unix_ms, int64_t not_after_unix_ms, Rng& rng);

 private:
  struct Entry {
    std::string ns, service;
    Issued cert;
    int64_t next_ms = 0;  // clock_'s wall time, ms
    int failures = 0;
  };
  void Run();

  const SignFn sign_;
  const OnCertFn on_cert_;
  const Clock& clock_;
  // Guards entries_, trust_domain_, active_root_, stop_, issued_,
  // failures_, passes_ and rng_; cv_ wakes the renewal thread (Run) when they change.
  // sign_ and on_cert_ are called on that thread without mu_ held.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> entries_;  // "ns/service"
  std::string trust_domain_, active_root_;
  bool stop_ = false;
  uint64_t issued_ = 0, failures_ = 0, passes_ = 0;
  Rng rng_;
  std::thread thread_;
};

}  // namespace weft::identity
