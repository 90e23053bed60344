// Config entries (Service, TrafficPolicy, Route, AuthorizationPolicy
// manifests) as every server replica holds them in memory: stored at
// config/KIND/NAMESPACE/NAME as canonical JSON, with the index of the last
// change per entry and per kind for blocking reads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "mesh/manifest.h"

namespace weft::control {

inline constexpr std::string_view kConfigPrefix = "config/";

std::string ConfigKey(std::string_view kind, std::string_view ns, std::string_view name);

struct ConfigEntry {
  mesh::Manifest manifest;
  std::string json;  // canonical
  int64_t create_index = 0;
  int64_t modify_index = 0;
};

// Not thread-safe: one thread applies and reads (the Api's io thread).
class ConfigView {
 public:
  // `key` is the store key; json == nullptr for a delete.
  void Apply(const std::string& key, const std::string* json, int64_t revision,
             int64_t create_revision);

  // The entry, or null. Pointers from Find and List are valid until that
  // entry is next applied, or Clear().
  const ConfigEntry* Find(std::string_view kind, std::string_view ns, std::string_view name) const;
  // Entries of one kind ("" for all) in key order.
  std::vector<const ConfigEntry*> List(std::string_view kind, std::string_view ns) const;

  // Index of the last change to that entry (deletes included), to the kind,
  // and to any entry.
  int64_t entry_index(std::string_view kind, std::string_view ns, std::string_view name) const;
  int64_t kind_index(std::string_view kind) const;
  int64_t index() const { return index_; }
  // Drops everything (a store reset at `revision`).
  void Clear(int64_t revision) {
    entries_.clear();
    entry_index_.clear();
    kind_index_.clear();
    index_ = reset_index_ = revision;
  }

 private:
  std::map<std::string, ConfigEntry, std::less<>> entries_;  // by key
  std::map<std::string, int64_t, std::less<>> entry_index_;
  std::map<std::string, int64_t, std::less<>> kind_index_;
  int64_t index_ = 0;
  int64_t reset_index_ = 0;  // the index of kinds not seen since the last reset
};

}  // namespace weft::control
