// The control plane's durable store, behind one interface with the shape etcd
// gives: a flat ordered key space, one global revision that every write
// advances, reads at the current revision, and watches that replay the
// events after a given revision and then follow new ones. The server never
// knows which implementation (embedded SQLite or etcd) it runs on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace weft::control::store {

// The first key after every key that starts with `prefix` (the end of a
// prefix range); empty when there is none (the prefix is empty or all 0xff).
inline std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return end;
}

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;  // revision of the write that created the key
  int64_t mod_revision = 0;     // revision of the last write to the key
};

struct Event {
  // kReset starts a batch that replaces everything under the watched prefix:
  // the watch fell behind a compaction, so the store re-read the current
  // state; the puts that follow in the same batch are all there is, at
  // revision kv.mod_revision.
  enum class Type : uint8_t { kPut, kDelete, kReset };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: the key and the deleting revision as mod_revision
};

struct RangeResult {
  std::vector<KeyValue> kvs;  // ordered by key
  int64_t revision = 0;       // the store's revision when read
};

// Called with the events of one committed write, in revision order, after the
// write is durable; it must not call back into the store's write methods. On
// which thread, and what Unwatch guarantees, depends on the implementation
// (see each header). The events are valid during the call only.
using WatchCallback = std::function<void(const std::vector<Event>&)>;

// Every implementation is thread-safe. Views passed in are read during the
// call only.
class Store {
 public:
  virtual ~Store() = default;

  // Writes return the revision they created once the write is durable: an
  // acknowledged write survives the process being killed right after.
  virtual Result<int64_t> Put(std::string_view key, std::string_view value) = 0;
  // Writes only if the key's mod_revision is `expected` (0: the key must not
  // exist). Otherwise FailedPrecondition, and nothing changes.
  virtual Result<int64_t> PutIf(std::string_view key, std::string_view value, int64_t expected) = 0;
  // NotFound when the key does not exist.
  virtual Result<int64_t> Delete(std::string_view key) = 0;
  // Deletes only if the key's mod_revision is `expected`: NotFound when the
  // key does not exist, FailedPrecondition when it changed (nothing done).
  virtual Result<int64_t> DeleteIf(std::string_view key, int64_t expected) = 0;

  virtual Result<KeyValue> Get(std::string_view key) = 0;
  // Every key starting with `prefix` ("" for all).
  virtual Result<RangeResult> Range(std::string_view prefix) = 0;
  virtual int64_t Revision() = 0;

  // Delivers, for keys under `prefix`, every event after `after_revision`
  // that the store still holds (FailedPrecondition when history older than
  // that was compacted: re-read with Range), then each new write as it
  // commits. Returns an id for Unwatch.
  virtual Result<int64_t> Watch(std::string_view prefix, int64_t after_revision,
                                WatchCallback cb) = 0;
  // Once it returns, that watch's callback is not called again (from another
  // thread; see each implementation for a call from inside a callback).
  virtual void Unwatch(int64_t id) = 0;

  // Removes the earlier values of `key` from the store's history, keeping
  // its current value: for secrets that were replaced (a retired CA key).
  // Returns false when this store cannot (etcd keeps its history until its
  // own compaction); the embedded store deletes them and overwrites the
  // freed pages.
  virtual Result<bool> ScrubHistory(std::string_view /*key*/) { return false; }

  // True when several server replicas may share this store (etcd).
  virtual bool shared() const { return false; }
  // Writes a key that lives as long as this process's session with the
  // store: on etcd it is bound to a lease kept alive in the background, so
  // it disappears a few seconds after the process dies. A single-process
  // store keeps it as an ordinary key.
  virtual Result<int64_t> PutEphemeral(std::string_view key, std::string_view value) {
    return Put(key, value);
  }
  // Leadership for a singleton duty (e.g. signing-key rotation): true when
  // this process holds `key`, taking it when free. On etcd the hold ends
  // with the session's lease; a single-process store always grants it.
  virtual Result<bool> Campaign(std::string_view key, std::string_view id) {
    auto r = Put(key, id);
    if (!r.ok()) return r.status();
    return true;
  }
};

}  // namespace weft::control::store
