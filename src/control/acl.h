// Access control for the REST API, in Consul's shape: policies hold rules
// (read / write / deny on service, node and config-entry names by exact name
// or prefix, and on the operator and acl areas), tokens name policies, and a
// request's token decides what it may do. The store holds policies under
// acl/policy/ID and tokens under acl/token/ACCESSOR with a SHA-256 of the
// secret only; AclState is the API's in-memory view of both, fed by the
// store's watch like the catalog.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"

namespace weft::control::acl {

inline constexpr std::string_view kPrefix = "acl/";
inline constexpr std::string_view kPolicyPrefix = "acl/policy/";
inline constexpr std::string_view kTokenPrefix = "acl/token/";
// Written once, when the bootstrap token is made (value: its accessor).
inline constexpr std::string_view kBootstrapKey = "acl/bootstrap";
inline constexpr std::string_view kAnonymousAccessor = "00000000-0000-0000-0000-000000000002";
inline constexpr std::string_view kManagementPolicy = "global-management";
inline constexpr std::string_view kAnonymousPolicy = "anonymous";
// The built-in policies' IDs, fixed so every replica agrees on them.
inline constexpr std::string_view kManagementPolicyId = "00000000-0000-0000-0000-000000000001";
inline constexpr std::string_view kAnonymousPolicyId = "00000000-0000-0000-0000-000000000002";
// Bounds on what one policy or the whole ACL state may hold.
inline constexpr size_t kMaxRulesBytes = 64 * 1024;
inline constexpr size_t kMaxRulesPerPolicy = 1000;
inline constexpr size_t kMaxPoliciesPerToken = 64;
inline constexpr size_t kMaxTokens = 100000;
inline constexpr size_t kMaxPolicies = 10000;

enum class Access { kNone = 0, kRead = 1, kWrite = 2 };
enum class Resource { kService, kNode, kConfig, kOperator, kAcl };

std::string_view ResourceName(Resource r);
std::string_view AccessName(Access a);

// One policy's rules, parsed from their JSON text:
//   {"service": {"web": {"policy": "write"}}, "service_prefix": {"": {"policy": "read"}},
//    "node": {...}, "node_prefix": {...}, "config_prefix": {"Route/": {"policy": "write"}},
//    "operator": "read", "acl": "write"}
// Config entries are named KIND/NAMESPACE/NAME. Anything else is refused.
struct Rule {
  std::string name;
  bool prefix = false;
  bool deny = false;
  Access access = Access::kNone;
};
struct Rules {
  std::vector<Rule> service, node, config;
  // kNone with deny=false: no rule.
  Access operator_access = Access::kNone, acl_access = Access::kNone;
  bool operator_deny = false, acl_deny = false;
};
Result<Rules> ParseRules(std::string_view text);
// The rules of the built-in policies.
std::string ManagementRules();
std::string DefaultAnonymousRules();

struct Policy {
  std::string id, name, description, rules_text;
  std::shared_ptr<const Rules> rules;  // shared with the Authz of requests in flight
  int64_t create_index = 0, modify_index = 0;
  nlohmann::json ToJson() const;
};

struct Token {
  std::string accessor, secret_hash, description;
  std::vector<std::string> policy_ids;
  int64_t create_time = 0;  // unix seconds
  int64_t create_index = 0, modify_index = 0;
  // The stored document; `secret` is added to it by the caller that has one.
  nlohmann::json ToJson(const std::map<std::string, Policy, std::less<>>& policies) const;
};

// A caller's rights: the union of its token's policies' rules. Most specific
// name wins (an exact rule over any prefix, a longer prefix over a shorter
// one); at the same specificity deny wins, then the widest access.
class Authz {
 public:
  Authz() = default;
  Authz(std::vector<std::shared_ptr<const Rules>> rules, std::string who)
      : rules_(std::move(rules)), who_(std::move(who)) {}
  bool Allowed(Resource r, std::string_view name, Access need) const;
  // "" when allowed, else "Permission denied: ..." naming what is missing.
  std::string Denied(Resource r, std::string_view name, Access need) const;
  bool anonymous() const { return who_ == "anonymous token"; }

 private:
  std::vector<std::shared_ptr<const Rules>> rules_;
  std::string who_ = "token";
};

// Store documents for policies and tokens.
std::string PolicyDoc(const Policy& p);
std::string TokenDoc(const Token& t);
Result<Policy> ParsePolicyDoc(std::string_view doc);
Result<Token> ParseTokenDoc(std::string_view doc);

std::string HashSecret(std::string_view secret);  // lower-case hex SHA-256
std::string NewUuid();                            // random, version 4

// The API's view of the ACL keys; io thread only.
class AclState {
 public:
  // A put (value set) or delete of a key under acl/.
  void Apply(std::string_view key, const std::string* value, int64_t rev, int64_t create);
  void Clear();

  const Policy* PolicyById(std::string_view id) const;
  const Policy* PolicyByName(std::string_view name) const;
  const Token* TokenByAccessor(std::string_view accessor) const;
  const Token* TokenBySecret(std::string_view secret) const;
  const std::map<std::string, Policy, std::less<>>& policies() const { return policies_; }
  const std::map<std::string, Token, std::less<>>& tokens() const { return tokens_; }
  int64_t index() const { return index_; }

  // The rights of a token (nullptr: the anonymous token).
  Authz AuthzFor(const Token* t) const;

 private:
  std::map<std::string, Policy, std::less<>> policies_;   // by id
  std::map<std::string, Token, std::less<>> tokens_;      // by accessor
  std::unordered_map<std::string, std::string> by_hash_;  // secret hash -> accessor
  int64_t index_ = 1;
};

}  // namespace weft::control::acl
