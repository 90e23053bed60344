#include "control/store/sqlite_store.h"

#include <fmt/format.h>

namespace weft::control::store {
namespace {

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  void Text(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void Blob(int i, std::string_view v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void Int(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  int Step() { return sqlite3_step(s_); }
  std::string ColText(int i) {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(s_, i));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, i))) : std::string();
  }
  int64_t ColInt(int i) { return sqlite3_column_int64(s_, i); }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

bool HasPrefix(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const SqliteOptions& opts) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(opts.path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status(StatusCode::kUnavailable,
                  fmt::format("store {}: cannot open: {}", opts.path, why));
  }
  std::unique_ptr<SqliteStore> s(new SqliteStore(db, opts));
  Status st = s->Init();
  if (!st.ok()) return st;
  return s;
}

SqliteStore::~SqliteStore() { sqlite3_close(db_); }

Status SqliteStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Status s(StatusCode::kUnavailable, fmt::format("store {}: {}", opts_.path, err ? err : "?"));
    sqlite3_free(err);
    return s;
  }
  return Status::Ok();
}

Status SqliteStore::Init() {
  sqlite3_busy_timeout(db_, 5000);
  for (const char* sql : {
           "PRAGMA journal_mode=WAL",
           "PRAGMA synchronous=FULL",
           // Deleted content (a retired CA key) is overwritten, not left
           // in free pages.
           "PRAGMA secure_delete=ON",
           "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL,"
           " create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL) WITHOUT ROWID",
           "CREATE TABLE IF NOT EXISTS events (rev INTEGER PRIMARY KEY, type INTEGER NOT NULL,"
           " key BLOB NOT NULL, value BLOB, create_rev INTEGER NOT NULL)",
           "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
       }) {
    Status s = Exec(sql);
    if (!s.ok()) return s;
  }
  Stmt q(db_, "SELECT k, v FROM meta");
  while (q.Step() == SQLITE_ROW) {
    std::string k = q.ColText(0);
    if (k == "revision") revision_ = q.ColInt(1);
    if (k == "compacted") compacted_ = q.ColInt(1);
  }
  return Status::Ok();
}

int64_t SqliteStore::Revision() {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return revision_;
}

Result<bool> SqliteStore::ScrubHistory(std::string_view key) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  {
    Stmt d(db_,
           "DELETE FROM events WHERE key = ? AND rev < (SELECT COALESCE(MAX(mod_rev), 1 << 62) "
           "FROM kv WHERE key = ?)");
    d.Blob(1, key);
    d.Blob(2, key);
    if (d.Step() != SQLITE_DONE) return Status(StatusCode::kUnavailable, sqlite3_errmsg(db_));
  }
  // secure_delete zeroed the freed pages; the WAL still holds the old ones
  // until a checkpoint copies the database and truncates it.
  if (Status s = Exec("PRAGMA wal_checkpoint(TRUNCATE)"); !s.ok()) return s;
  return true;
}

int64_t SqliteStore::CompactedRevision() {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return compacted_;
}

Result<int64_t> SqliteStore::Put(std::string_view key, std::string_view value) {
  return Write(key, &value, -1);
}

Result<int64_t> SqliteStore::PutIf(std::string_view key, std::string_view value, int64_t expected) {
  return Write(key, &value, expected);
}

Result<int64_t> SqliteStore::Delete(std::string_view key) { return Write(key, nullptr, -1); }

Result<int64_t> SqliteStore::DeleteIf(std::string_view key, int64_t expected) {
  if (expected <= 0)
    return Status(StatusCode::kInvalidArgument, "store: DeleteIf needs a revision");
  return Write(key, nullptr, expected);
}

Result<int64_t> SqliteStore::Write(std::string_view key, const std::string_view* value,
                                   int64_t expected) {
  if (key.empty()) return Status(StatusCode::kInvalidArgument, "store: empty key");
  std::lock_guard<std::recursive_mutex> l(mu_);
  Status s = Exec("BEGIN IMMEDIATE");
  if (!s.ok()) return s;
  auto fail = [&](Status st) -> Result<int64_t> {
    (void)Exec("ROLLBACK");
    return st;
  };
  int64_t create_rev = 0, mod_rev = 0;
  {
    Stmt q(db_, "SELECT create_rev, mod_rev FROM kv WHERE key = ?");
    q.Blob(1, key);
    if (q.Step() == SQLITE_ROW) {
      create_rev = q.ColInt(0);
      mod_rev = q.ColInt(1);
    }
  }
  if (value == nullptr && mod_rev == 0) {
    return fail(Status(StatusCode::kNotFound, fmt::format("store: no key {}", key)));
  }
  if (expected >= 0 && expected != mod_rev) {
    return fail(Status(StatusCode::kFailedPrecondition,
                       fmt::format("store: {} is at revision {}, not {}", key, mod_rev, expected)));
  }
  const int64_t rev = revision_ + 1;
  if (value != nullptr) {
    if (create_rev == 0) create_rev = rev;
    Stmt w(db_,
           "INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)"
           " ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev");
    w.Blob(1, key);
    w.Blob(2, *value);
    w.Int(3, create_rev);
    w.Int(4, rev);
    if (w.Step() != SQLITE_DONE) return fail(Status(StatusCode::kUnavailable, sqlite3_errmsg(db_)));
  } else {
    Stmt d(db_, "DELETE FROM kv WHERE key = ?");
    d.Blob(1, key);
    if (d.Step() != SQLITE_DONE) return fail(Status(StatusCode::kUnavailable, sqlite3_errmsg(db_)));
  }
  {
    Stmt e(db_, "INSERT INTO events (rev, type, key, value, create_rev) VALUES (?, ?, ?, ?, ?)");
    e.Int(1, rev);
    e.Int(2, value ? 0 : 1);
    e.Blob(3, key);
    e.Blob(4, value ? *value : std::string_view());
    e.Int(5, create_rev);
    if (e.Step() != SQLITE_DONE) return fail(Status(StatusCode::kUnavailable, sqlite3_errmsg(db_)));
  }
  int64_t compacted = compacted_;
  if (rev - compacted > opts_.history_limit) {
    compacted = rev - opts_.history_limit;
    Stmt c(db_, "DELETE FROM events WHERE rev <= ?");
    c.Int(1, compacted);
    if (c.Step() != SQLITE_DONE) return fail(Status(StatusCode::kUnavailable, sqlite3_errmsg(db_)));
  }
  {
    Stmt m(db_,
           "INSERT INTO meta (k, v) VALUES ('revision', ?), ('compacted', ?)"
           " ON CONFLICT(k) DO UPDATE SET v = excluded.v");
    m.Int(1, rev);
    m.Int(2, compacted);
    if (m.Step() != SQLITE_DONE) return fail(Status(StatusCode::kUnavailable, sqlite3_errmsg(db_)));
  }
  s = Exec("COMMIT");
  if (!s.ok()) return fail(s);
  revision_ = rev;
  compacted_ = compacted;
  Event ev;
  ev.type = value ? Event::Type::kPut : Event::Type::kDelete;
  ev.kv = {std::string(key), value ? std::string(*value) : std::string(), create_rev, rev};
  Notify(ev);
  return rev;
}

void SqliteStore::Notify(const Event& e) {
  // Copy first: a callback may Unwatch itself.
  std::vector<WatchCallback> due;
  for (const auto& [id, w] : watchers_) {
    if (HasPrefix(e.kv.key, w.prefix)) due.push_back(w.cb);
  }
  const std::vector<Event> one{e};
  for (const auto& cb : due) cb(one);
}

Result<KeyValue> SqliteStore::Get(std::string_view key) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  Stmt q(db_, "SELECT key, value, create_rev, mod_rev FROM kv WHERE key = ?");
  q.Blob(1, key);
  if (q.Step() != SQLITE_ROW)
    return Status(StatusCode::kNotFound, fmt::format("store: no key {}", key));
  return KeyValue{q.ColText(0), q.ColText(1), q.ColInt(2), q.ColInt(3)};
}

Result<RangeResult> SqliteStore::Range(std::string_view prefix) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  RangeResult out;
  out.revision = revision_;
  std::string end = PrefixEnd(prefix);
  Stmt q(db_, end.empty()
                  ? "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? ORDER BY key"
                  : "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? AND key < ?"
                    " ORDER BY key");
  q.Blob(1, prefix);
  if (!end.empty()) q.Blob(2, end);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.kvs.push_back({q.ColText(0), q.ColText(1), q.ColInt(2), q.ColInt(3)});
  }
  if (rc != SQLITE_DONE) return Status(StatusCode::kUnavailable, sqlite3_errmsg(db_));
  return out;
}

Result<std::vector<Event>> SqliteStore::EventsAfter(std::string_view prefix, int64_t after) {
  std::vector<Event> out;
  std::string end = PrefixEnd(prefix);
  Stmt q(db_, end.empty() ? "SELECT rev, type, key, value, create_rev FROM events WHERE rev > ?"
                            " AND key >= ? ORDER BY rev"
                          : "SELECT rev, type, key, value, create_rev FROM events WHERE rev > ?"
                            " AND key >= ? AND key < ? ORDER BY rev");
  q.Int(1, after);
  q.Blob(2, prefix);
  if (!end.empty()) q.Blob(3, end);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    Event e;
    e.type = q.ColInt(1) == 0 ? Event::Type::kPut : Event::Type::kDelete;
    e.kv = {q.ColText(2), q.ColText(3), q.ColInt(4), q.ColInt(0)};
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return Status(StatusCode::kUnavailable, sqlite3_errmsg(db_));
  return out;
}

Result<int64_t> SqliteStore::Watch(std::string_view prefix, int64_t after_revision,
                                   WatchCallback cb) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  if (after_revision < compacted_) {
    return Status(
        StatusCode::kFailedPrecondition,
        fmt::format(
            "store: revision {} was compacted (history starts after {}): re-read with Range",
            after_revision, compacted_));
  }
  auto history = EventsAfter(prefix, after_revision);
  if (!history.ok()) return history.status();
  if (!history.value().empty()) cb(history.value());
  const int64_t id = next_watch_++;
  watchers_[id] = {std::string(prefix), std::move(cb)};
  return id;
}

void SqliteStore::Unwatch(int64_t id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  watchers_.erase(id);
}

}  // namespace weft::control::store
