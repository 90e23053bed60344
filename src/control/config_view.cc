#include "control/config_view.h"

#include "base/log.h"

namespace weft::control {

std::string ConfigKey(std::string_view kind, std::string_view ns, std::string_view name) {
  std::string k(kConfigPrefix);
  k += kind;
  k += '/';
  k += ns;
  k += '/';
  k += name;
  return k;
}

void ConfigView::Apply(const std::string& key, const std::string* json, int64_t revision,
                       int64_t create_revision) {
  // config/KIND/NS/NAME
  std::string_view rest = std::string_view(key).substr(kConfigPrefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return;
  std::string kind(rest.substr(0, slash));
  index_ = revision;
  kind_index_[kind] = revision;
  if (!json) {
    // A missing entry reports its kind's index, so per-key state stays
    // bounded by the live entries.
    entry_index_.erase(key);
    entries_.erase(key);
    return;
  }
  auto m = mesh::FromJson(*json);
  if (!m.ok()) {
    LOG_ERROR("config entry {} in the store is unreadable, ignored: {}", key, m.status().message());
    entries_.erase(key);
    return;
  }
  entry_index_[key] = revision;
  ConfigEntry& e = entries_[key];
  e.manifest = std::move(m).value();
  e.json = *json;
  e.create_index = create_revision;
  e.modify_index = revision;
}

const ConfigEntry* ConfigView::Find(std::string_view kind, std::string_view ns,
                                    std::string_view name) const {
  auto it = entries_.find(ConfigKey(kind, ns, name));
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<const ConfigEntry*> ConfigView::List(std::string_view kind, std::string_view ns) const {
  std::vector<const ConfigEntry*> out;
  std::string prefix(kConfigPrefix);
  if (!kind.empty()) {
    prefix += kind;
    prefix += '/';
    if (!ns.empty()) {
      prefix += ns;
      prefix += '/';
    }
  }
  for (auto it = entries_.lower_bound(prefix);
       it != entries_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    if (kind.empty() && !ns.empty() && it->second.manifest.ns != ns) continue;
    out.push_back(&it->second);
  }
  return out;
}

int64_t ConfigView::entry_index(std::string_view kind, std::string_view ns,
                                std::string_view name) const {
  auto it = entry_index_.find(ConfigKey(kind, ns, name));
  return it == entry_index_.end() ? kind_index(kind) : it->second;
}

int64_t ConfigView::kind_index(std::string_view kind) const {
  if (kind.empty()) return index_;
  auto it = kind_index_.find(kind);
  return it == kind_index_.end() ? reset_index_ : it->second;
}

}  // namespace weft::control
