#include "control/join_token.h"

#include "base/strings.h"
#include "base/time.h"
#include "control/acl.h"

namespace weft::control::join {

using nlohmann::json;

namespace {

Result<Token> Parse(std::string_view key, std::string_view doc) {
  json j = json::parse(doc, nullptr, false);
  if (!j.is_object()) return Status(StatusCode::kInvalidArgument, "join token record is not JSON");
  Token t;
  t.hash = std::string(key.substr(kTokenPrefix.size()));
  t.id = t.hash.substr(0, 16);
  if (j.contains("Description") && j["Description"].is_string())
    t.description = j["Description"].get<std::string>();
  if (j.contains("CreateTime") && j["CreateTime"].is_number_integer())
    t.create_time = j["CreateTime"].get<int64_t>();
  if (j.contains("ExpirationTime") && j["ExpirationTime"].is_number_integer())
    t.expiration_time = j["ExpirationTime"].get<int64_t>();
  return t;
}

std::string Doc(const Token& t) {
  return json{{"Description", t.description},
              {"CreateTime", t.create_time},
              {"ExpirationTime", t.expiration_time}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

json Token::ToJson() const {
  return {{"ID", id},
          {"Description", description},
          {"CreateTime", create_time},
          {"ExpirationTime", expiration_time}};
}

Result<std::string> Create(store::Store* st, int64_t ttl_s, const std::string& description,
                           std::string secret, Token* out) {
  if (ttl_s < 0 || ttl_s > kMaxTtlS)
    return Status(StatusCode::kInvalidArgument, "TTL: from 1 second to 365 days, or 0 for never");
  if (description.size() > 1024)
    return Status(StatusCode::kInvalidArgument, "Description over 1024 bytes");
  auto all = st->Range(kTokenPrefix);
  if (!all.ok()) return all.status();
  if (all->kvs.size() >= kMaxTokens)
    return Status(StatusCode::kInvalidArgument,
                  "at most " + std::to_string(kMaxTokens) + " join tokens: revoke some first");
  const bool given = !secret.empty();
  if (!given) secret = acl::NewUuid();
  Token t;
  t.hash = acl::HashSecret(secret);
  t.id = t.hash.substr(0, 16);
  t.description = description;
  t.create_time = WallMicros() / 1000000;
  t.expiration_time = ttl_s > 0 ? t.create_time + ttl_s : 0;
  auto w = st->PutIf(std::string(kTokenPrefix) + t.hash, Doc(t), 0);
  if (!w.ok()) {
    if (given && w.status().code() == StatusCode::kFailedPrecondition) {
      auto cur = st->Get(std::string(kTokenPrefix) + t.hash);
      if (cur.ok()) {
        auto had = Parse(cur->key, cur->value);
        if (had.ok() && out) *out = had.value();
        return secret;
      }
    }
    return w.status();
  }
  if (out) *out = t;
  return secret;
}

Status Check(store::Store* st, std::string_view secret, int64_t now) {
  if (secret.empty())
    return Status(StatusCode::kPermissionDenied, "no join token (x-weft-join-token)");
  auto cur = st->Get(std::string(kTokenPrefix) + acl::HashSecret(secret));
  if (!cur.ok()) {
    if (cur.status().code() == StatusCode::kNotFound)
      return Status(StatusCode::kPermissionDenied, "unknown or revoked join token");
    return cur.status();
  }
  auto t = Parse(cur->key, cur->value);
  if (!t.ok()) return Status(StatusCode::kPermissionDenied, "unreadable join token record");
  if (t->expiration_time != 0 && t->expiration_time <= now)
    return Status(StatusCode::kPermissionDenied,
                  "join token " + t->id + " expired (make a new one: weft acl join-token create)");
  return {};
}

Result<std::vector<Token>> List(store::Store* st) {
  auto all = st->Range(kTokenPrefix);
  if (!all.ok()) return all.status();
  std::vector<Token> out;
  for (const auto& kv : all->kvs)
    if (auto t = Parse(kv.key, kv.value); t.ok()) out.push_back(std::move(t).value());
  return out;
}

Status Revoke(store::Store* st, std::string_view id, Token* revoked) {
  if (id.size() < 8 || id.find_first_not_of("0123456789abcdef") != std::string_view::npos)
    return Status(StatusCode::kInvalidArgument,
                  "a join token ID is at least 8 lower-case hex digits (weft acl join-token list)");
  auto all = List(st);
  if (!all.ok()) return all.status();
  const Token* match = nullptr;
  for (const auto& t : all.value()) {
    if (t.hash.compare(0, id.size(), id) != 0) continue;
    if (match)
      return Status(StatusCode::kInvalidArgument,
                    "join token ID " + std::string(id) + " is ambiguous: give more digits");
    match = &t;
  }
  if (!match) return Status(StatusCode::kNotFound, "no join token " + std::string(id));
  auto d = st->Delete(std::string(kTokenPrefix) + match->hash);
  if (!d.ok()) return d.status();
  if (revoked) *revoked = *match;
  return {};
}

Result<std::string> MigrateLegacy(store::Store* st, int64_t ttl_s) {
  auto cur = st->Get(kLegacyKey);
  if (!cur.ok())
    return cur.status().code() == StatusCode::kNotFound ? Result<std::string>(std::string())
                                                        : Result<std::string>(cur.status());
  auto made = Create(st, ttl_s, "moved from the plaintext cluster/join-token", cur->value);
  if (!made.ok()) return made.status();
  if (auto d = st->DeleteIf(kLegacyKey, cur->mod_revision);
      !d.ok() && d.status().code() != StatusCode::kNotFound &&
      d.status().code() != StatusCode::kFailedPrecondition)
    return d.status();
  return made;
}

}  // namespace weft::control::join
