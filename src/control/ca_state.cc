#include "control/ca_state.h"

#include <nlohmann/json.hpp>

#include "identity/ca.h"

namespace weft::control {

using nlohmann::json;

Result<CaState> CaState::Parse(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("TrustDomain") || !j["TrustDomain"].is_string())
    return Status(StatusCode::kInvalidArgument, "CA state: expected an object with TrustDomain");
  CaState s;
  s.trust_domain = j["TrustDomain"].get<std::string>();
  auto add = [&](const json& r) -> Status {
    if (!r.is_object() || !r.contains("RootCert") || !r["RootCert"].is_string() ||
        !r.contains("Key") || !r["Key"].is_string())
      return Status(StatusCode::kInvalidArgument, "CA state: a root needs RootCert and Key");
    CaRoot root;
    root.cert_pem = r["RootCert"].get<std::string>();
    root.key_pem = r["Key"].get<std::string>();
    root.activate_at = r.value("ActivateAt", int64_t{0});
    root.retire_at = r.value("RetireAt", int64_t{0});
    auto id = identity::Fingerprint(root.cert_pem);
    if (!id.ok()) return id.status();
    root.id = id.value();
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

std::string CaState::ToJson() const {
  json out = json::array();
  for (const auto& r : roots) {
    out.push_back({{"RootCert", r.cert_pem},
                   {"Key", r.key_pem},
                   {"ActivateAt", r.activate_at},
                   {"RetireAt", r.retire_at}});
  }
  return json{{"TrustDomain", trust_domain}, {"Roots", out}}.dump();
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
