#include "control/store/sqlite_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace weft::control::store {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-store-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/store.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<SqliteStore> Open(int64_t history = 10000) {
    auto s = SqliteStore::Open({path_, history});
    EXPECT_TRUE(s.ok()) << s.status().message();
    return std::move(s).value();
  }
  std::string dir_, path_;
};

TEST_F(SqliteStoreTest, PutGetDeleteAndRevisions) {
  auto s = Open();
  EXPECT_EQ(s->Revision(), 0);
  EXPECT_EQ(s->Put("/a", "1").value(), 1);
  EXPECT_EQ(s->Put("/b", "2").value(), 2);
  EXPECT_EQ(s->Put("/a", "3").value(), 3);
  auto a = s->Get("/a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->value, "3");
  EXPECT_EQ(a->create_revision, 1);
  EXPECT_EQ(a->mod_revision, 3);
  EXPECT_EQ(s->Delete("/a").value(), 4);
  EXPECT_EQ(s->Get("/a").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(s->Delete("/a").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(s->Revision(), 4);
  EXPECT_EQ(s->Put("", "x").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SqliteStoreTest, RangeByPrefixIsOrdered) {
  auto s = Open();
  for (const char* k : {"/svc/b", "/svc/a", "/svd/x", "/sv", "/svc/c"})
    ASSERT_TRUE(s->Put(k, k).ok());
  auto r = s->Range("/svc/");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 3u);
  EXPECT_EQ(r->kvs[0].key, "/svc/a");
  EXPECT_EQ(r->kvs[2].key, "/svc/c");
  EXPECT_EQ(r->revision, 5);
  EXPECT_EQ(s->Range("").value().kvs.size(), 5u);
  // Binary keys with 0xff bytes sort and range correctly.
  ASSERT_TRUE(s->Put(std::string("\xff\xff", 2), "hi").ok());
  EXPECT_EQ(s->Range(std::string("\xff", 1)).value().kvs.size(), 1u);
}

TEST_F(SqliteStoreTest, CompareAndSwap) {
  auto s = Open();
  EXPECT_EQ(s->PutIf("/k", "v1", 0).value(), 1);  // create only if absent
  EXPECT_EQ(s->PutIf("/k", "v2", 0).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->PutIf("/k", "v2", 1).value(), 2);
  EXPECT_EQ(s->PutIf("/k", "v3", 1).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->Get("/k").value().value, "v2");
  EXPECT_EQ(s->Revision(), 2) << "a failed compare-and-swap does not advance the revision";
}

TEST_F(SqliteStoreTest, WatchReplaysHistoryThenFollows) {
  auto s = Open();
  ASSERT_TRUE(s->Put("/w/1", "a").ok());
  ASSERT_TRUE(s->Put("/other", "x").ok());
  ASSERT_TRUE(s->Put("/w/2", "b").ok());
  std::vector<Event> seen;
  auto id = s->Watch("/w/", 0, [&](const std::vector<Event>& evs) {
    seen.insert(seen.end(), evs.begin(), evs.end());
  });
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].kv.key, "/w/1");
  EXPECT_EQ(seen[1].kv.mod_revision, 3);
  ASSERT_TRUE(s->Delete("/w/1").ok());
  ASSERT_TRUE(s->Put("/x", "ignored").ok());
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].type, Event::Type::kDelete);
  EXPECT_EQ(seen[2].kv.mod_revision, 4);
  s->Unwatch(id.value());
  ASSERT_TRUE(s->Put("/w/3", "c").ok());
  EXPECT_EQ(seen.size(), 3u);
  // Resuming after a revision replays only what came later.
  std::vector<Event> resumed;
  ASSERT_TRUE(s->Watch("/w/", 4, [&](const std::vector<Event>& evs) {
                 resumed.insert(resumed.end(), evs.begin(), evs.end());
               }).ok());
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_EQ(resumed[0].kv.key, "/w/3");
}

TEST_F(SqliteStoreTest, HistoryIsBoundedAndCompactedWatchesAreRefused) {
  auto s = Open(/*history=*/5);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(s->Put("/k" + std::to_string(i), "v").ok());
  EXPECT_EQ(s->CompactedRevision(), 15);
  auto w = s->Watch("", 3, [](const std::vector<Event>&) {});
  EXPECT_EQ(w.status().code(), StatusCode::kFailedPrecondition);
  int n = 0;
  ASSERT_TRUE(s->Watch("", 15, [&](const std::vector<Event>& evs) {
                 n += static_cast<int>(evs.size());
               }).ok());
  EXPECT_EQ(n, 5);
}

TEST_F(SqliteStoreTest, ReopenRestoresEverything) {
  {
    auto s = Open();
    ASSERT_TRUE(s->Put("/a", "1").ok());
    ASSERT_TRUE(s->Put("/b", "2").ok());
    ASSERT_TRUE(s->Delete("/a").ok());
  }
  auto s = Open();
  EXPECT_EQ(s->Revision(), 3);
  EXPECT_EQ(s->Get("/b").value().value, "2");
  EXPECT_EQ(s->Get("/a").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(s->Put("/c", "3").value(), 4);
}

TEST_F(SqliteStoreTest, OpenFailureSaysWhy) {
  auto s = SqliteStore::Open({"/nonexistent-dir/x/store.db", 10});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("cannot open"), std::string::npos);
}

// A writer killed with SIGKILL right after acknowledging writes loses none.
TEST_F(SqliteStoreTest, AcknowledgedWritesSurviveKill9) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    auto s = SqliteStore::Open({path_, 100000});
    if (!s.ok()) _exit(3);
    for (int i = 0;; ++i) {
      auto r = s.value()->Put("/ack/" + std::to_string(i), std::to_string(i));
      if (!r.ok()) _exit(4);
      // Acknowledge: the revision goes out only after the commit returned.
      int64_t rev = r.value();
      if (write(fds[1], &rev, sizeof(rev)) != sizeof(rev)) _exit(5);
    }
  }
  close(fds[1]);
  int64_t last = 0, rev = 0;
  while (last < 300 && read(fds[0], &rev, sizeof(rev)) == sizeof(rev)) last = rev;
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  // Drain what the child acknowledged before it died.
  while (read(fds[0], &rev, sizeof(rev)) == sizeof(rev)) last = rev;
  close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status));
  auto s = Open();
  EXPECT_GE(s->Revision(), last);
  for (int64_t r = 1; r <= last; ++r) {
    auto kv = s->Get("/ack/" + std::to_string(r - 1));
    ASSERT_TRUE(kv.ok()) << "acknowledged write " << r << " lost";
    EXPECT_EQ(kv->mod_revision, r);
  }
}

}  // namespace
}  // namespace weft::control::store
