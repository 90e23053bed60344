// `weft ca roots` and `weft ca rotate`.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "http/server.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;

constexpr const char* kCaUsage =
    "weft ca roots [-o table|json] [--server URL]\n"
    "       weft ca rotate [--propagate DUR] [--overlap DUR] [--ca-cert FILE --ca-key FILE] "
    "[--server URL]";

}  // namespace

int CaMain(const Args& args) {
  if (args.empty() || (args[0] != "roots" && args[0] != "rotate"))
    return BadUsage("ca: expected roots or rotate", kCaUsage);
  const std::string what(args[0]);
  // rotate's own flags first; the rest are the common ones.
  std::string propagate, overlap, cert_file, key_file;
  Args rest;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string v;
    if (what == "rotate" && FlagValue(args, &i, "--propagate", &v)) {
      propagate = v;
    } else if (what == "rotate" && FlagValue(args, &i, "--overlap", &v)) {
      overlap = v;
    } else if (what == "rotate" && FlagValue(args, &i, "--ca-cert", &v)) {
      cert_file = v;
    } else if (what == "rotate" && FlagValue(args, &i, "--ca-key", &v)) {
      key_file = v;
    } else {
      rest.push_back(args[i]);
    }
  }
  CtlFlags f;
  if (int rc = ParseCtlFlags(rest, &f, kCaUsage); rc >= 0) return rc;
  if (!f.positional.empty())
    return BadUsage("ca: unexpected \"" + f.positional[0] + "\"", kCaUsage);
  http::Client c(ServerAddress(f.server), ApiClientOptions());
  if (what == "roots") {
    auto r = c.Do("GET", "/v1/connect/ca/roots");
    if (!r.ok()) return Fail("ca roots: " + r.status().message());
    if (r->status != 200) return Fail(ApiError(r.value()));
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_object()) return Fail("ca roots: the server sent a body that is not a JSON object");
    if (f.output == "json") {
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("trust domain %s\n", j.value("TrustDomain", "").c_str());
    std::printf("%-8s %-12s %-12s %s\n", "ACTIVE", "ACTIVATE_AT", "RETIRE_AT", "ID");
    for (const auto& root : j.value("Roots", json::array())) {
      std::printf("%-8s %-12lld %-12lld %s\n", root.value("Active", false) ? "yes" : "",
                  static_cast<long long>(root.value("ActivateAt", int64_t{0})),
                  static_cast<long long>(root.value("RetireAt", int64_t{0})),
                  root.value("ID", "").c_str());
    }
    return 0;
  }
  std::string query;
  auto add = [&](const char* name, const std::string& v) {
    if (v.empty()) return;
    query += (query.empty() ? "?" : "&") + std::string(name) + "=" + http::PercentEncode(v);
  };
  add("propagate", propagate);
  add("overlap", overlap);
  std::string body;
  if (!cert_file.empty() || !key_file.empty()) {
    if (cert_file.empty() || key_file.empty())
      return BadUsage("ca rotate: --ca-cert and --ca-key go together", kCaUsage);
    std::string err;
    json b = {{"RootCert", ReadWholeFile(cert_file, &err)}};
    if (err.empty()) b["Key"] = ReadWholeFile(key_file, &err);
    if (!err.empty()) return Fail("ca rotate: " + err);
    body = b.dump();
  }
  auto r = c.Do("PUT", "/v1/connect/ca/rotate" + query, body);
  if (!r.ok()) return Fail("ca rotate: " + r.status().message());
  if (r->status != 200) return Fail(ApiError(r.value()));
  json j = json::parse(r->body, nullptr, false);
  if (!j.is_object()) return Fail("ca rotate: the server sent a body that is not a JSON object");
  std::printf("new root %s: trusted now, signs from %lld, the old root retires at %lld\n",
              j.value("NextRootID", "").c_str(),
              static_cast<long long>(j.value("ActivateAt", int64_t{0})),
              static_cast<long long>(j.value("RetireAt", int64_t{0})));
  return 0;
}

}  // namespace weft::cli
