// The cost of an authorization decision per request, with 100 rules (and
// 10 for scale), for the request that matches the last allow rule (the
// worst case: every deny rule and every earlier allow rule is looked at),
// for a request denied by default, and for a TCP connection.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "proxy/authz.h"

namespace {

using weft::proxy::authz::Policies;
using weft::proxy::authz::Request;

std::shared_ptr<const Policies> Build(int rules) {
  std::string yaml =
      "kind: AuthorizationPolicy\nmetadata: {name: reviews}\nspec:\n  service: reviews\n"
      "  default: deny\n  rules:\n";
  // A tenth deny rules, the rest allow rules, each with a source, methods,
  // a path prefix and a header condition.
  for (int i = 0; i < rules; ++i) {
    yaml += std::string("    - action: ") + (i % 10 == 0 ? "deny" : "allow") +
            "\n      from: [spiffe://weft.local/ns/default/sa/caller-" + std::to_string(i) +
            "]\n      to: {methods: [GET, POST], paths: [/api/v1/items/*, /health], headers: "
            "{x-tenant: \"acme*\"}}\n";
  }
  auto m = weft::mesh::ParseManifests(yaml);
  std::vector<Policies::Input> in = {
      {"default/reviews", std::get<weft::mesh::AuthorizationPolicySpec>(m.value()[0].spec)}};
  return Policies::Compile(in, "reviews");
}

void Decide(benchmark::State& state, bool allowed_last, bool tcp) {
  const int rules = static_cast<int>(state.range(0));
  auto p = Build(rules);
  const std::string peer =
      allowed_last ? "spiffe://weft.local/ns/default/sa/caller-" + std::to_string(rules - 1)
                   : "spiffe://weft.local/ns/default/sa/stranger";
  std::vector<weft::http::HeaderField> headers = {
      {"host", "reviews"}, {"user-agent", "bench"}, {"accept", "*/*"}, {"x-tenant", "acme-corp"}};
  Request r;
  r.peer = peer;
  r.method = "GET";
  r.path = "/api/v1/items/42";
  r.headers = &headers;
  r.tcp = tcp;
  for (auto _ : state) {
    auto d = p->Evaluate(r);
    benchmark::DoNotOptimize(d);
  }
}

void BM_AllowedByLastRule(benchmark::State& s) { Decide(s, true, false); }
void BM_DeniedByDefault(benchmark::State& s) { Decide(s, false, false); }
void BM_TcpConnection(benchmark::State& s) { Decide(s, true, true); }

BENCHMARK(BM_AllowedByLastRule)->Arg(10)->Arg(100);
BENCHMARK(BM_DeniedByDefault)->Arg(10)->Arg(100);
BENCHMARK(BM_TcpConnection)->Arg(100);

}  // namespace

BENCHMARK_MAIN();
