#include "proxy/stats.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

namespace weft::proxy {
namespace {

TEST(Exemplars, TheLatestTracedRequestOfEachBucket) {
  Exemplars ex;
  uint8_t a[16], b[16];
  for (int i = 0; i < 16; ++i) {
    a[i] = static_cast<uint8_t>(i);
    b[i] = static_cast<uint8_t>(0xf0 + i);
  }
  Exemplars::Read r;
  EXPECT_FALSE(ex.Get(Histogram::BucketOf(2000), &r));  // none yet
  ex.Record(2000, a, 1700000000123);
  ex.Record(40000, b, 1700000000200);
  ASSERT_TRUE(ex.Get(Histogram::BucketOf(2000), &r));
  EXPECT_EQ(std::memcmp(r.trace_id, a, 16), 0);
  EXPECT_EQ(r.value_us, 2000u);
  EXPECT_EQ(r.wall_ms, 1700000000123u);
  ex.Record(1500, b, 1700000000300);  // same bucket (1..2.5 ms): replaces
  ASSERT_TRUE(ex.Get(Histogram::BucketOf(2000), &r));
  EXPECT_EQ(std::memcmp(r.trace_id, b, 16), 0);
  EXPECT_EQ(r.value_us, 1500u);
  ASSERT_TRUE(ex.Get(Histogram::BucketOf(40000), &r));
  EXPECT_EQ(r.value_us, 40000u);
}

TEST(Exemplars, AReaderNeverSeesAHalfWrittenOne) {
  // One writer (a worker) alternates two exemplars whose fields all say
  // which one they are; a reader (a scrape) must see one or the other.
  Exemplars ex;
  uint8_t ids[2][16];
  for (int k = 0; k < 2; ++k) std::memset(ids[k], k ? 0xbb : 0xaa, 16);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      const int k = static_cast<int>(i & 1);
      ex.Record(k ? 1200 : 1100, ids[k], k ? 2000 : 1000);
    }
  });
  Exemplars::Read first;
  while (!ex.Get(Histogram::BucketOf(1100), &first)) std::this_thread::yield();
  int seen = 0;
  for (int i = 0; i < 200000; ++i) {
    Exemplars::Read r;
    if (!ex.Get(Histogram::BucketOf(1100), &r)) continue;
    ++seen;
    const int k = r.trace_id[0] == 0xbb ? 1 : 0;
    ASSERT_EQ(std::memcmp(r.trace_id, ids[k], 16), 0);
    ASSERT_EQ(r.value_us, k ? 1200u : 1100u);
    ASSERT_EQ(r.wall_ms, k ? 2000u : 1000u);
  }
  stop = true;
  writer.join();
  EXPECT_GT(seen, 0);
}

}  // namespace
}  // namespace weft::proxy
