// An in-memory Store: what the node agent keeps its copy of the catalog in,
// so the same API code serves reads (and blocking queries) on the server and
// on the agent. Revisions are its own, counted from 1; nothing is durable
// here (the agent persists its cache separately). Thread-safe.
//
// Watch callbacks run on the writing thread, under mu_, before the write
// returns; Watch replays nothing (it only starts at the current revision).
// A callback must not Unwatch.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "control/store/store.h"

namespace weft::control::store {

class MemoryStore final : public Store {
 public:
  Result<int64_t> Put(std::string_view key, std::string_view value) override;
  Result<int64_t> PutIf(std::string_view key, std::string_view value, int64_t expected) override;
  Result<int64_t> Delete(std::string_view key) override;
  Result<int64_t> DeleteIf(std::string_view key, int64_t expected) override;
  Result<KeyValue> Get(std::string_view key) override;
  Result<RangeResult> Range(std::string_view prefix) override;
  int64_t Revision() override;
  Result<int64_t> Watch(std::string_view prefix, int64_t after_revision, WatchCallback cb) override;
  void Unwatch(int64_t id) override;

  // Replaces everything under `prefix` with `kvs` in one revision (puts for
  // new or changed keys, deletes for the rest), as one watch batch.
  int64_t ReplacePrefix(std::string_view prefix, const std::map<std::string, std::string>& kvs);

 private:
  void Notify(const std::vector<Event>& events);

  // Guards everything below. Watch callbacks run under it, on the writer's
  // thread (recursive: a callback may read the store). Unwatch takes it, so
  // no callback runs once Unwatch has returned.
  std::recursive_mutex mu_;
  std::map<std::string, KeyValue, std::less<>> kvs_;
  int64_t revision_ = 0;
  int64_t next_watch_ = 1;
  struct Watcher {
    std::string prefix;
    WatchCallback cb;
  };
  std::map<int64_t, Watcher> watchers_;
};

}  // namespace weft::control::store
