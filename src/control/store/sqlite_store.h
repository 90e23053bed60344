// The embedded store: one SQLite database in WAL mode under the server's
// data dir. Every write is one transaction committed with synchronous=FULL
// before it is acknowledged; the event history kept for watches is bounded.
//
// Watch callbacks run under mu_: the replay inside Watch() on the caller's
// thread, then each write's events on the writing thread before the write
// returns. Unwatch takes mu_, so no callback runs once it has returned; a
// callback may Unwatch (any watch), and the others due for the same event
// are still called once.
#pragma once

#include <sqlite3.h>

#include <map>
#include <mutex>
#include <string>

#include "control/store/store.h"

namespace weft::control::store {

struct SqliteOptions {
  std::string path;               // database file; created when missing
  int64_t history_limit = 10000;  // events kept for watch replay
};

class SqliteStore final : public Store {
 public:
  // Opens (or creates) the database. Unavailable with the reason on failure.
  static Result<std::unique_ptr<SqliteStore>> Open(const SqliteOptions& opts);
  ~SqliteStore() override;

  Result<int64_t> Put(std::string_view key, std::string_view value) override;
  Result<int64_t> PutIf(std::string_view key, std::string_view value, int64_t expected) override;
  Result<int64_t> Delete(std::string_view key) override;
  Result<int64_t> DeleteIf(std::string_view key, int64_t expected) override;
  Result<KeyValue> Get(std::string_view key) override;
  Result<RangeResult> Range(std::string_view prefix) override;
  int64_t Revision() override;
  Result<int64_t> Watch(std::string_view prefix, int64_t after_revision, WatchCallback cb) override;
  void Unwatch(int64_t id) override;
  Result<bool> ScrubHistory(std::string_view key) override;

  // The oldest revision whose events are still held (watch replay floor).
  int64_t CompactedRevision();

 private:
  SqliteStore(sqlite3* db, SqliteOptions opts) : db_(db), opts_(std::move(opts)) {}
  Status Init();
  Status Exec(const char* sql);
  // One write transaction: put (value != nullptr) or delete, with an optional
  // mod_revision expectation (-1: none).
  Result<int64_t> Write(std::string_view key, const std::string_view* value, int64_t expected);
  Result<std::vector<Event>> EventsAfter(std::string_view prefix, int64_t after);
  void Notify(const Event& e);

  struct Watcher {
    std::string prefix;
    WatchCallback cb;
  };

  std::recursive_mutex mu_;  // guards everything below; callbacks run under it
  sqlite3* db_;              // guarded by mu_
  const SqliteOptions opts_;
  int64_t revision_ = 0;                 // guarded by mu_
  int64_t compacted_ = 0;                // guarded by mu_
  int64_t next_watch_ = 1;               // guarded by mu_
  std::map<int64_t, Watcher> watchers_;  // guarded by mu_
};

}  // namespace weft::control::store
