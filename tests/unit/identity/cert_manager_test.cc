#include "identity/cert_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "identity/ca.h"

namespace weft::identity {
namespace {

TEST(CertManager, RenewsAtFortyToSixtyPercentOfWhatIsLeft) {
  Rng rng(42);
  int64_t lo = INT64_MAX, hi = 0;
  for (int i = 0; i < 2000; ++i) {
    const int64_t at = CertManager::RenewAt(1000, 1000 + 60000, rng);
    lo = std::min(lo, at - 1000);
    hi = std::max(hi, at - 1000);
  }
  EXPECT_GE(lo, 24000);
  EXPECT_LE(hi, 36000);
  EXPECT_LT(lo, 26000);  // jitter really spreads
  EXPECT_GT(hi, 34000);
  EXPECT_EQ(CertManager::RenewAt(5000, 4000, rng), 5000);  // expired: now
}

// A real CA behind the sign function; the key never reaches it.
struct Fixture {
  KeyPair root = NewRoot("weft.local").value();
  std::unique_ptr<Authority> ca =
      Authority::Load(root.cert_pem, root.key_pem, "weft.local").value();
  std::string root_id = Fingerprint(root.cert_pem).value();
  std::mutex mu;
  std::vector<std::pair<std::string, Issued>> got;  // (key, cert)
  std::atomic<int> fail_next{0};
  int64_t ttl_s = 60;

  CertManager::SignFn Sign() {
    return [this](const std::string& csr, const std::string& ns,
                  const std::string& service) -> Result<Issued> {
      if (fail_next > 0) {
        --fail_next;
        return Status(StatusCode::kUnavailable, "server down");
      }
      EXPECT_EQ(csr.find("PRIVATE KEY"), std::string::npos);
      auto id = SpiffeId("weft.local", ns, service).value();
      auto cert = ca->Sign(csr, id, ttl_s);
      if (!cert.ok()) return cert.status();
      return Issued{cert.value(), id, root_id, NotAfterUnix(cert.value()).value()};
    };
  }
  CertManager::OnCertFn OnCert() {
    return [this](const std::string&, const std::string&, const std::string& key, const Issued& c) {
      std::lock_guard<std::mutex> l(mu);
      got.emplace_back(key, c);
    };
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu);
    return got.size();
  }
};

bool WaitFor(const std::function<bool()>& pred, int ms = 10000) {
  for (int i = 0; i < ms / 10; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// Time is a ManualClock: backoffs and renewal points pass when the test
// moves it, and "nothing happened" is checked after the renewal thread has
// looked at the new time (passes() grew), not after a sleep.
TEST(CertManager, RetriesWithBackoffRenewsAtHalfLifeAndSoonOnANewRoot) {
  ManualClock clock;
  Fixture f;
  f.ttl_s = 3600;
  f.fail_next = 2;
  CertManager m(f.Sign(), f.OnCert(), clock);
  m.Want("default", "web");
  m.Start();
  const auto looked_again = [&] {
    const uint64_t p = m.passes();
    return WaitFor([&] { return m.passes() >= p + 2; });
  };
  ASSERT_TRUE(WaitFor([&] { return m.passes() >= 1; }));
  EXPECT_EQ(f.count(), 0u) << "nothing before the trust domain is known";

  // The first try fails at once; the retry waits out its backoff (0.5 s,
  // then 1 s, jittered down to half) on the clock.
  m.SetBundle("weft.local", f.root_id);
  ASSERT_TRUE(WaitFor([&] { return m.failures() == 1; }));
  ASSERT_TRUE(looked_again());
  EXPECT_EQ(m.failures(), 1u) << "no retry before the backoff";
  clock.Advance(500);
  ASSERT_TRUE(WaitFor([&] { return m.failures() == 2; }));
  clock.Advance(1000);
  ASSERT_TRUE(WaitFor([&] { return f.count() == 1; }));
  {
    std::lock_guard<std::mutex> l(f.mu);
    const auto& [key, cert] = f.got[0];
    EXPECT_EQ(VerifyWorkload(cert.cert_chain_pem, f.root.cert_pem).value(),
              "spiffe://weft.local/ns/default/sa/web");
    EXPECT_NE(key.find("PRIVATE KEY"), std::string::npos);
  }

  // Renewal at 40-60% of what was left of the hour: not at 39%, by 61%.
  clock.Advance(1404 * 1000);
  ASSERT_TRUE(looked_again());
  EXPECT_EQ(f.count(), 1u) << "renewed before 40% of the lifetime";
  clock.Advance(792 * 1000);
  ASSERT_TRUE(WaitFor([&] { return f.count() == 2; }));

  // A new signing root: renewed within 3 s of clock time, not at half-life.
  m.SetBundle("weft.local", "another-root");
  clock.Advance(3000);
  ASSERT_TRUE(WaitFor([&] { return f.count() >= 3; }));
  std::lock_guard<std::mutex> l(f.mu);
  EXPECT_NE(f.got[0].first, f.got[1].first) << "each certificate gets a fresh key";
  EXPECT_NE(f.got[1].first, f.got[2].first);
  m.Stop();
}

}  // namespace
}  // namespace weft::identity
