// Answers DNS queries from the agent's catalog cache:
//   NAME.service.weft, TAG.NAME.service.weft, _NAME._TAG.service.weft
//     (RFC 2782 style; _tcp/_udp count as "any tag"): A/AAAA of healthy
//     instances (passing or warning), SRV with the instance's port and a
//     target under addr.weft plus that address in the additional section;
//   NODE.node.weft: the node's address;
//   HEX.addr.weft: the address spelled in hex (SRV targets).
// Answers are shuffled; NXDOMAIN for unknown names or no healthy instance;
// REFUSED outside the domain (the agent is not a recursive resolver).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/dns.h"
#include "base/random.h"
#include "mesh/catalog.h"

namespace weft::agent {

struct DnsOptions {
  std::string domain = "weft";
  uint32_t ttl_s = 5;
};

struct DnsCounters {
  uint64_t queries = 0;
  uint64_t answered = 0;
  uint64_t nxdomain = 0;
  uint64_t refused = 0;
  uint64_t formerr = 0;
  uint64_t notimp = 0;
  uint64_t truncated = 0;
  uint64_t dropped = 0;
};

// Service answers kept encoded per (name, type) until the service's index
// moves: a lookup then costs a shuffle and a copy. Bounded (cleared when
// full). Owned by the one thread that answers queries.
struct DnsCache {
  struct Entry {
    int64_t index = -1;
    bool nxdomain = false;
    std::vector<dns::EncodedGroup> groups;  // per instance
  };
  std::unordered_map<std::string, Entry> entries;
  size_t max_entries = 4096;
  uint64_t hits = 0;
  uint64_t misses = 0;
};

// One response (wire format) to one request packet, or "" to stay silent.
// `max_size`: 512/EDNS size over UDP (the query's own limit applies too),
// 65535 over TCP. Call it on the thread that owns `catalog`, `rng`,
// `counters` and `cache` (the agent's io thread); nothing is kept past the
// call.
std::string Resolve(const uint8_t* data, size_t len, bool tcp, const mesh::CatalogView& catalog,
                    const DnsOptions& opts, Rng& rng, DnsCounters* counters,
                    DnsCache* cache = nullptr);

}  // namespace weft::agent
