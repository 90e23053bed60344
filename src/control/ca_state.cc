#include "control/ca_state.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "identity/ca.h"

namespace weft::control {

using nlohmann::json;

namespace {

constexpr std::string_view kEncPrefix = "aes256gcm:";

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

void KeyOf(std::string_view kek, unsigned char out[32]) {
  unsigned int n = 0;
  EVP_Digest(kek.data(), kek.size(), out, &n, EVP_sha256(), nullptr);
}

bool FromHex(std::string_view hex, std::string* out) {
  if (hex.size() % 2) return false;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nib(hex[i]), lo = nib(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

std::string Seal(std::string_view plain, std::string_view kek, std::string_view aad) {
  unsigned char key[32], nonce[12], tag[16];
  KeyOf(kek, key);
  if (RAND_bytes(nonce, sizeof(nonce)) != 1) std::abort();  // never reuse a nonce
  Ctx c(EVP_CIPHER_CTX_new());
  std::string ct(plain.size(), '\0');
  int n = 0, m = 0;
  if (!c || EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, key, nonce) != 1 ||
      EVP_EncryptUpdate(c.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(c.get(), reinterpret_cast<unsigned char*>(ct.data()), &n,
                        reinterpret_cast<const unsigned char*>(plain.data()),
                        static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(c.get(), reinterpret_cast<unsigned char*>(ct.data()) + n, &m) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, sizeof(tag), tag) != 1)
    std::abort();  // the cipher is built in: failing here is a broken library
  return std::string(kEncPrefix) + HexEncode(nonce, sizeof(nonce)) +
         HexEncode(reinterpret_cast<const unsigned char*>(ct.data()), ct.size()) +
         HexEncode(tag, sizeof(tag));
}

Result<std::string> Open(std::string_view sealed, std::string_view kek, std::string_view aad) {
  std::string raw;
  if (sealed.substr(0, kEncPrefix.size()) != kEncPrefix ||
      !FromHex(sealed.substr(kEncPrefix.size()), &raw) || raw.size() < 12 + 16)
    return Status(StatusCode::kInvalidArgument, "CA state: an encrypted key is malformed");
  if (kek.empty())
    return Status(StatusCode::kInvalidArgument,
                  "CA state: the keys are encrypted and no key-encryption key was given "
                  "(--ca-kek-file)");
  unsigned char key[32];
  KeyOf(kek, key);
  const auto* nonce = reinterpret_cast<const unsigned char*>(raw.data());
  const auto* ct = nonce + 12;
  const size_t ct_len = raw.size() - 12 - 16;
  std::string tag = raw.substr(raw.size() - 16);
  std::string plain(ct_len, '\0');
  Ctx c(EVP_CIPHER_CTX_new());
  int n = 0, m = 0;
  if (!c || EVP_DecryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, key, nonce) != 1 ||
      EVP_DecryptUpdate(c.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(c.get(), reinterpret_cast<unsigned char*>(plain.data()), &n, ct,
                        static_cast<int>(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_TAG, 16, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(c.get(), reinterpret_cast<unsigned char*>(plain.data()) + n, &m) != 1)
    return Status(StatusCode::kInvalidArgument,
                  "CA state: a root's key does not decrypt: wrong key-encryption key "
                  "(--ca-kek-file) or a tampered document");
  return plain;
}

}  // namespace

Result<CaState> CaState::Parse(const std::string& text, std::string_view kek) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("TrustDomain") || !j["TrustDomain"].is_string())
    return Status(StatusCode::kInvalidArgument, "CA state: expected an object with TrustDomain");
  CaState s;
  s.trust_domain = j["TrustDomain"].get<std::string>();
  auto add = [&](const json& r) -> Status {
    const bool enc = r.is_object() && r.contains("KeyEnc") && r["KeyEnc"].is_string();
    const bool clear = r.is_object() && r.contains("Key") && r["Key"].is_string();
    if (!r.is_object() || !r.contains("RootCert") || !r["RootCert"].is_string() || enc == clear)
      return Status(StatusCode::kInvalidArgument,
                    "CA state: a root needs RootCert and one of KeyEnc or Key");
    auto when = [&](const char* k) -> int64_t {
      return r.contains(k) && r[k].is_number_integer() ? r[k].get<int64_t>() : 0;
    };
    CaRoot root;
    root.cert_pem = r["RootCert"].get<std::string>();
    root.activate_at = when("ActivateAt");
    root.retire_at = when("RetireAt");
    auto id = identity::Fingerprint(root.cert_pem);
    if (!id.ok()) return id.status();
    root.id = id.value();
    if (enc) {
      auto key = Open(r["KeyEnc"].get<std::string>(), kek, root.id);
      if (!key.ok()) return key.status();
      root.key_pem = std::move(key).value();
    } else {
      root.key_pem = r["Key"].get<std::string>();
      s.plaintext_keys = true;
    }
    s.roots.push_back(std::move(root));
    return {};
  };
  if (j.contains("Roots")) {
    if (!j["Roots"].is_array()) return Status(StatusCode::kInvalidArgument, "CA state: Roots");
    for (const auto& r : j["Roots"])
      if (Status st = add(r); !st.ok()) return st;
  } else if (Status st = add(j); !st.ok()) {
    return st;
  }
  if (s.roots.empty()) return Status(StatusCode::kInvalidArgument, "CA state: no root");
  return s;
}

std::string CaState::ToJson(std::string_view kek) const {
  json out = json::array();
  for (const auto& r : roots) {
    json one = {{"RootCert", r.cert_pem}, {"ActivateAt", r.activate_at}, {"RetireAt", r.retire_at}};
    if (kek.empty()) {
      one["Key"] = r.key_pem;
    } else {
      std::string id = r.id;
      if (id.empty()) {
        auto fp = identity::Fingerprint(r.cert_pem);
        if (fp.ok()) id = fp.value();
      }
      one["KeyEnc"] = Seal(r.key_pem, kek, id);
    }
    out.push_back(std::move(one));
  }
  return json{{"TrustDomain", trust_domain}, {"Roots", out}}.dump(-1, ' ', false,
                                                                  json::error_handler_t::replace);
}

bool CaState::DropRetired(int64_t now) {
  const size_t before = roots.size();
  std::erase_if(roots, [&](const CaRoot& r) { return r.retire_at != 0 && r.retire_at <= now; });
  return roots.size() != before;
}

std::vector<const CaRoot*> CaState::Trusted(int64_t now) const {
  std::vector<const CaRoot*> out;
  for (const auto& r : roots)
    if (r.retire_at == 0 || r.retire_at > now) out.push_back(&r);
  return out;
}

const CaRoot* CaState::Signing(int64_t now) const {
  const CaRoot* best = nullptr;
  for (const CaRoot* r : Trusted(now)) {
    if (r->activate_at > now) continue;
    if (!best || r->activate_at >= best->activate_at) best = r;
  }
  return best;
}

void CaState::Rotate(CaRoot next, int64_t now, int64_t propagate_s, int64_t overlap_s) {
  std::vector<CaRoot> kept;
  for (auto& r : roots) {
    if (r.retire_at != 0 && r.retire_at <= now) continue;  // already gone
    const int64_t retire = now + propagate_s + overlap_s;
    if (r.retire_at == 0 || r.retire_at > retire) r.retire_at = retire;
    kept.push_back(std::move(r));
  }
  next.activate_at = now + propagate_s;
  next.retire_at = 0;
  kept.push_back(std::move(next));
  roots = std::move(kept);
}

}  // namespace weft::control
