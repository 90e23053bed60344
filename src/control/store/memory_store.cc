#include "control/store/memory_store.h"

namespace weft::control::store {

void MemoryStore::Notify(const std::vector<Event>& events) {
  for (auto& [id, w] : watchers_) {
    std::vector<Event> mine;
    for (const auto& e : events)
      if (e.kv.key.compare(0, w.prefix.size(), w.prefix) == 0) mine.push_back(e);
    if (!mine.empty()) w.cb(mine);
  }
}

Result<int64_t> MemoryStore::Put(std::string_view key, std::string_view value) {
  return PutIf(key, value, -1);
}

Result<int64_t> MemoryStore::PutIf(std::string_view key, std::string_view value, int64_t expected) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  auto it = kvs_.find(key);
  if (expected >= 0) {
    const int64_t have = it == kvs_.end() ? 0 : it->second.mod_revision;
    if (have != expected)
      return Status(StatusCode::kFailedPrecondition, "key " + std::string(key) + " changed");
  }
  const int64_t rev = ++revision_;
  KeyValue kv{std::string(key), std::string(value),
              it == kvs_.end() ? rev : it->second.create_revision, rev};
  kvs_[kv.key] = kv;
  Notify({Event{Event::Type::kPut, kv}});
  return rev;
}

Result<int64_t> MemoryStore::Delete(std::string_view key) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  auto it = kvs_.find(key);
  if (it == kvs_.end())
    return Status(StatusCode::kNotFound, "key " + std::string(key) + " not found");
  kvs_.erase(it);
  const int64_t rev = ++revision_;
  Event e;
  e.type = Event::Type::kDelete;
  e.kv.key = std::string(key);
  e.kv.mod_revision = rev;
  Notify({e});
  return rev;
}

Result<int64_t> MemoryStore::DeleteIf(std::string_view key, int64_t expected) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  auto it = kvs_.find(key);
  if (it == kvs_.end())
    return Status(StatusCode::kNotFound, "key " + std::string(key) + " not found");
  if (it->second.mod_revision != expected)
    return Status(StatusCode::kFailedPrecondition, "key " + std::string(key) + " changed");
  return Delete(key);
}

Result<KeyValue> MemoryStore::Get(std::string_view key) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  auto it = kvs_.find(key);
  if (it == kvs_.end())
    return Status(StatusCode::kNotFound, "key " + std::string(key) + " not found");
  return it->second;
}

Result<RangeResult> MemoryStore::Range(std::string_view prefix) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  RangeResult r;
  for (auto it = kvs_.lower_bound(prefix);
       it != kvs_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    r.kvs.push_back(it->second);
  r.revision = revision_;
  return r;
}

int64_t MemoryStore::Revision() {
  std::lock_guard<std::recursive_mutex> l(mu_);
  return revision_;
}

Result<int64_t> MemoryStore::Watch(std::string_view prefix, int64_t after_revision,
                                   WatchCallback cb) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  // No history is kept: a watch can only start at the current revision.
  if (after_revision < revision_)
    return Status(StatusCode::kFailedPrecondition, "the memory store keeps no history");
  const int64_t id = next_watch_++;
  watchers_[id] = Watcher{std::string(prefix), std::move(cb)};
  return id;
}

void MemoryStore::Unwatch(int64_t id) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  watchers_.erase(id);
}

int64_t MemoryStore::ReplacePrefix(std::string_view prefix,
                                   const std::map<std::string, std::string>& kvs) {
  std::lock_guard<std::recursive_mutex> l(mu_);
  std::vector<Event> events;
  const int64_t rev = revision_ + 1;
  for (auto it = kvs_.lower_bound(prefix);
       it != kvs_.end() && it->first.compare(0, prefix.size(), prefix) == 0;) {
    if (!kvs.count(it->first)) {
      Event e;
      e.type = Event::Type::kDelete;
      e.kv.key = it->first;
      e.kv.mod_revision = rev;
      events.push_back(std::move(e));
      it = kvs_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [k, v] : kvs) {
    auto it = kvs_.find(k);
    if (it != kvs_.end() && it->second.value == v) continue;
    KeyValue kv{k, v, it == kvs_.end() ? rev : it->second.create_revision, rev};
    kvs_[k] = kv;
    events.push_back(Event{Event::Type::kPut, kv});
  }
  if (events.empty()) return revision_;
  revision_ = rev;
  Notify(events);
  return rev;
}

}  // namespace weft::control::store
