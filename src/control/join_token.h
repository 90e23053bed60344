// Join tokens. An agent joins a cluster once with a join token and gets a
// node certificate; from then on the certificate, not the token,
// authenticates it. Join tokens expire (24 h by default), can be listed and
// revoked, and the store keeps a SHA-256 of each secret only, under
// acl/join-token/HASH.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "control/store/store.h"

namespace weft::control::join {

inline constexpr std::string_view kTokenPrefix = "acl/join-token/";
// Where the plaintext token of earlier versions lived; moved to a hashed
// record at start.
inline constexpr std::string_view kLegacyKey = "cluster/join-token";
inline constexpr int64_t kDefaultTtlS = 24 * 3600;
inline constexpr int64_t kMaxTtlS = 365LL * 24 * 3600;
inline constexpr size_t kMaxTokens = 1000;
// Node certificates last a week and are renewed after two thirds of it: an
// agent may be down for days and come back without a new join token.
inline constexpr int64_t kNodeCertTtlS = 7 * 24 * 3600;

struct Token {
  std::string id;  // the first 16 hex digits of the secret's hash: what list shows
  std::string hash;
  std::string description;
  int64_t create_time = 0;
  int64_t expiration_time = 0;  // unix seconds; 0: never
  nlohmann::json ToJson() const;
};

// A new join token valid `ttl_s` (0: never) from now; returns the secret,
// shown once. `secret` given: that one (an operator's, at least 16
// characters), kept as it was if already recorded.
Result<std::string> Create(store::Store* st, int64_t ttl_s, const std::string& description,
                           std::string secret = "", Token* out = nullptr);
// PermissionDenied unless `secret` is a recorded join token, not expired.
Status Check(store::Store* st, std::string_view secret, int64_t now);
Result<std::vector<Token>> List(store::Store* st);
// By id (or a unique prefix of one, at least 8 digits). NotFound otherwise.
Status Revoke(store::Store* st, std::string_view id, Token* revoked = nullptr);
// Moves a plaintext token of earlier versions into a hashed record (valid
// `ttl_s` from now) and removes the plaintext. Returns the secret when it
// moved one ("" when there was none).
Result<std::string> MigrateLegacy(store::Store* st, int64_t ttl_s);

}  // namespace weft::control::join
