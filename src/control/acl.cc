#include "control/acl.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

#include "base/log.h"
#include "base/strings.h"

namespace weft::control::acl {

using json = nlohmann::json;

namespace {

Result<Access> ParseAccess(const json& v, bool* deny, const std::string& where) {
  *deny = false;
  if (!v.is_string())
    return Status(StatusCode::kInvalidArgument,
                  where + ": expected \"read\", \"write\" or \"deny\"");
  const std::string s = v.get<std::string>();
  if (s == "read") return Access::kRead;
  if (s == "write") return Access::kWrite;
  if (s == "deny") {
    *deny = true;
    return Access::kNone;
  }
  return Status(StatusCode::kInvalidArgument,
                where + ": \"" + s + "\" is not a policy (use read, write or deny)");
}

Status ParseNamed(const json& obj, bool prefix, const std::string& key, std::vector<Rule>* out) {
  if (!obj.is_object())
    return Status(StatusCode::kInvalidArgument,
                  key + ": expected an object of names, e.g. {\"web\": {\"policy\": \"read\"}}");
  for (const auto& [name, v] : obj.items()) {
    const std::string where = key + " \"" + name + "\"";
    if (!v.is_object() || !v.contains("policy") || v.size() != 1)
      return Status(StatusCode::kInvalidArgument,
                    where + ": expected {\"policy\": \"read\"|\"write\"|\"deny\"}");
    Rule r;
    r.name = name;
    r.prefix = prefix;
    auto a = ParseAccess(v["policy"], &r.deny, where);
    if (!a.ok()) return a.status();
    r.access = a.value();
    out->push_back(std::move(r));
  }
  return {};
}

// Folds the rules of `rules` that match `name` into the best match so far:
// an exact rule beats any prefix, a longer prefix a shorter one; at the same
// specificity deny wins, then the widest access.
struct Best {
  bool found = false, exact = false, deny = false;
  size_t len = 0;
  Access access = Access::kNone;
};
void Match(const std::vector<Rule>& rules, std::string_view name, Best* b) {
  for (const Rule& r : rules) {
    if (r.prefix ? name.substr(0, r.name.size()) != r.name : name != r.name) continue;
    const bool exact = !r.prefix;
    if (!b->found || (exact && !b->exact) || (exact == b->exact && r.name.size() > b->len)) {
      *b = Best{true, exact, r.deny, r.name.size(), r.access};
    } else if (exact == b->exact && r.name.size() == b->len) {
      b->deny = b->deny || r.deny;
      b->access = std::max(b->access, r.access);
    }
  }
}

}  // namespace

std::string_view ResourceName(Resource r) {
  switch (r) {
    case Resource::kService:
      return "service";
    case Resource::kNode:
      return "node";
    case Resource::kConfig:
      return "config";
    case Resource::kOperator:
      return "operator";
    case Resource::kAcl:
      return "acl";
  }
  return "?";
}

std::string_view AccessName(Access a) {
  return a == Access::kWrite ? "write" : a == Access::kRead ? "read" : "none";
}

Result<Rules> ParseRules(std::string_view text) {
  if (text.size() > kMaxRulesBytes)
    return Status(StatusCode::kInvalidArgument, "rules: " + std::to_string(text.size()) +
                                                    " bytes, over the limit of " +
                                                    std::to_string(kMaxRulesBytes));
  Rules out;
  size_t bad_at = 0;
  if (text.find('\0') != std::string_view::npos || !IsValidUtf8(text, &bad_at))
    return Status(StatusCode::kInvalidArgument, "rules: not UTF-8 text");
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return out;
  if (JsonNestingDepth(text) > kMaxJsonDepth)
    return Status(StatusCode::kInvalidArgument, "rules: nested too deeply");
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status(StatusCode::kInvalidArgument,
                  "rules: expected a JSON object such as {\"service_prefix\": {\"\": {\"policy\": "
                  "\"read\"}}} (HCL is not accepted)");
  for (const auto& [key, v] : j.items()) {
    Status s;
    if (key == "service" || key == "service_prefix") {
      s = ParseNamed(v, key.size() > 7, key, &out.service);
    } else if (key == "node" || key == "node_prefix") {
      s = ParseNamed(v, key.size() > 4, key, &out.node);
    } else if (key == "config_prefix") {
      s = ParseNamed(v, true, key, &out.config);
    } else if (key == "operator" || key == "acl") {
      bool deny = false;
      auto a = ParseAccess(v, &deny, key);
      if (!a.ok()) return a.status();
      (key == "acl" ? out.acl_access : out.operator_access) = a.value();
      (key == "acl" ? out.acl_deny : out.operator_deny) = deny;
    } else {
      return Status(StatusCode::kInvalidArgument,
                    "rules: unknown key \"" + key +
                        "\" (use service, service_prefix, node, node_prefix, config_prefix, "
                        "operator, acl)");
    }
    if (!s.ok()) return s;
  }
  if (out.service.size() + out.node.size() + out.config.size() > kMaxRulesPerPolicy)
    return Status(StatusCode::kInvalidArgument,
                  "rules: more than " + std::to_string(kMaxRulesPerPolicy) + " rules");
  return out;
}

std::string ManagementRules() {
  return R"({"service_prefix": {"": {"policy": "write"}}, "node_prefix": {"": {"policy": "write"}}, )"
         R"("config_prefix": {"": {"policy": "write"}}, "operator": "write", "acl": "write"})";
}

std::string DefaultAnonymousRules() {
  return R"({"service_prefix": {"": {"policy": "read"}}, "node_prefix": {"": {"policy": "read"}}})";
}

bool Authz::Allowed(Resource r, std::string_view name, Access need) const {
  bool deny = false;
  Access access = Access::kNone;
  if (r == Resource::kOperator || r == Resource::kAcl) {
    for (const auto& rs : rules_) {
      deny = deny || (r == Resource::kAcl ? rs->acl_deny : rs->operator_deny);
      access = std::max(access, r == Resource::kAcl ? rs->acl_access : rs->operator_access);
    }
    return !deny && access >= need;
  }
  Best b;
  for (const auto& rs : rules_) {
    const auto& list = r == Resource::kService ? rs->service
                       : r == Resource::kNode  ? rs->node
                                               : rs->config;
    Match(list, name, &b);
  }
  return b.found && !b.deny && b.access >= need;
}

std::string Authz::Denied(Resource r, std::string_view name, Access need) const {
  if (Allowed(r, name, need)) return "";
  std::string msg = "Permission denied: " + who_ + " lacks " + std::string(ResourceName(r)) + ":" +
                    std::string(AccessName(need));
  if (r != Resource::kOperator && r != Resource::kAcl) msg += " on \"" + std::string(name) + "\"";
  return msg;
}

json Policy::ToJson() const {
  return json{{"ID", id},
              {"Name", name},
              {"Description", description},
              {"Rules", rules_text},
              {"CreateIndex", create_index},
              {"ModifyIndex", modify_index}};
}

json Token::ToJson(const std::map<std::string, Policy, std::less<>>& policies) const {
  json ps = json::array();
  for (const auto& id : policy_ids) {
    auto it = policies.find(id);
    ps.push_back(json{{"ID", id}, {"Name", it == policies.end() ? "" : it->second.name}});
  }
  return json{{"AccessorID", accessor},      {"Description", description},
              {"Policies", std::move(ps)},   {"CreateTime", create_time},
              {"CreateIndex", create_index}, {"ModifyIndex", modify_index}};
}

std::string PolicyDoc(const Policy& p) {
  return json{
      {"ID", p.id}, {"Name", p.name}, {"Description", p.description}, {"Rules", p.rules_text}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string TokenDoc(const Token& t) {
  return json{{"AccessorID", t.accessor},
              {"SecretHash", t.secret_hash},
              {"Description", t.description},
              {"PolicyIDs", t.policy_ids},
              {"CreateTime", t.create_time}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {
// A field of a stored document, or "" / 0 when it is missing or of another
// type (json::value would throw).
std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
int64_t Int(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}
}  // namespace

Result<Policy> ParsePolicyDoc(std::string_view doc) {
  json j = json::parse(doc, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status(StatusCode::kInvalidArgument, "not JSON");
  Policy p;
  p.id = Str(j, "ID");
  p.name = Str(j, "Name");
  p.description = Str(j, "Description");
  p.rules_text = Str(j, "Rules");
  auto r = ParseRules(p.rules_text);
  if (!r.ok()) return r.status();
  p.rules = std::make_shared<const Rules>(std::move(r).value());
  return p;
}

Result<Token> ParseTokenDoc(std::string_view doc) {
  json j = json::parse(doc, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status(StatusCode::kInvalidArgument, "not JSON");
  Token t;
  t.accessor = Str(j, "AccessorID");
  t.secret_hash = Str(j, "SecretHash");
  t.description = Str(j, "Description");
  t.create_time = Int(j, "CreateTime");
  if (auto it = j.find("PolicyIDs"); it != j.end() && it->is_array()) {
    for (const auto& id : *it)
      if (id.is_string()) t.policy_ids.push_back(id.get<std::string>());
  }
  return t;
}

std::string HashSecret(std::string_view secret) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(secret.data(), secret.size(), md, &n, EVP_sha256(), nullptr);
  return HexEncode(md, n);
}

std::string NewUuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof(b)) != 1) {
    LOG_ERROR("acl: the system's random source failed");
    std::abort();  // never hand out a guessable secret
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  const std::string h = HexEncode(b, sizeof(b));
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

void AclState::Apply(std::string_view key, const std::string* value, int64_t rev, int64_t create) {
  index_ = std::max(index_, rev);
  if (key.substr(0, kPolicyPrefix.size()) == kPolicyPrefix) {
    const std::string id(key.substr(kPolicyPrefix.size()));
    if (!value) {
      policies_.erase(id);
      return;
    }
    auto parsed = ParsePolicyDoc(*value);
    if (!parsed.ok()) {
      LOG_WARN("acl: policy {} in the store is unreadable, left out: {}", id,
               parsed.status().message());
      policies_.erase(id);
      return;
    }
    Policy p = std::move(parsed).value();
    p.id = id;
    p.create_index = create;
    p.modify_index = rev;
    policies_.insert_or_assign(id, std::move(p));
  } else if (key.substr(0, kTokenPrefix.size()) == kTokenPrefix) {
    const std::string accessor(key.substr(kTokenPrefix.size()));
    if (auto old = tokens_.find(accessor); old != tokens_.end()) {
      by_hash_.erase(old->second.secret_hash);
      tokens_.erase(old);
    }
    if (!value) return;
    auto parsed = ParseTokenDoc(*value);
    if (!parsed.ok()) {
      LOG_WARN("acl: token {} in the store is unreadable, left out", accessor);
      return;
    }
    Token t = std::move(parsed).value();
    t.accessor = accessor;
    t.create_index = create;
    t.modify_index = rev;
    if (!t.secret_hash.empty()) by_hash_[t.secret_hash] = accessor;
    tokens_.insert_or_assign(accessor, std::move(t));
  }
}

void AclState::Clear() {
  policies_.clear();
  tokens_.clear();
  by_hash_.clear();
}

const Policy* AclState::PolicyById(std::string_view id) const {
  auto it = policies_.find(id);
  return it == policies_.end() ? nullptr : &it->second;
}

const Policy* AclState::PolicyByName(std::string_view name) const {
  for (const auto& [id, p] : policies_)
    if (p.name == name) return &p;
  return nullptr;
}

const Token* AclState::TokenByAccessor(std::string_view accessor) const {
  auto it = tokens_.find(accessor);
  return it == tokens_.end() ? nullptr : &it->second;
}

const Token* AclState::TokenBySecret(std::string_view secret) const {
  auto it = by_hash_.find(HashSecret(secret));
  return it == by_hash_.end() ? nullptr : TokenByAccessor(it->second);
}

Authz AclState::AuthzFor(const Token* t) const {
  std::vector<std::shared_ptr<const Rules>> rules;
  if (!t) {
    if (const Policy* p = PolicyById(kAnonymousPolicyId)) rules.push_back(p->rules);
    return Authz(std::move(rules), "anonymous token");
  }
  for (const auto& id : t->policy_ids)
    if (const Policy* p = PolicyById(id)) rules.push_back(p->rules);
  return Authz(std::move(rules), "token");
}

}  // namespace weft::control::acl
