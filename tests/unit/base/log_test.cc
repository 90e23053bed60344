#include "base/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace weft::log {
namespace {

TEST(Limiter, LetsAFewThroughEachSecondAndCountsTheRest) {
  Limiter lim(3);
  uint64_t suppressed = 99;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(lim.Allow(100, &suppressed)) << i;
    EXPECT_EQ(suppressed, 0u);
  }
  for (int i = 0; i < 7; ++i) EXPECT_FALSE(lim.Allow(100, &suppressed));
  // The first line of the next second carries the count, once.
  ASSERT_TRUE(lim.Allow(101, &suppressed));
  EXPECT_EQ(suppressed, 7u);
  ASSERT_TRUE(lim.Allow(101, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  ASSERT_TRUE(lim.Allow(101, &suppressed));
  EXPECT_FALSE(lim.Allow(101, &suppressed));
  // Seconds in which nothing was let through add up.
  ASSERT_TRUE(lim.Allow(102, &suppressed));
  EXPECT_EQ(suppressed, 1u);
  ASSERT_TRUE(lim.Allow(200, &suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST(Limiter, SharedByThreadsKeepsTheBudgetAndLosesNoCount) {
  Limiter lim(5);
  std::atomic<uint64_t> allowed{0}, reported{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        uint64_t s = 0;
        if (lim.Allow(7, &s)) {
          allowed += 1;
          reported += s;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 5u);  // one window: exactly the budget
  uint64_t s = 0;
  ASSERT_TRUE(lim.Allow(8, &s));
  EXPECT_EQ(reported.load() + s, 40000u - 5u);
}

// Runs `f` with stderr going to a file, and returns what it wrote.
template <typename F>
std::string CaptureStderr(F&& f) {
  std::FILE* tmp = std::tmpfile();
  const int saved = dup(STDERR_FILENO);
  dup2(fileno(tmp), STDERR_FILENO);
  f();
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string out;
  std::rewind(tmp);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, tmp)) > 0) out.append(buf, n);
  std::fclose(tmp);
  return out;
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(LogLimited, EachCallSiteHasItsOwnBudgetAndDroppedLinesAreNotFormatted) {
  int formatted = 0;
  auto arg = [&] { return ++formatted; };
  const std::string out = CaptureStderr([&] {
    for (int i = 0; i < 200; ++i) LOG_WARN_LIMITED("site one {}", arg());
    for (int i = 0; i < 200; ++i) LOG_WARN_LIMITED("site two {}", i);
  });
  // Five a second per site (ten if the loop ran across a second boundary).
  const size_t one = Count(out, "[warn] site one"), two = Count(out, "[warn] site two");
  EXPECT_GE(one, 5u) << out;
  EXPECT_LE(one, 10u) << out;
  EXPECT_GE(two, 5u) << out;
  EXPECT_LE(two, 10u) << out;
  EXPECT_EQ(static_cast<size_t>(formatted), one);
}

TEST(LogLimited, BelowTheLevelNothingIsWrittenOrCounted) {
  SetLevel(Level::kError);
  const std::string out = CaptureStderr([] {
    for (int i = 0; i < 50; ++i) LOG_WARN_LIMITED("quiet {}", i);
  });
  SetLevel(Level::kInfo);
  EXPECT_EQ(out, "");
}

TEST(LogLimited, TheSummaryNamesHowManyWereDropped) {
  const std::string out = CaptureStderr([] { WriteLimited(Level::kWarn, "flood from x", 41); });
  EXPECT_NE(out.find("[warn] flood from x (41 similar lines suppressed)\n"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace weft::log
