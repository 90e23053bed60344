// The Store contract (control/store/store.h), once, for every implementation:
// the embedded SQLite store, the memory store the agent keeps its catalog in,
// and etcd (a real etcd-server on loopback). A new store passes this suite
// before the server may run on it.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "control/store/etcd_store.h"
#include "control/store/memory_store.h"
#include "control/store/sqlite_store.h"
#include "etcd_server.h"

namespace weft::control::store {
namespace {

namespace fs = std::filesystem;

// One etcd for the whole binary, started on first use.
EtcdServer& Etcd() {
  static EtcdServer e("conformance");
  return e;
}

struct Impl {
  std::string name;
  // Opens a fresh, empty store (`tag` keeps instances apart).
  std::function<std::unique_ptr<Store>(const std::string& tag)> open;
  bool keeps_history = true;  // watches may start before the current revision
};

std::vector<Impl> Impls() {
  return {
      {"sqlite",
       [](const std::string& tag) -> std::unique_ptr<Store> {
         fs::path dir = fs::temp_directory_path() /
                        ("weft-conformance-" + std::to_string(getpid()) + "-" + tag);
         fs::remove_all(dir);
         fs::create_directories(dir);
         auto s = SqliteStore::Open(SqliteOptions{(dir / "weft.db").string()});
         EXPECT_TRUE(s.ok()) << s.status().message();
         return s.ok() ? std::move(s).value() : nullptr;
       },
       true},
      {"memory", [](const std::string&) { return std::make_unique<MemoryStore>(); }, false},
      {"etcd",
       [](const std::string& tag) -> std::unique_ptr<Store> {
         EtcdServer& e = Etcd();
         EXPECT_EQ(e.error(), "");
         if (!e.error().empty()) return nullptr;
         EtcdOptions o;
         o.endpoints = {e.endpoint()};
         o.prefix = "/conformance/" + tag + "/";
         o.range_page = 3;  // exercise paging
         auto s = EtcdStore::Open(o);
         EXPECT_TRUE(s.ok()) << s.status().message();
         return s.ok() ? std::move(s).value() : nullptr;
       },
       true},
  };
}

class StoreConformance : public ::testing::TestWithParam<Impl> {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    store_ = GetParam().open(info->name() + std::string("-") + std::to_string(++serial_));
    ASSERT_NE(store_, nullptr);
  }
  std::unique_ptr<Store> store_;
  static inline int serial_ = 0;
};

// Collects watch events; waits on a count, never on a bare sleep.
class Events {
 public:
  WatchCallback cb() {
    return [this](const std::vector<Event>& batch) {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& e : batch) events_.push_back(e);
      cv_.notify_all();
    };
  }
  std::vector<Event> WaitFor(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::seconds(10), [&] { return events_.size() >= n; });
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
};

TEST_P(StoreConformance, WritesAdvanceOneRevisionAndReadBack) {
  const int64_t start = store_->Revision();
  auto r1 = store_->Put("a", "1");
  ASSERT_TRUE(r1.ok());
  EXPECT_GT(r1.value(), start);
  auto r2 = store_->Put("a", "2");
  ASSERT_TRUE(r2.ok());
  EXPECT_GT(r2.value(), r1.value());
  EXPECT_EQ(store_->Revision(), r2.value());
  auto kv = store_->Get("a");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->value, "2");
  EXPECT_EQ(kv->create_revision, r1.value());
  EXPECT_EQ(kv->mod_revision, r2.value());
  EXPECT_EQ(store_->Get("missing").status().code(), StatusCode::kNotFound);
}

TEST_P(StoreConformance, CompareAndSwapWritesOnlyOnTheExpectedRevision) {
  auto r1 = store_->Put("k", "v1");
  ASSERT_TRUE(r1.ok());
  EXPECT_TRUE(store_->PutIf("k", "v2", r1.value()).ok());
  EXPECT_EQ(store_->PutIf("k", "v3", r1.value()).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->PutIf("k", "v3", 0).status().code(), StatusCode::kFailedPrecondition)
      << "0 means: must not exist";
  EXPECT_TRUE(store_->PutIf("new", "x", 0).ok());
  EXPECT_EQ(store_->Get("k")->value, "v2") << "a refused write changes nothing";
}

TEST_P(StoreConformance, DeleteAdvancesTheRevisionAndMissingKeysAreNotFound) {
  ASSERT_TRUE(store_->Put("d", "1").ok());
  const int64_t before = store_->Revision();
  auto del = store_->Delete("d");
  ASSERT_TRUE(del.ok());
  EXPECT_GT(del.value(), before);
  EXPECT_EQ(store_->Delete("d").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Get("d").status().code(), StatusCode::kNotFound);
}

TEST_P(StoreConformance, DeleteIfDeletesOnlyTheExpectedRevision) {
  auto r1 = store_->Put("c", "1");
  ASSERT_TRUE(r1.ok());
  auto r2 = store_->Put("c", "2");
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(store_->DeleteIf("c", r1.value()).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Get("c")->value, "2") << "a refused delete changes nothing";
  auto del = store_->DeleteIf("c", r2.value());
  ASSERT_TRUE(del.ok()) << del.status().message();
  EXPECT_GT(del.value(), r2.value());
  EXPECT_EQ(store_->Get("c").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteIf("c", r2.value()).status().code(), StatusCode::kNotFound);
}

TEST_P(StoreConformance, RangeIsOrderedAndStaysInsideItsPrefix) {
  for (const char* k : {"svc/b", "svc/a", "svc/c/1", "svcx", "other", "svc/ab"})
    ASSERT_TRUE(store_->Put(k, k).ok());
  auto r = store_->Range("svc/");
  ASSERT_TRUE(r.ok());
  std::vector<std::string> keys;
  for (const auto& kv : r->kvs) keys.push_back(kv.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"svc/a", "svc/ab", "svc/b", "svc/c/1"}));
  EXPECT_EQ(r->revision, store_->Revision());
  auto all = store_->Range("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->kvs.size(), 6u);
}

TEST_P(StoreConformance, WatchFollowsWritesUnderItsPrefixInRevisionOrder) {
  Events ev;
  auto id = store_->Watch("w/", store_->Revision(), ev.cb());
  ASSERT_TRUE(id.ok()) << id.status().message();
  auto p1 = store_->Put("w/1", "a");
  ASSERT_TRUE(store_->Put("elsewhere", "x").ok());
  auto p2 = store_->Put("w/2", "b");
  auto d1 = store_->Delete("w/1");
  ASSERT_TRUE(p1.ok() && p2.ok() && d1.ok());
  auto got = ev.WaitFor(3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, Event::Type::kPut);
  EXPECT_EQ(got[0].kv.key, "w/1");
  EXPECT_EQ(got[0].kv.mod_revision, p1.value());
  EXPECT_EQ(got[1].kv.key, "w/2");
  EXPECT_EQ(got[2].type, Event::Type::kDelete);
  EXPECT_EQ(got[2].kv.key, "w/1");
  EXPECT_EQ(got[2].kv.mod_revision, d1.value());
  store_->Unwatch(id.value());
  ASSERT_TRUE(store_->Put("w/3", "c").ok());
  // A marker watch proves the write was delivered before checking absence.
  Events marker;
  auto mid = store_->Watch("w/", d1.value(), marker.cb());
  if (mid.ok()) {
    marker.WaitFor(1);
    store_->Unwatch(mid.value());
  }
  EXPECT_EQ(ev.WaitFor(0).size(), 3u) << "nothing after Unwatch";
}

TEST_P(StoreConformance, AWatchFromThePastReplaysOrSaysItCannot) {
  auto p1 = store_->Put("h/1", "a");
  auto p2 = store_->Put("h/2", "b");
  ASSERT_TRUE(p1.ok() && p2.ok());
  Events ev;
  auto id = store_->Watch("h/", p1.value() - 1, ev.cb());
  if (!GetParam().keeps_history) {
    EXPECT_EQ(id.status().code(), StatusCode::kFailedPrecondition)
        << "a store without history refuses, so the caller re-reads with Range";
    return;
  }
  ASSERT_TRUE(id.ok()) << id.status().message();
  auto got = ev.WaitFor(2);
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got[0].kv.key, "h/1");
  EXPECT_EQ(got[1].kv.key, "h/2");
  EXPECT_EQ(got[1].kv.mod_revision, p2.value());
  store_->Unwatch(id.value());
}

INSTANTIATE_TEST_SUITE_P(AllStores, StoreConformance, ::testing::ValuesIn(Impls()),
                         [](const ::testing::TestParamInfo<Impl>& i) { return i.param.name; });

}  // namespace
}  // namespace weft::control::store
