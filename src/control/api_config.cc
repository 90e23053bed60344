// /v1/config: config entries (manifests) read (blocking), created or
// replaced (with an optional compare-and-swap index) and deleted.
#include <utility>

#include "base/strings.h"
#include "control/api.h"
#include "control/api_internal.h"

namespace weft::control {

using json = nlohmann::json;
using http::Request;
using http::Response;
using internal::HttpStatusFor;

namespace {

// A manifest that applies to every namespace's sidecars (a Telemetry for
// service "*").
bool MeshWide(const mesh::Manifest& m) {
  const auto* t = std::get_if<mesh::TelemetrySpec>(&m.spec);
  return t != nullptr && t->service == "*";
}
bool MeshWide(const ConfigEntry* e) { return e != nullptr && MeshWide(e->manifest); }

}  // namespace

asio::awaitable<Response> Api::ConfigRequest(Request& req, std::string_view rest) {
  // /v1/config, /v1/config/KIND, /v1/config/KIND/NAME; ?ns= picks the namespace.
  std::string kind, name;
  size_t slash = rest.find('/');
  kind = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) name = std::string(rest.substr(slash + 1));
  if (!kind.empty()) {
    bool known = false;
    for (const auto& k : mesh::Kinds()) known |= k == kind;
    if (!known) {
      std::string kinds;
      for (const auto& k : mesh::Kinds()) kinds += (kinds.empty() ? "" : ", ") + k;
      co_return Error(404, "unknown config kind \"" + kind + "\": use one of " + kinds);
    }
  }
  if (!name.empty() && !mesh::ValidName(name))
    co_return Error(400, "invalid name \"" + name + "\"");
  std::string ns = "default";
  bool all_ns = false;
  if (const std::string* q = req.Query("ns")) {
    if (*q == "*") {
      all_ns = true;
    } else if (!q->empty()) {
      if (!mesh::ValidName(*q)) co_return Error(400, "invalid namespace \"" + *q + "\"");
      ns = *q;
    }
  }
  if (req.method == "PUT" || req.method == "POST") {
    if (kind.empty() || name.empty()) co_return Error(405, "use PUT /v1/config/KIND/NAME");
    if (std::string why = role_->RefuseWrite(req); !why.empty()) co_return Error(405, why);
    co_return co_await ConfigPut(req, kind, name, ns);
  }
  if (req.method == "DELETE") {
    if (kind.empty() || name.empty()) co_return Error(405, "use DELETE /v1/config/KIND/NAME");
    if (std::string why = role_->RefuseWrite(req); !why.empty()) co_return Error(405, why);
    co_return co_await ConfigDelete(req, kind, name, ns);
  }
  if (req.method != "GET" && req.method != "HEAD") co_return Error(405, "use GET, PUT or DELETE");
  if (name.empty()) {
    if (req.HasQuery("index")) {  // a blocking query
      const std::function<int64_t()> ix = [this, &kind] { return config_.kind_index(kind); };
      co_await Block(req, ix);
    }
    json out = json::array();
    for (const auto* e : config_.List(kind, all_ns ? "" : ns)) {
      json j = json::parse(e->json);
      j["CreateIndex"] = e->create_index;
      j["ModifyIndex"] = e->modify_index;
      out.push_back(std::move(j));
    }
    co_return FilteredReply(std::move(out), config_.kind_index(kind), [&](const json& e) {
      const json& md = e.contains("metadata") ? e["metadata"] : json::object();
      return MayRead(req, acl::Resource::kConfig,
                     ConfigRuleName(e.value("kind", ""), md.value("namespace", "default"),
                                    md.value("name", "")));
    });
  }
  if (req.HasQuery("index")) {  // a blocking query
    const std::function<int64_t()> ix = [&] { return config_.entry_index(kind, ns, name); };
    co_await Block(req, ix);
  }
  const ConfigEntry* e = config_.Find(kind, ns, name);
  if (!e) {
    Response r = Error(404, kind + " " + ns + "/" + name + " not found");
    r.headers.emplace_back("X-Consul-Index", std::to_string(std::max<int64_t>(
                                                 1, config_.entry_index(kind, ns, name))));
    co_return r;
  }
  json j = json::parse(e->json);
  j["CreateIndex"] = e->create_index;
  j["ModifyIndex"] = e->modify_index;
  co_return Reply(j, e->modify_index);
}

asio::awaitable<Response> Api::ConfigPut(Request& req, const std::string& kind,
                                         const std::string& name, const std::string& ns) {
  auto parsed = mesh::ParseManifests(req.body);
  if (!parsed.ok()) co_return Error(400, parsed.status().message());
  if (parsed->size() != 1)
    co_return Error(
        400, "expected exactly one manifest in the body, got " + std::to_string(parsed->size()));
  mesh::Manifest m = std::move(parsed.value()[0]);
  if (m.kind != kind)
    co_return Error(400, "kind: the body is a " + m.kind + " but the path says " + kind);
  if (m.name != name)
    co_return Error(
        400, "metadata.name: the body names \"" + m.name + "\" but the path says \"" + name + "\"");
  if (req.Query("ns") == nullptr) {
    // The manifest's own namespace decides when the URL does not.
  } else if (m.ns != ns) {
    co_return Error(
        400, "metadata.namespace: the body says \"" + m.ns + "\" but ?ns= says \"" + ns + "\"");
  }
  if (std::string why =
          Deny(req, acl::Resource::kConfig, ConfigRuleName(kind, m.ns, name), acl::Access::kWrite);
      !why.empty())
    co_return Denied(req, why);
  // What reaches every namespace (or stops doing so) is the operator's to
  // write, not one namespace's.
  if (MeshWide(m) || MeshWide(config_.Find(kind, m.ns, name))) {
    if (std::string why = Deny(req, acl::Resource::kOperator, "", acl::Access::kWrite);
        !why.empty())
      co_return Denied(req, why + " (a mesh-wide " + kind + ")");
  }
  const std::string key = ConfigKey(kind, m.ns, name);
  const std::string value = mesh::ToJson(m);
  int64_t expected = -1;
  if (const std::string* cas = req.Query("cas")) {
    auto v = ParseDecimal(*cas);
    if (!v) co_return Error(400, "cas \"" + *cas + "\": expected an index");
    expected = static_cast<int64_t>(*v);
  }
  store::Store* st = store_.get();
  struct Outcome {
    Result<int64_t> rev = int64_t{0};
    std::string result;
  };
  const auto work = [st, key, value, expected]() -> Outcome {
    auto cur = st->Get(key);
    if (!cur.ok() && cur.status().code() != StatusCode::kNotFound) return {cur.status(), ""};
    const bool exists = cur.ok();
    if (expected >= 0 && (exists ? cur->mod_revision : 0) != expected)
      return {Status(StatusCode::kFailedPrecondition,
                     "cas: the entry's index is " + std::to_string(exists ? cur->mod_revision : 0) +
                         ", not " + std::to_string(expected)),
              ""};
    if (exists && cur->value == value) return {cur->mod_revision, "unchanged"};
    auto w = st->PutIf(key, value, exists ? cur->mod_revision : 0);
    return {w, exists ? "configured" : "created"};
  };
  Outcome out = co_await OffLoop(work);
  if (!out.rev.ok()) {
    if (out.rev.status().code() == StatusCode::kFailedPrecondition)
      co_return Error(409, out.rev.status().message());
    co_return Error(HttpStatusFor(out.rev.status()), out.rev.status().message());
  }
  if (out.result != "unchanged") {
    ++counters_.writes;
    co_await WaitApplied(out.rev.value());
  }
  co_return Reply({{"Result", out.result},
                   {"Kind", kind},
                   {"Name", name},
                   {"Namespace", m.ns},
                   {"Index", out.rev.value()}},
                  out.rev.value());
}

asio::awaitable<Response> Api::ConfigDelete(Request& req, const std::string& kind,
                                            const std::string& name, const std::string& ns) {
  if (std::string why =
          Deny(req, acl::Resource::kConfig, ConfigRuleName(kind, ns, name), acl::Access::kWrite);
      !why.empty())
    co_return Denied(req, why);
  if (MeshWide(config_.Find(kind, ns, name))) {
    if (std::string why = Deny(req, acl::Resource::kOperator, "", acl::Access::kWrite);
        !why.empty())
      co_return Denied(req, why + " (a mesh-wide " + kind + ")");
  }
  const std::string key = ConfigKey(kind, ns, name);
  store::Store* st = store_.get();
  const auto work = [st, key]() { return st->Delete(key); };
  Result<int64_t> r = co_await OffLoop(work);
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kNotFound)
      co_return Error(404, kind + " " + ns + "/" + name + " not found");
    co_return Error(HttpStatusFor(r.status()), r.status().message());
  }
  ++counters_.writes;
  co_await WaitApplied(r.value());
  co_return Reply({{"Result", "deleted"},
                   {"Kind", kind},
                   {"Name", name},
                   {"Namespace", ns},
                   {"Index", r.value()}},
                  r.value());
}

}  // namespace weft::control
