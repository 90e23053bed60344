// `weft up`'s LocalMesh document: the processes to start, the traffic to
// send, and the manifests to apply, with every port assigned.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mesh/manifest.h"

namespace weft::cli {

struct UpCall {
  std::string service;
  std::string path = "/";
};

struct UpService {
  std::string name;
  std::string version = "v1";
  uint16_t port = 0;  // the app's; 0: from portBase
  int64_t latency_ms = 0, jitter_ms = 0;
  double error_rate = 0;
  std::vector<UpCall> calls;
  // Assigned:
  uint16_t sidecar = 0, admin = 0;
  std::vector<uint16_t> upstream_ports;  // one per call
};

struct UpSpec {
  std::string server_http = "127.0.0.1:8500", server_grpc = "127.0.0.1:8502";
  std::string agent_http = "127.0.0.1:8501", agent_dns = "127.0.0.1:8600";
  uint16_t port_base = 21000;
  std::string traffic_to;
  std::string traffic_path = "/";
  double rate = 20;
  std::vector<UpService> services;
  std::vector<mesh::Manifest> manifests;
  // Assigned: the traffic generator's sidecar.
  uint16_t loadgen_sidecar = 0, loadgen_sidecar_admin = 0, loadgen_upstream = 0;
};

// The port of "HOST:PORT"; 0 when there is none.
uint16_t PortOf(const std::string& host_port);

// Parses the LocalMesh document of an up file (the other documents are
// manifests) and assigns the ports: sidecars from portBase, admin ports from
// +100, upstreams from +200, apps without a port from +300. False with *err
// naming the field.
bool ParseUpFile(const std::string& text, UpSpec* spec, std::string* err);

}  // namespace weft::cli
