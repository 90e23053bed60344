#include "agent/dns.h"

#include <gtest/gtest.h>

#include "agent/dns_resolver.h"

namespace weft::agent {
namespace {

using nlohmann::json;

std::string MakeQuery(const std::string& name, uint16_t type, int edns_size = 0) {
  return dns::BuildQuery(name, type, static_cast<uint16_t>(edns_size));
}

struct Parsed {
  uint16_t id, flags, qd, an, ns, ar;
  int rcode() const { return flags & 0xF; }
  bool tc() const { return flags & 0x0200; }
};
Parsed Header(const std::string& r) {
  auto g = [&](size_t i) {
    return static_cast<uint16_t>((static_cast<uint8_t>(r[i]) << 8) |
                                 static_cast<uint8_t>(r[i + 1]));
  };
  return {g(0), g(2), g(4), g(6), g(8), g(10)};
}

class DnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 40; ++i) {
      mesh::Node n;
      json b = {{"Node", "node-" + std::to_string(i)},
                {"Address", "10.0.0." + std::to_string(i + 1)},
                {"Service",
                 {{"Service", "web"},
                  {"ID", "web-" + std::to_string(i)},
                  {"Port", 8000 + i},
                  {"Tags", {i % 2 ? "odd" : "even"}}}}};
      ASSERT_TRUE(mesh::ApplyRegistration(b, mesh::CatalogLimits{}, &n).ok());
      if (i == 0) {
        ASSERT_TRUE(
            mesh::ApplyRegistration(
                json::parse(
                    R"({"Node":"node-0","Address":"10.0.0.1","Check":{"Name":"c","ServiceID":"web-0","Status":"critical"}})"),
                mesh::CatalogLimits{}, &n)
                .ok());
      }
      std::string doc = mesh::NodeToJson(n);
      view_.Apply(n.name, &doc, i + 1, i + 1);
    }
    mesh::Node v6;
    ASSERT_TRUE(
        mesh::ApplyRegistration(
            json::parse(
                R"({"Node":"six","Address":"fd00::1","Service":{"Service":"db","Port":5432}})"),
            mesh::CatalogLimits{}, &v6)
            .ok());
    std::string doc = mesh::NodeToJson(v6);
    view_.Apply("six", &doc, 100, 100);
  }
  std::string Ask(const std::string& q, bool tcp = false) {
    return Resolve(reinterpret_cast<const uint8_t*>(q.data()), q.size(), tcp, view_, opts_, rng_,
                   &counters_);
  }
  mesh::CatalogView view_;
  DnsOptions opts_;
  Rng rng_{42};
  DnsCounters counters_;
};

TEST_F(DnsTest, ARecordsOfHealthyInstancesOnly) {
  std::string r = Ask(MakeQuery("web.service.weft", dns::kA, 4096));
  Parsed h = Header(r);
  EXPECT_EQ(h.id, 0x1234);
  EXPECT_EQ(h.rcode(), 0);
  EXPECT_FALSE(h.tc());
  EXPECT_EQ(h.an, 39);  // node-0's instance is critical
  EXPECT_EQ(h.ar, 1);   // our OPT
  EXPECT_EQ(r.find(std::string("\x0a\x00\x00\x01", 4)), std::string::npos);  // 10.0.0.1 left out
  EXPECT_NE(r.find(std::string("\x0a\x00\x00\x02", 4)), std::string::npos);
}

TEST_F(DnsTest, TagsSrvAndRfc2782Names) {
  std::string r = Ask(MakeQuery("odd.web.service.weft", dns::kA, 4096));
  EXPECT_EQ(Header(r).an, 20);
  r = Ask(MakeQuery("_web._even.service.weft", dns::kSrv, 4096));
  Parsed h = Header(r);
  EXPECT_EQ(h.an, 19);
  EXPECT_EQ(h.ar, 20);                               // one address per target, plus OPT
  EXPECT_NE(r.find("0a000003"), std::string::npos);  // target 0a000003.addr.weft (node-2)
  r = Ask(MakeQuery("0a000002.addr.weft", dns::kA));
  EXPECT_EQ(Header(r).an, 1);
  r = Ask(MakeQuery("db.service.weft", dns::kAaaa));
  EXPECT_EQ(Header(r).an, 1);
  r = Ask(MakeQuery("db.service.weft", dns::kA));  // exists, but no IPv4: NODATA
  EXPECT_EQ(Header(r).rcode(), 0);
  EXPECT_EQ(Header(r).an, 0);
  r = Ask(MakeQuery("node-3.node.weft", dns::kA));
  EXPECT_EQ(Header(r).an, 1);
}

TEST_F(DnsTest, UnknownNamesAndOtherDomains) {
  EXPECT_EQ(Header(Ask(MakeQuery("nope.service.weft", dns::kA))).rcode(), 3);
  EXPECT_EQ(Header(Ask(MakeQuery("example.com", dns::kA))).rcode(), 5);
  EXPECT_EQ(Header(Ask(MakeQuery("weft", dns::kA))).rcode(), 5);
  EXPECT_EQ(Header(Ask(MakeQuery("a.b.c.d.service.weft", dns::kA))).rcode(), 3);
  // Names are case-insensitive.
  EXPECT_EQ(Header(Ask(MakeQuery("WEB.Service.WEFT", dns::kA, 4096))).an, 39);
}

TEST_F(DnsTest, TruncatesToTheClientsSizeAndTcpGetsEverything) {
  std::string r = Ask(MakeQuery("web.service.weft", dns::kSrv));  // no EDNS: 512 bytes
  EXPECT_LE(r.size(), 512u);
  EXPECT_TRUE(Header(r).tc());
  EXPECT_GT(Header(r).an, 0);
  r = Ask(MakeQuery("web.service.weft", dns::kSrv), true);
  EXPECT_FALSE(Header(r).tc());
  EXPECT_EQ(Header(r).an, 39);
  EXPECT_EQ(counters_.truncated, 1u);
}

TEST_F(DnsTest, AnswersAreShuffled) {
  std::string a = Ask(MakeQuery("web.service.weft", dns::kA, 4096));
  bool differs = false;
  for (int i = 0; i < 5 && !differs; ++i)
    differs = Ask(MakeQuery("web.service.weft", dns::kA, 4096)) != a;
  EXPECT_TRUE(differs);
}

TEST_F(DnsTest, MalformedQueries) {
  // Too short for a header: silence.
  EXPECT_EQ(Ask(std::string("\x12\x34\x01", 3)), "");
  // A response (QR set): silence.
  std::string q = MakeQuery("web.service.weft", dns::kA);
  q[2] = static_cast<char>(q[2] | 0x80);
  EXPECT_EQ(Ask(q), "");
  // Two questions: FORMERR with the id.
  q = MakeQuery("web.service.weft", dns::kA);
  q[5] = 2;
  std::string r = Ask(q);
  EXPECT_EQ(Header(r).id, 0x1234);
  EXPECT_EQ(Header(r).rcode(), 1);
  // Label running past the end, a pointer loop, a label with a dot.
  EXPECT_EQ(Header(Ask(MakeQuery("web.service.weft", dns::kA).substr(0, 20))).rcode(), 1);
  std::string loop =
      MakeQuery("x", dns::kA).substr(0, 12) + std::string("\xc0\x0c\x00\x01\x00\x01", 6);
  EXPECT_EQ(Header(Ask(loop)).rcode(), 1);
  std::string dotted = MakeQuery("a", dns::kA);
  dotted[13] = '.';
  EXPECT_EQ(Header(Ask(dotted)).rcode(), 1);
  // Another opcode (NOTIFY): NOTIMP.
  q = MakeQuery("web.service.weft", dns::kA);
  q[2] = static_cast<char>(4 << 3);
  EXPECT_EQ(Header(Ask(q)).rcode(), 4);
  EXPECT_EQ(counters_.formerr, 4u);
}

TEST_F(DnsTest, CachedAnswersMatchAndFollowChanges) {
  DnsCache cache;
  auto ask = [&](const std::string& q) {
    return Resolve(reinterpret_cast<const uint8_t*>(q.data()), q.size(), false, view_, opts_, rng_,
                   &counters_, &cache);
  };
  for (uint16_t type : {dns::kA, dns::kSrv, dns::kAny, dns::kAaaa}) {
    const std::string q = MakeQuery("web.service.weft", type, 4096);
    std::string plain = Ask(q), first = ask(q), second = ask(q);
    EXPECT_EQ(Header(first).an, Header(plain).an) << type;
    EXPECT_EQ(Header(second).ar, Header(plain).ar) << type;
    EXPECT_EQ(first.size(), plain.size()) << type;  // same records, other order
  }
  EXPECT_EQ(cache.misses, 4u);
  EXPECT_EQ(cache.hits, 4u);
  // Truncation works on cached answers too.
  std::string small = ask(MakeQuery("web.service.weft", dns::kSrv));
  EXPECT_TRUE(Header(small).tc());
  EXPECT_LE(small.size(), 512u);
  // A change to the service moves its index: the next answer is rebuilt.
  mesh::Node n;
  ASSERT_TRUE(
      mesh::ApplyRegistration(
          json::parse(
              R"({"Node":"new","Address":"10.0.9.9","Service":{"Service":"web","ID":"web-new","Port":1}})"),
          mesh::CatalogLimits{}, &n)
          .ok());
  std::string doc = mesh::NodeToJson(n);
  view_.Apply("new", &doc, 500, 500);
  EXPECT_EQ(Header(ask(MakeQuery("web.service.weft", dns::kA, 4096))).an, 40);
  EXPECT_NE(
      ask(MakeQuery("web.service.weft", dns::kA, 4096)).find(std::string("\x0a\x00\x09\x09", 4)),
      std::string::npos);
  // NXDOMAIN is cached as such.
  EXPECT_EQ(Header(ask(MakeQuery("nope.service.weft", dns::kA))).rcode(), 3);
  EXPECT_EQ(Header(ask(MakeQuery("nope.service.weft", dns::kA))).rcode(), 3);
}

TEST(Dns, HexAddresses) {
  std::string raw;
  ASSERT_TRUE(dns::ParseHexAddress("7f000001", &raw));
  EXPECT_EQ(raw, std::string("\x7f\x00\x00\x01", 4));
  EXPECT_EQ(dns::HexAddress(raw), "7f000001");
  EXPECT_FALSE(dns::ParseHexAddress("7f00001", &raw));
  EXPECT_FALSE(dns::ParseHexAddress("zz000001", &raw));
}

}  // namespace
}  // namespace weft::agent
