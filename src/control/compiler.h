// The compiler: catalog + config entries -> one immutable snapshot per client
// identity (a proxy fronting a service, or a catalog client such as an
// agent). Snapshots are maps of shared, immutable resources; each resource
// has a content version, so an unchanged resource keeps its version across
// recompiles, replicas and restarts.
//
// Recompiling is incremental: a catalog change names the services it
// touched, and only snapshots that depend on one of them are rebuilt;
// config entry changes (rare) rebuild every proxy snapshot. A rebuilt
// snapshot whose version did not move is dropped, so only subscribers whose
// configuration really changed are pushed to.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "control/config_view.h"
#include "mesh/catalog.h"
#include "weft/v1/config.pb.h"

namespace weft::control {

using ResourcePtr = std::shared_ptr<const weft::v1::Resource>;

struct Snapshot {
  std::map<std::string, ResourcePtr> resources;  // "type/name" -> resource
  std::string version;                           // hash of every (key, version)
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

// Whom a snapshot is for.
struct Identity {
  std::string role;     // proxy | agent | client
  std::string service;  // proxy: the service it fronts
  std::string ns = "default";
  std::string proxy_id;  // proxy: its registration id (optional)
  std::string Key() const;
};

// Content version of a resource: a hex hash of its serialized body.
std::string ResourceVersion(const weft::v1::Resource& r);
std::string ResourceKey(const std::string& type, const std::string& name);

// Not thread-safe: one thread (the stream server's io thread), the one that
// updates the views it reads. Snapshots and resources it hands out are
// immutable and may be shared with any thread.
class Compiler {
 public:
  // Keeps references to both views: they must outlive the Compiler.
  Compiler(const mesh::CatalogView& catalog, const ConfigView& config)
      : catalog_(catalog), config_(config) {}

  // Marks what a batch of changes touched: catalog node documents and the
  // service names whose instances changed, and whether config changed.
  void Invalidate(const std::set<std::string>& services, const std::set<std::string>& nodes,
                  bool config_changed);

  // Identity material that is not compiled from the catalog: the trust
  // bundle (in every snapshot) and, on an agent, the secret of each local
  // proxy's service (key and certificate made on this node). Null removes.
  void SetBundle(ResourcePtr bundle);
  void SetSecret(const std::string& ns, const std::string& service, ResourcePtr secret);

  // The current snapshot for `id`, compiled on first use and cached while
  // anyone asks for it; Forget drops identities no one subscribes to.
  SnapshotPtr Get(const Identity& id);
  void Forget(const std::string& identity_key);

  // Identity keys whose snapshot changed since the last call (and their new
  // snapshots), after Invalidate.
  std::vector<std::pair<std::string, SnapshotPtr>> TakeChanged();

  size_t cached() const { return entries_.size(); }
  // Instances left out of endpoints for an address no proxy could use.
  uint64_t skipped_endpoints() const { return skipped_endpoints_; }
  // Instances of mtls: strict Services left out for having no sidecar.
  uint64_t sidecarless_skipped() const { return sidecarless_skipped_; }
  // The instances left out so now, as of each service's last compile:
  // service -> (instance id, node) pairs. Bounded by the catalog.
  struct Skipped {
    std::string ns, service, instance, node;
  };
  std::vector<Skipped> SidecarlessNow() const;

 private:
  struct Entry {
    Identity id;
    SnapshotPtr snap;
    std::set<std::string> deps;  // service names
    std::string reg_service;     // the sidecar registration's own service name
    bool transparent = false;    // its sidecar intercepts: depends on every service
    bool dirty = true;
    bool full = true;  // rebuild everything; else only endpoints of `dirty_services`
    std::set<std::string> dirty_services;
  };
  void Build(Entry* e);
  SnapshotPtr BuildProxy(const Identity& id, std::set<std::string>* deps, std::string* reg_service,
                         bool* transparent);
  SnapshotPtr PatchEndpoints(const Entry& e);
  SnapshotPtr BuildCatalog();
  ResourcePtr EndpointsFor(const std::string& cluster, const std::string& service,
                           const std::string& ns);

  const mesh::CatalogView& catalog_;
  const ConfigView& config_;
  std::map<std::string, Entry> entries_;
  uint64_t skipped_endpoints_ = 0;
  uint64_t sidecarless_skipped_ = 0;
  // "ns/service" -> its instances left out for having no sidecar (entries
  // leave when none are).
  std::map<std::string, std::vector<Skipped>> sidecarless_;
  // Endpoints resources by cluster name, with the service index they were
  // built at: many proxies calling one service share one resource, built
  // once per change of that service.
  struct CachedEndpoints {
    int64_t index = -1;
    std::string service;
    bool strict = false;  // the Service was mtls: strict when compiled
    ResourcePtr resource;
  };
  std::map<std::string, CachedEndpoints> endpoints_cache_;
  std::set<std::string> changed_;
  // The catalog snapshot for agents, patched node by node.
  std::map<std::string, ResourcePtr> catalog_resources_;
  bool catalog_loaded_ = false;
  std::set<std::string> dirty_nodes_;
  bool config_dirty_ = true;
  ResourcePtr bundle_;
  std::map<std::string, ResourcePtr> secrets_;  // "ns/service"
};

}  // namespace weft::control
