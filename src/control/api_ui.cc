// The web dashboard: its files at /ui/ and the data it reads beyond the
// Consul-shaped API, /v1/ui/overview and /v1/ui/tap (ui_scraper.h).
#include <chrono>
#include <map>
#include <set>

#include "base/log.h"
#include "control/api.h"
#include "control/api_internal.h"
#include "control/ui_assets.h"
#include "control/ui_scraper.h"

namespace weft::control {

using http::Request;
using http::Response;
using internal::StartsWith;
using json = nlohmann::json;

namespace {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The dashboard runs only what it was built with: no inline script, no
// other origin, no framing (clickjacking).
constexpr const char* kUiPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

}  // namespace

Response Api::UiFile(const Request& req) {
  std::string_view name = req.path;
  if (name == "/" || name == "/ui") {
    Response r = Response::Text(302, "the dashboard is at /ui/\n");
    r.headers.emplace_back("Location", "/ui/");
    return r;
  }
  name.remove_prefix(4);  // "/ui/"
  if (name.empty()) name = "index.html";
  for (const UiAsset& a : UiAssets()) {
    if (a.name != name) continue;
    Response r;
    r.content_type = std::string(a.content_type);
    r.headers.emplace_back("ETag", std::string(a.etag));
    // Checked again each time: a new binary's files show at once.
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Content-Security-Policy", kUiPolicy);
    r.headers.emplace_back("Referrer-Policy", "no-referrer");
    if (req.Header("if-none-match") == a.etag) {
      r.status = 304;
      return r;
    }
    r.body = std::string(a.body);
    return r;
  }
  return Error(404, "not found: " + std::string(req.path) + " (the dashboard is at /ui/)");
}

std::vector<UiMember> Api::UiMembers() const {
  std::vector<UiMember> out;
  for (const json& m : MembersJson()) out.push_back(UiMemberOf(m));
  return out;
}

std::string Api::UiOverviewBody(const json& reading, const std::set<std::string>& denied,
                                bool history, bool operate) const {
  auto ok = [&](const std::string& n) { return denied.count(n) == 0; };
  json services = json::array(), edges = json::array(), sidecars = json::array();
  std::map<std::string, json> rows;
  for (const json& s : reading["services"]) rows.emplace(s.value("name", ""), s);
  for (const std::string& name : catalog_.ServiceNames()) {
    size_t instances = 0;
    for (const auto& ref : catalog_.Instances(name)) instances += ref.instance->kind.empty();
    if (instances == 0) continue;  // sidecars only
    json& row = rows[name];
    if (row.is_null())
      row = {{"name", name}, {"rps", 0},         {"success", 1},
             {"p50_ms", -1}, {"p99_ms", -1},     {"mtls", 0},
             {"proxies", 0}, {"unreachable", 0}, {"history", json::array()}};
    row["instances"] = instances;
    row["passing"] = catalog_.HealthService(name, true).size();
  }
  for (auto& [name, row] : rows) {
    if (!ok(name)) continue;
    if (!row.contains("instances")) {
      row["instances"] = 0;
      row["passing"] = 0;
    }
    if (!history) row.erase("history");
    services.push_back(std::move(row));
  }
  for (const json& e : reading["edges"]) {
    if (!ok(e.value("source", "")) || !ok(e.value("destination", ""))) continue;
    edges.push_back(e);
    if (!history) edges.back().erase("history");
  }
  for (const json& s : reading["sidecars"]) {
    if (!ok(s.value("service", ""))) continue;
    sidecars.push_back(s);
    // Where sidecars and agents listen is the operators' (as the member
    // list is).
    if (!operate) {
      sidecars.back().erase("admin");
      sidecars.back().erase("via");
    }
  }
  std::string error = reading.value("error", "");
  if (!error.empty() && !operate)
    error = "some sidecars could not be read (a token with operator:read sees why)";
  json out = {{"interval_s", reading["interval_s"]},
              {"updated_ms", reading["updated_ms"]},
              {"error", error},
              {"services", std::move(services)},
              {"edges", std::move(edges)},
              {"sidecars", std::move(sidecars)}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

asio::awaitable<Response> Api::UiRequest(Request& req, std::string_view rest) {
  if (req.method != "GET" && req.method != "HEAD") co_return Error(405, "use GET");
  const std::string token(TokenOf(req));
  const std::vector<UiMember> members = UiMembers();
  auto may_read = [&](const std::string& service) {
    return Deny(req, acl::Resource::kService, service, acl::Access::kRead).empty();
  };
  if (rest == "overview") {
    bool history = true;
    if (const std::string* h = req.Query("history")) {
      if (*h != "0" && *h != "1") co_return Error(400, "overview: history=0 or history=1");
      history = *h == "1";
    }
    auto read = [&] { return ui_->Overview(members, WallMs()); };
    const std::shared_ptr<const json> reading = co_await OffLoop(read, &ui_pool_);
    if (!reading) co_return Error(503, "overview: no reading of the sidecars yet");
    const bool operate = Deny(req, acl::Resource::kOperator, "", acl::Access::kRead).empty();
    // What the token may not read is left out, the catalog's services
    // without traffic are added. Dashboards poll: the rendered answer is
    // kept per (what is left out, series or not) until the reading or the
    // catalog changes.
    std::set<std::string> names;
    for (const json& s : (*reading)["services"]) names.insert(s.value("name", ""));
    for (const json& e : (*reading)["edges"]) {
      names.insert(e.value("source", ""));
      names.insert(e.value("destination", ""));
    }
    for (const json& s : (*reading)["sidecars"]) names.insert(s.value("service", ""));
    const std::vector<std::string> catalog_names = catalog_.ServiceNames();
    names.insert(catalog_names.begin(), catalog_names.end());
    std::set<std::string> denied;
    for (const std::string& n : names)
      if (!may_read(n)) denied.insert(n);
    std::string key = std::string(history ? "h" : "-") + (operate ? "o" : "-");
    for (const std::string& n : denied) key.append("\n").append(n);
    const int64_t updated = (*reading).value("updated_ms", int64_t{0});
    const int64_t catalog_index = catalog_.services_index();
    auto hit = ui_bodies_.find(key);
    if (hit == ui_bodies_.end() || hit->second.updated_ms != updated ||
        hit->second.catalog_index != catalog_index) {
      if (ui_bodies_.size() >= kUiBodies) ui_bodies_.clear();
      hit = ui_bodies_.insert_or_assign(key, UiBody{updated, catalog_index, ""}).first;
      hit->second.body = UiOverviewBody(*reading, denied, history, operate);
    }
    Response r = ReplyBody(hit->second.body, applied_);
    if (!denied.empty()) r.headers.emplace_back("X-Consul-Results-Filtered-By-ACLs", "true");
    co_return r;
  }
  if (rest == "tap") {
    auto arg = [&](std::string_view k) {
      const std::string* v = req.Query(k);
      return v ? *v : std::string();
    };
    const std::string service = arg("service");
    if (service.empty()) co_return Error(400, "tap: ?service=NAME is required");
    if (service.size() > 256 || arg("route").size() > 256 || arg("method").size() > 32 ||
        arg("path").size() > 1024)
      co_return Error(400, "tap: service, route, method or path too long");
    uint64_t since = 0;
    if (const std::string s = arg("since"); !s.empty()) {
      char* end = nullptr;
      since = std::strtoull(s.c_str(), &end, 10);
      if (*end) co_return Error(400, "tap: since: the `next` of the previous answer");
    }
    const std::string route = arg("route"), method = arg("method"), path = arg("path");
    const std::string session = arg("session");
    if (session.size() > 64 ||
        session.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
            std::string::npos)
      co_return Error(400, "tap: session: up to 64 letters, digits, '-' or '_'");
    auto poll = [&] {
      return ui_->Tap(token, session, members, service, route, method, path, since, WallMs());
    };
    json ans = co_await OffLoop(poll, &ui_pool_);
    HideUnreadable(&ans["events"], may_read);
    co_return Reply(ans, applied_);
  }
  co_return Error(404, "not found: /v1/ui/" + std::string(rest) + " (overview, tap)");
}

}  // namespace weft::control
