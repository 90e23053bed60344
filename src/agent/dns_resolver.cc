#include "agent/dns_resolver.h"

#include <arpa/inet.h>

#include <algorithm>
#include <vector>

namespace weft::agent {
namespace {

using dns::Query;
using dns::Rcode;
using dns::Record;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Raw address bytes (4 or 16) of a textual IP; "" when it is not one.
std::string RawAddress(const std::string& text) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1)
    return std::string(reinterpret_cast<char*>(buf), 4);
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1)
    return std::string(reinterpret_cast<char*>(buf), 16);
  return "";
}

void AddressRecords(const std::string& name, const std::string& raw, uint16_t qtype, uint32_t ttl,
                    std::vector<Record>* out) {
  const uint16_t type = raw.size() == 4 ? dns::kA : dns::kAaaa;
  if (qtype != type && qtype != dns::kAny) return;
  Record r;
  r.name = name;
  r.type = type;
  r.ttl = ttl;
  r.address = raw;
  out->push_back(std::move(r));
}

}  // namespace

std::string Resolve(const uint8_t* data, size_t len, bool tcp, const mesh::CatalogView& catalog,
                    const DnsOptions& opts, Rng& rng, DnsCounters* c, DnsCache* cache) {
  ++c->queries;
  Query q;
  switch (dns::ParseQuery(data, len, &q)) {
    case dns::ParseStatus::kDrop:
      ++c->dropped;
      return "";
    case dns::ParseStatus::kFormErr:
      ++c->formerr;
      return dns::ErrorResponse(q.id, q.opcode, Rcode::kFormErr);
    case dns::ParseStatus::kNotImp:
      ++c->notimp;
      return dns::ErrorResponse(q.id, q.opcode, Rcode::kNotImp);
    case dns::ParseStatus::kOk:
      break;
  }
  const size_t max_size = tcp ? dns::kMaxMessage : q.udp_size;
  auto reply = [&](Rcode rcode, std::vector<Record> answers, std::vector<Record> extra) {
    dns::ResponseBuilder b(q, rcode, rcode != Rcode::kRefused);
    for (auto& r : answers) b.AddAnswer(std::move(r));
    for (auto& r : extra) b.AddAdditional(std::move(r));
    bool tc = false;
    std::string out = b.Build(max_size, &tc);
    if (tc) ++c->truncated;
    if (rcode == Rcode::kNxDomain) ++c->nxdomain;
    if (rcode == Rcode::kRefused) ++c->refused;
    if (rcode == Rcode::kNoError) ++c->answered;
    return out;
  };
  const std::string suffix = "." + opts.domain;
  if ((q.qclass != dns::kClassIn && q.qclass != dns::kAny) || !EndsWith(q.name, suffix))
    return reply(Rcode::kRefused, {}, {});
  // Labels under the domain, most specific first.
  std::string_view rest = std::string_view(q.name).substr(0, q.name.size() - suffix.size());
  std::vector<std::string_view> labels;
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    labels.push_back(rest.substr(0, dot));
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
  }
  if (labels.size() < 2) return reply(Rcode::kNxDomain, {}, {});
  const std::string_view kind = labels.back();

  if (kind == "addr" && labels.size() == 2) {
    std::string raw;
    if (!dns::ParseHexAddress(labels[0], &raw)) return reply(Rcode::kNxDomain, {}, {});
    std::vector<Record> ans;
    AddressRecords(q.name, raw, q.qtype, opts.ttl_s, &ans);
    return reply(Rcode::kNoError, std::move(ans), {});
  }
  if (kind == "node" && labels.size() == 2) {
    const mesh::Node* n = catalog.FindNode(std::string(labels[0]));
    if (!n) return reply(Rcode::kNxDomain, {}, {});
    std::vector<Record> ans;
    std::string raw = RawAddress(n->address);
    if (!raw.empty()) AddressRecords(q.name, raw, q.qtype, opts.ttl_s, &ans);
    return reply(Rcode::kNoError, std::move(ans), {});
  }
  if (kind != "service" || labels.size() > 3) return reply(Rcode::kNxDomain, {}, {});

  // NAME.service, TAG.NAME.service, _NAME._TAG.service
  std::string service, tag;
  if (labels.size() == 2) {
    service = std::string(labels[0]);
  } else if (!labels[0].empty() && labels[0][0] == '_' && !labels[1].empty() &&
             labels[1][0] == '_') {
    service = std::string(labels[0].substr(1));
    tag = std::string(labels[1].substr(1));
    if (tag == "tcp" || tag == "udp") tag.clear();
  } else {
    tag = std::string(labels[0]);
    service = std::string(labels[1]);
  }
  const int64_t index = catalog.service_index(service);
  DnsCache::Entry fresh;
  DnsCache::Entry* e = nullptr;
  std::string key;
  if (cache) {
    key = q.name + '|' + std::to_string(q.qtype);
    auto it = cache->entries.find(key);
    if (it != cache->entries.end() && it->second.index == index) {
      e = &it->second;
      ++cache->hits;
    }
  }
  if (!e) {
    // Healthy instances, each as its records already encoded.
    fresh.index = index;
    for (const auto& ref : catalog.Instances(service)) {
      const mesh::ServiceInstance& s = *ref.instance;
      if (s.kind == "connect-proxy") continue;
      if (mesh::InstanceHealth(*ref.node, s) == "critical") continue;
      if (!tag.empty()) {
        bool has = false;
        for (const auto& t : s.tags) {
          if (t.size() == tag.size() &&
              std::equal(t.begin(), t.end(), tag.begin(),
                         [](char a, char b) { return (a >= 'A' && a <= 'Z' ? a + 32 : a) == b; }))
            has = true;
        }
        if (!has) continue;
      }
      dns::EncodedGroup g;
      const std::string raw = RawAddress(s.address.empty() ? ref.node->address : s.address);
      if (!raw.empty()) {
        std::vector<Record> ans, extra;
        if (q.qtype == dns::kSrv || q.qtype == dns::kAny) {
          Record r;
          r.name = q.name;
          r.type = dns::kSrv;
          r.ttl = opts.ttl_s;
          r.priority = 1;
          r.weight = static_cast<uint16_t>(
              std::max<uint32_t>(1, std::min<uint32_t>(s.weight_passing, 65535)));
          r.port = static_cast<uint16_t>(s.port);
          r.target = dns::HexAddress(raw) + ".addr" + suffix;
          AddressRecords(r.target, raw, dns::kAny, opts.ttl_s, &extra);
          ans.push_back(std::move(r));
        }
        if (q.qtype != dns::kSrv) AddressRecords(q.name, raw, q.qtype, opts.ttl_s, &ans);
        for (const auto& r : ans) g.answers.push_back(dns::EncodeRecord(r, true));
        for (const auto& r : extra) g.additional.push_back(dns::EncodeRecord(r, false));
      }
      fresh.groups.push_back(std::move(g));
    }
    fresh.nxdomain = fresh.groups.empty();
    if (cache) {
      ++cache->misses;
      if (cache->entries.size() >= cache->max_entries) cache->entries.clear();
      e = &(cache->entries[key] = std::move(fresh));
    } else {
      e = &fresh;
    }
  }
  if (e->nxdomain) return reply(Rcode::kNxDomain, {}, {});
  // Shuffle (Fisher-Yates) so clients spread over the instances.
  std::vector<const dns::EncodedGroup*> order;
  order.reserve(e->groups.size());
  for (const auto& g : e->groups) order.push_back(&g);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.Below(i)]);
  bool tc = false;
  std::string out = dns::BuildEncoded(q, Rcode::kNoError, order, max_size, &tc);
  if (tc) ++c->truncated;
  ++c->answered;
  return out;
}

}  // namespace weft::agent
