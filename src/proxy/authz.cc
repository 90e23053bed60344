#include "proxy/authz.h"

#include "base/strings.h"

namespace weft::proxy::authz {

bool StringMatch::Match(std::string_view s) const {
  switch (kind) {
    case kAny:
      return true;
    case kExact:
      return s == value;
    case kPrefix:
      return s.size() >= value.size() && s.compare(0, value.size(), value) == 0;
  }
  return false;
}

StringMatch StringMatch::Parse(const std::string& pattern) {
  StringMatch m;
  if (pattern == "*") return m;
  if (!pattern.empty() && pattern.back() == '*') {
    m.kind = kPrefix;
    m.value = pattern.substr(0, pattern.size() - 1);
  } else {
    m.kind = kExact;
    m.value = pattern;
  }
  return m;
}

namespace {

bool MatchFrom(const Rule& rule, std::string_view peer) {
  if (rule.from.empty()) return true;
  if (peer.empty()) return false;  // patterns name mesh identities
  for (const auto& m : rule.from)
    if (m.Match(peer)) return true;
  return false;
}

bool MatchHttp(const Rule& rule, const Request& r) {
  if (!rule.methods.empty()) {
    bool any = false;
    for (const auto& m : rule.methods) any |= m == r.method;
    if (!any) return false;
  }
  if (!rule.paths.empty()) {
    bool any = false;
    for (const auto& p : rule.paths) any |= p.Match(r.path);
    if (!any) return false;
  }
  for (const auto& h : rule.headers) {
    bool found = false;
    if (r.headers) {
      for (const auto& rh : *r.headers) {
        if (IEquals(rh.name, h.name) && h.value.Match(rh.value)) {
          found = true;
          break;
        }
      }
    }
    if (!found) return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<const Policies> Policies::Compile(const std::vector<Input>& in,
                                                  const std::string& service) {
  auto p = std::make_shared<Policies>();
  int own_default = -1, mesh_default = -1;
  bool own_deny = false, mesh_deny = false;
  for (const auto& i : in) {
    if (i.spec.service != service && i.spec.service != "*") continue;
    const size_t idx = p->names_.size();
    p->names_.push_back(i.name);
    const bool mesh_wide = i.spec.service == "*";
    if (!i.spec.default_action.empty()) {
      const bool deny = i.spec.default_action == "deny";
      int& who = mesh_wide ? mesh_default : own_default;
      bool& what = mesh_wide ? mesh_deny : own_deny;
      // Between two policies at the same level, deny wins.
      if (who < 0 || (deny && !what)) {
        who = static_cast<int>(idx);
        what = deny;
      }
    }
    for (const auto& r : i.spec.rules) {
      Rule rule;
      rule.deny = r.action == "deny";
      rule.policy = idx;
      for (const auto& f : r.from) rule.from.push_back(StringMatch::Parse(f));
      rule.methods = r.methods;
      for (const auto& path : r.paths) rule.paths.push_back(StringMatch::Parse(path));
      for (const auto& h : r.headers) rule.headers.push_back({h.name, StringMatch::Parse(h.value)});
      (rule.deny ? p->deny_ : p->allow_).push_back(std::move(rule));
    }
  }
  if (own_default >= 0) {
    p->default_policy_ = own_default;
    p->default_deny_ = own_deny;
  } else if (mesh_default >= 0) {
    p->default_policy_ = mesh_default;
    p->default_deny_ = mesh_deny;
  }
  return p;
}

Decision Policies::Evaluate(const Request& r) const {
  for (const Rule& rule : deny_) {
    if (!MatchFrom(rule, r.peer)) continue;
    if (!r.tcp && !MatchHttp(rule, r)) continue;
    return {false, static_cast<int>(rule.policy), false};
  }
  for (const Rule& rule : allow_) {
    if (!MatchFrom(rule, r.peer)) continue;
    if (r.tcp ? rule.http_only() : !MatchHttp(rule, r)) continue;
    return {true, static_cast<int>(rule.policy), false};
  }
  return {!default_deny_, default_policy_, true};
}

}  // namespace weft::proxy::authz
