// EtcdStore against a real etcd (Debian's etcd-server), started per test
// suite on free loopback ports.
#include "control/store/etcd_store.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "etcd_server.h"

namespace weft::control::store {
namespace {

class EtcdStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new EtcdServer("store-test");
    if (!server_->error().empty()) FAIL() << server_->error();
    client_ = server_->port();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  std::unique_ptr<EtcdStore> Open(const std::string& prefix) {
    EtcdOptions o;
    o.endpoints = {"127.0.0.1:" + std::to_string(client_)};
    o.prefix = prefix;
    o.range_page = 3;  // exercise paging
    auto s = EtcdStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  static inline EtcdServer* server_ = nullptr;
  static inline int client_ = 0;
};

TEST_F(EtcdStoreTest, PutGetCasDeleteRange) {
  auto s = Open("/t1/");
  ASSERT_NE(s, nullptr);
  auto r1 = s->Put("a", "1");
  ASSERT_TRUE(r1.ok());
  auto kv = s->Get("a");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->value, "1");
  EXPECT_EQ(kv->mod_revision, r1.value());
  // CAS: right expectation writes, wrong one refuses, 0 means "must not exist".
  EXPECT_TRUE(s->PutIf("a", "2", r1.value()).ok());
  EXPECT_EQ(s->PutIf("a", "3", r1.value()).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->PutIf("a", "3", 0).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(s->PutIf("b", "x", 0).ok());
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(s->Put("list/" + std::to_string(i), "v").ok());
  auto range = s->Range("list/");
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->kvs.size(), 8u);  // over three pages of 3
  EXPECT_EQ(range->kvs.front().key, "list/0");
  EXPECT_TRUE(s->Delete("a").ok());
  EXPECT_EQ(s->Delete("a").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(s->Get("a").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(s->shared());
}

TEST_F(EtcdStoreTest, WatchDeliversWritesInOrderPerRevision) {
  auto s = Open("/t2/");
  ASSERT_NE(s, nullptr);
  const int64_t start = s->Revision();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Event> got;
  auto id = s->Watch("k/", start, [&](const std::vector<Event>& evs) {
    std::lock_guard<std::mutex> l(mu);
    got.insert(got.end(), evs.begin(), evs.end());
    cv.notify_all();
  });
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(s->Put("k/1", "a").ok());
  ASSERT_TRUE(s->Put("other", "ignored").ok());
  ASSERT_TRUE(s->Delete("k/1").ok());
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(5), [&] { return got.size() >= 2; }));
  EXPECT_EQ(got[0].type, Event::Type::kPut);
  EXPECT_EQ(got[0].kv.key, "k/1");
  EXPECT_EQ(got[1].type, Event::Type::kDelete);
  EXPECT_GT(got[1].kv.mod_revision, got[0].kv.mod_revision);
  l.unlock();
  s->Unwatch(id.value());
}

TEST_F(EtcdStoreTest, WatchBehindACompactionGetsTheWholeStateAsAReset) {
  auto s = Open("/t3/");
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->Put("k/gone", "x").ok());
  const int64_t old = s->Revision();
  ASSERT_TRUE(s->Delete("k/gone").ok());
  ASSERT_TRUE(s->Put("k/kept", "y").ok());
  // Compact history past `old`: a watch from there cannot be replayed.
  http::Client c("127.0.0.1:" + std::to_string(client_));
  auto r = c.Do("POST", "/v3/kv/compaction",
                R"({"revision":")" + std::to_string(s->Revision()) + R"(","physical":true})");
  ASSERT_TRUE(r.ok() && r->status == 200);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Event> got;
  auto id = s->Watch("k/", old, [&](const std::vector<Event>& evs) {
    std::lock_guard<std::mutex> l(mu);
    got = evs;
    cv.notify_all();
  });
  ASSERT_TRUE(id.ok());
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10), [&] { return !got.empty(); }));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].type, Event::Type::kReset);
  EXPECT_EQ(got[1].type, Event::Type::kPut);
  EXPECT_EQ(got[1].kv.key, "k/kept");
  l.unlock();
  s->Unwatch(id.value());
}

TEST_F(EtcdStoreTest, CampaignHasOneHolder) {
  auto a = Open("/t4/");
  auto b = Open("/t4/");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto ra = a->Campaign("leader", "a");
  auto rb = b->Campaign("leader", "b");
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_TRUE(ra.value());
  EXPECT_FALSE(rb.value());
  EXPECT_TRUE(a->Campaign("leader", "a").value());  // still ours
}

TEST_F(EtcdStoreTest, UnreachableClusterSaysSo) {
  EtcdOptions o;
  o.endpoints = {"127.0.0.1:" + std::to_string(EtcdServer::ReservePort())};
  auto s = EtcdStore::Open(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("no member answers"), std::string::npos);
  EXPECT_FALSE(EtcdStore::Open("http://x:1", EtcdOptions{}).ok());
}

}  // namespace
}  // namespace weft::control::store
