// The agent's cache on the lookup path: finding a service's healthy
// instances in a 10,000-instance catalog, answering a DNS query for it, and
// rendering the Consul-shaped health JSON.
#include <benchmark/benchmark.h>

#include "agent/dns_resolver.h"
#include "mesh/catalog.h"

namespace {

using weft::mesh::CatalogView;

const CatalogView& View() {
  static CatalogView* v = [] {
    auto* view = new CatalogView();
    for (int node = 0; node < 1000; ++node) {
      weft::mesh::Node n;
      for (int k = 0; k < 10; ++k) {
        const int i = node * 10 + k;
        nlohmann::json b = {{"Node", "node-" + std::to_string(node)},
                            {"Address", "10." + std::to_string(node / 250) + "." +
                                            std::to_string(node % 250) + ".1"},
                            {"Service",
                             {{"Service", "svc-" + std::to_string(i % 100)},
                              {"ID", "inst-" + std::to_string(i)},
                              {"Port", 20000 + k}}}};
        (void)weft::mesh::ApplyRegistration(b, weft::mesh::CatalogLimits{}, &n);
      }
      if (node < 3) {
        nlohmann::json b = {
            {"Node", "node-" + std::to_string(node)},
            {"Address", n.address},
            {"Service",
             {{"Service", "small"}, {"ID", "small-" + std::to_string(node)}, {"Port", 8080}}}};
        (void)weft::mesh::ApplyRegistration(b, weft::mesh::CatalogLimits{}, &n);
      }
      std::string doc = weft::mesh::NodeToJson(n);
      view->Apply(n.name, &doc, node + 1, node + 1);
    }
    return view;
  }();
  return *v;
}

void BM_CacheLookupHealthy(benchmark::State& state) {
  const CatalogView& v = View();
  const std::string name = state.range(0) ? "svc-7" : "small";
  for (auto _ : state) {
    size_t healthy = 0;
    for (const auto& r : v.Instances(name))
      healthy += weft::mesh::InstanceHealth(*r.node, *r.instance) != "critical";
    benchmark::DoNotOptimize(healthy);
  }
}
BENCHMARK(BM_CacheLookupHealthy)->Arg(0)->Arg(1)->ArgNames({"100_instances"});

// As the agent answers: from encoded records cached until the service
// changes (state.range(1) == 0: no cache, every answer built from scratch).
void BM_DnsAnswer(benchmark::State& state) {
  const CatalogView& v = View();
  const std::string q = weft::dns::BuildQuery(
      state.range(0) ? "svc-7.service.weft" : "small.service.weft", weft::dns::kA, 4096);
  weft::agent::DnsOptions opts;
  weft::agent::DnsCounters counters;
  weft::agent::DnsCache cache;
  weft::Rng rng(1);
  for (auto _ : state) {
    std::string out =
        weft::agent::Resolve(reinterpret_cast<const uint8_t*>(q.data()), q.size(), false, v, opts,
                             rng, &counters, state.range(1) ? &cache : nullptr);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_DnsAnswer)->ArgsProduct({{0, 1}, {1, 0}})->ArgNames({"100_instances", "cached"});

void BM_HealthJson(benchmark::State& state) {
  const CatalogView& v = View();
  for (auto _ : state) {
    std::string out = v.HealthService("small", true).dump();
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_HealthJson);

}  // namespace

BENCHMARK_MAIN();
