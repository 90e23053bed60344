// `weft acl policy ...` and `weft acl token ...`: the server's ACL policies
// and tokens (/v1/acl).
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "http/server.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;

constexpr const char* kAclUsage =
    "weft acl policy create --name NAME [--description TEXT] --rules JSON|@FILE\n"
    "       weft acl policy update NAME [--description TEXT] [--rules JSON|@FILE]\n"
    "       weft acl policy list | read NAME | delete NAME\n"
    "       weft acl token create [--description TEXT] --policy NAME [--policy NAME ...]\n"
    "       weft acl token update ACCESSOR [--description TEXT] [--policy NAME ...]\n"
    "       weft acl token list | read ACCESSOR | delete ACCESSOR\n"
    "       weft acl join-token create [--ttl DUR (default 24h; 0: never)] [--description TEXT]\n"
    "       weft acl join-token list | revoke ID\n"
    "  common: [--server URL] [--token T | --token-file FILE] [-o json]  (or WEFT_TOKEN)";

void PrintPolicy(const json& p) {
  std::printf("ID:          %s\nName:        %s\nDescription: %s\nRules:       %s\n",
              p.value("ID", "").c_str(), p.value("Name", "").c_str(),
              p.value("Description", "").c_str(), p.value("Rules", "").c_str());
}

std::string When(int64_t unix_s) {
  if (unix_s == 0) return "never";
  char buf[64];
  const time_t t = static_cast<time_t>(unix_s);
  struct tm tm {};
  gmtime_r(&t, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void PrintJoinToken(const json& t) {
  std::printf("ID:          %s\n", t.value("ID", "").c_str());
  if (t.contains("SecretID")) std::printf("SecretID:    %s\n", t.value("SecretID", "").c_str());
  std::printf("Description: %s\nCreated:     %s\nExpires:     %s\n",
              t.value("Description", "").c_str(), When(t.value("CreateTime", int64_t{0})).c_str(),
              When(t.value("ExpirationTime", int64_t{0})).c_str());
}

void PrintToken(const json& t) {
  std::string policies;
  for (const auto& p : t.value("Policies", json::array()))
    policies += (policies.empty() ? "" : ", ") + p.value("Name", p.value("ID", ""));
  std::printf("AccessorID:  %s\n", t.value("AccessorID", "").c_str());
  if (t.contains("SecretID")) std::printf("SecretID:    %s\n", t.value("SecretID", "").c_str());
  std::printf("Description: %s\nPolicies:    %s\n", t.value("Description", "").c_str(),
              policies.c_str());
}

}  // namespace

int AclMain(const Args& args) {
  if (args.size() < 2 || (args[0] != "policy" && args[0] != "token" && args[0] != "join-token"))
    return BadUsage("acl: expected policy, token or join-token, then a verb", kAclUsage);
  const std::string what(args[0]), verb(args[1]);
  std::string name, description, rules, ttl;
  bool have_description = false;
  std::vector<std::string> policies;
  Args rest;
  for (size_t i = 2; i < args.size(); ++i) {
    std::string v;
    if (FlagValue(args, &i, "--name", &v)) {
      name = v;
    } else if (FlagValue(args, &i, "--description", &v)) {
      description = v;
      have_description = true;
    } else if (what == "policy" && FlagValue(args, &i, "--rules", &v)) {
      if (!v.empty() && v[0] == '@') {
        std::string err;
        v = ReadWholeFile(v.substr(1), &err);
        if (!err.empty()) return BadUsage("--rules: " + err, kAclUsage);
      }
      rules = v;
    } else if (what == "join-token" && FlagValue(args, &i, "--ttl", &v)) {
      ttl = v;
    } else if (what == "token" && FlagValue(args, &i, "--policy", &v)) {
      policies.push_back(v);
    } else {
      rest.push_back(args[i]);
    }
  }
  CtlFlags f;
  if (int rc = ParseCtlFlags(rest, &f, kAclUsage); rc >= 0) return rc;
  const bool want_arg = verb == "read" || verb == "delete" || verb == "update" || verb == "revoke";
  if (want_arg != (f.positional.size() == 1) || f.positional.size() > 1)
    return BadUsage("acl " + what + " " + verb + ": " +
                        (want_arg ? "expected one NAME or ACCESSOR" : "unexpected arguments"),
                    kAclUsage);
  const std::string arg = want_arg ? f.positional[0] : "";
  http::Client c(ServerAddress(f.server), ApiClientOptions());
  auto call = [&](const std::string& method, const std::string& path, const std::string& body,
                  json* out) -> int {
    auto r = c.Do(method, path, body, {{"content-type", "application/json"}});
    if (!r.ok()) return Fail("acl " + what + " " + verb + ": " + r.status().message());
    if (r->status != 200) return Fail(ApiError(r.value()));
    *out = json::parse(r->body, nullptr, false);
    if (out->is_discarded()) return Fail("acl: the server sent a body that is not JSON");
    return 0;
  };
  auto show = [&](const json& j, void (*print)(const json&)) {
    if (f.output == "json") {
      std::printf("%s\n", j.dump(2).c_str());
    } else if (j.is_array()) {
      for (size_t i = 0; i < j.size(); ++i) {
        if (i) std::printf("\n");
        print(j[i]);
      }
    } else {
      print(j);
    }
    return 0;
  };
  json out;
  if (what == "policy") {
    // A policy by name: its ID first.
    auto id_of = [&](std::string* id) -> int {
      json p;
      if (int rc = call("GET", "/v1/acl/policy/name/" + http::PercentEncode(arg), "", &p))
        return rc;
      *id = p.value("ID", "");
      return 0;
    };
    if (verb == "create") {
      if (name.empty() || rules.empty())
        return BadUsage("acl policy create: --name and --rules are required", kAclUsage);
      json b = {{"Name", name}, {"Description", description}, {"Rules", rules}};
      if (int rc = call("PUT", "/v1/acl/policy", b.dump(), &out)) return rc;
      return show(out, PrintPolicy);
    }
    if (verb == "list") {
      if (int rc = call("GET", "/v1/acl/policies", "", &out)) return rc;
      return show(out, PrintPolicy);
    }
    std::string id;
    if (int rc = id_of(&id)) return rc;
    if (verb == "read") {
      if (int rc = call("GET", "/v1/acl/policy/" + id, "", &out)) return rc;
      return show(out, PrintPolicy);
    }
    if (verb == "update") {
      json b = json::object();
      if (!name.empty()) b["Name"] = name;
      if (have_description) b["Description"] = description;
      if (!rules.empty()) b["Rules"] = rules;
      if (int rc = call("PUT", "/v1/acl/policy/" + id, b.dump(), &out)) return rc;
      return show(out, PrintPolicy);
    }
    if (verb == "delete") {
      if (int rc = call("DELETE", "/v1/acl/policy/" + id, "", &out)) return rc;
      std::printf("policy %s deleted\n", arg.c_str());
      return 0;
    }
    return BadUsage("acl policy: unknown verb \"" + verb + "\"", kAclUsage);
  }
  if (what == "join-token") {
    if (verb == "create") {
      json b = {{"Description", description}};
      if (!ttl.empty()) b["TTL"] = ttl;
      if (int rc = call("PUT", "/v1/acl/join-token", b.dump(), &out)) return rc;
      show(out, PrintJoinToken);
      if (f.output != "json")
        std::fprintf(stderr,
                     "weft: the SecretID is shown only now; the server keeps only its hash. An "
                     "agent joins with it once (--join-token-file FILE)\n");
      return 0;
    }
    if (verb == "list") {
      if (int rc = call("GET", "/v1/acl/join-tokens", "", &out)) return rc;
      return show(out, PrintJoinToken);
    }
    if (verb == "revoke") {
      if (int rc = call("DELETE", "/v1/acl/join-token/" + http::PercentEncode(arg), "", &out))
        return rc;
      std::printf("join token %s revoked (agents that joined with it keep their certificates)\n",
                  arg.c_str());
      return 0;
    }
    return BadUsage("acl join-token: unknown verb \"" + verb + "\"", kAclUsage);
  }
  if (verb == "create") {
    if (policies.empty())
      return BadUsage("acl token create: at least one --policy NAME", kAclUsage);
    json links = json::array();
    for (const auto& p : policies) links.push_back({{"Name", p}});
    json b = {{"Description", description}, {"Policies", links}};
    if (int rc = call("PUT", "/v1/acl/token", b.dump(), &out)) return rc;
    show(out, PrintToken);
    if (f.output != "json")
      std::fprintf(stderr,
                   "weft: the SecretID is shown only now; the server keeps only its hash\n");
    return 0;
  }
  if (verb == "update") {
    // What is given replaces what the token had: --policy names the whole list.
    json b = json::object();
    if (have_description) b["Description"] = description;
    if (!policies.empty()) {
      json links = json::array();
      for (const auto& p : policies) links.push_back({{"Name", p}});
      b["Policies"] = links;
    }
    if (b.empty())
      return BadUsage("acl token update: give --description or --policy (the whole list)",
                      kAclUsage);
    if (int rc = call("PUT", "/v1/acl/token/" + http::PercentEncode(arg), b.dump(), &out))
      return rc;
    return show(out, PrintToken);
  }
  if (verb == "list") {
    if (int rc = call("GET", "/v1/acl/tokens", "", &out)) return rc;
    return show(out, PrintToken);
  }
  if (verb == "read") {
    if (int rc = call("GET", "/v1/acl/token/" + http::PercentEncode(arg), "", &out)) return rc;
    return show(out, PrintToken);
  }
  if (verb == "delete") {
    if (int rc = call("DELETE", "/v1/acl/token/" + http::PercentEncode(arg), "", &out)) return rc;
    std::printf("token %s deleted\n", arg.c_str());
    return 0;
  }
  return BadUsage("acl token: unknown verb \"" + verb + "\"", kAclUsage);
}

}  // namespace weft::cli
