#include "proxy/rate_limit.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace weft::proxy {
namespace {

constexpr int64_t kSecond = 1'000'000'000;

TEST(TokenBucket, ABurstThenTheRate) {
  TokenBucket b(10, 5);  // 10/s, 5 at once
  const int64_t t0 = 100 * kSecond;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.Take(t0), 0) << i;
  const int64_t wait = b.Take(t0);
  EXPECT_EQ(wait, kSecond / 10);  // the next token in 100 ms
  EXPECT_GT(b.Take(t0 + kSecond / 10 - 1), 0);
  EXPECT_EQ(b.Take(t0 + kSecond / 10), 0);
  // A second later: 10 more tokens, but no more than the burst (5).
  int got = 0;
  while (b.Take(t0 + 2 * kSecond) == 0) ++got;
  EXPECT_EQ(got, 5);
  EXPECT_FALSE(b.Full(t0 + 2 * kSecond));
  EXPECT_TRUE(b.Full(t0 + 3 * kSecond));
}

TEST(TokenBucket, BurstDefaultsToOneSecondsWorth) {
  TokenBucket b(20, 0);
  int got = 0;
  while (b.Take(kSecond) == 0) ++got;
  EXPECT_EQ(got, 20);
}

TEST(TokenBucket, ThreadsTakeExactlyWhatThereIs) {
  TokenBucket b(1, 1000);
  std::atomic<int> got{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (b.Take(5 * kSecond) == 0) ++got;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(got.load(), 1000);
}

TEST(RateLimiter, EachCallerHasItsOwnBucketAndAllShareOne) {
  RateLimiter rl(mesh::RateLimit{10, 10, 3, 3});
  const int64_t t = 7 * kSecond;
  int a = 0, b = 0;
  for (int i = 0; i < 10; ++i) a += rl.Check("spiffe://x/a", t) == 0;
  EXPECT_EQ(a, 3);  // a's own limit
  for (int i = 0; i < 10; ++i) b += rl.Check("spiffe://x/b", t) == 0;
  EXPECT_EQ(b, 3);
  // Callers over their own limit spent nothing of the shared bucket: 4 left.
  int others = 0;
  for (int c = 0; c < 10; ++c) others += rl.Check("10.0.0." + std::to_string(c), t) == 0;
  EXPECT_EQ(others, 4);
  // Retry-after: whole seconds, at least one.
  EXPECT_EQ(rl.Check("spiffe://x/a", t), 1);
  RateLimiter slow(mesh::RateLimit{1, 1, 0, 0});
  EXPECT_EQ(slow.Check("", t), 0);
  EXPECT_EQ(slow.Check("", t), 1);
}

TEST(RateLimiter, TheCallerTableIsBoundedAndIdleCallersAreSweptOut) {
  RateLimiter rl(mesh::RateLimit{0, 0, 1, 1});
  const int64_t t = 10 * kSecond;
  for (size_t i = 0; i < RateLimiter::kMaxCallers; ++i)
    EXPECT_EQ(rl.Check("c" + std::to_string(i), t), 0);
  EXPECT_EQ(rl.callers(), RateLimiter::kMaxCallers);
  // Full and nobody idle yet: newcomers share one bucket.
  EXPECT_EQ(rl.Check("new1", t), 0);
  EXPECT_GT(rl.Check("new2", t), 0);
  EXPECT_EQ(rl.callers(), RateLimiter::kMaxCallers);
  // Two seconds on every bucket has refilled: the table is swept.
  EXPECT_EQ(rl.Check("new3", t + 2 * kSecond), 0);
  EXPECT_EQ(rl.callers(), 1u);
}

}  // namespace
}  // namespace weft::proxy
