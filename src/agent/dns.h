// DNS wire format (RFC 1035, EDNS0 from RFC 6891, SRV from RFC 2782): a
// strict parser for the queries the agent's DNS server accepts, and a
// response builder with name compression and truncation to the client's
// UDP size. No allocation beyond the strings it returns; never reads past
// the packet (every length and pointer is checked).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace weft::dns {

enum class Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};

enum Type : uint16_t {
  kA = 1,
  kNs = 2,
  kCname = 5,
  kSoa = 6,
  kPtr = 12,
  kTxt = 16,
  kAaaa = 28,
  kSrv = 33,
  kOpt = 41,
  kAny = 255,
};

inline constexpr uint16_t kClassIn = 1;
inline constexpr size_t kMaxUdpPlain = 512;  // without EDNS0
inline constexpr size_t kMaxMessage = 65535;

struct Query {
  uint16_t id = 0;
  uint8_t opcode = 0;
  bool recursion_desired = false;
  std::string name;  // lower-case, dotted, no trailing dot ("" for the root)
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  bool edns = false;
  uint16_t udp_size = kMaxUdpPlain;  // what the client can take over UDP
};

enum class ParseStatus : uint8_t {
  kOk,
  kFormErr,  // answer FORMERR (when the id could be read; else drop)
  kNotImp,   // an opcode other than QUERY: answer NOTIMP
  kDrop,     // not a query (QR set) or too short for a header: say nothing
};

// Parses one query message. On kFormErr/kNotImp, out->id and out->opcode
// are set when the header was readable, so an error answer can be built.
ParseStatus ParseQuery(const uint8_t* data, size_t len, Query* out);

struct Record {
  std::string name;  // dotted, no trailing dot
  uint16_t type = kA;
  uint32_t ttl = 0;
  // A: 4 bytes, AAAA: 16 bytes (network order).
  std::string address;
  // SRV.
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;
};

// Builds one response to `q` (through BuildEncoded). Answers that do not
// fit in `max_size` bytes are left out and the TC bit is set (the client
// retries over TCP).
class ResponseBuilder {
 public:
  // Keeps a reference to `q`: it must outlive the builder.
  ResponseBuilder(const Query& q, Rcode rcode, bool authoritative = true);
  void AddAnswer(Record r) { answers_.push_back(std::move(r)); }
  void AddAdditional(Record r) { additional_.push_back(std::move(r)); }
  // `max_size`: 512, the client's EDNS size, or 65535 over TCP.
  std::string Build(size_t max_size, bool* truncated = nullptr) const;

 private:
  const Query& q_;
  Rcode rcode_;
  bool aa_;
  std::vector<Record> answers_;
  std::vector<Record> additional_;
};

// Pre-encoded answers: a record as bytes, its owner written as a pointer to
// the question's name (offset 12) when `owner_is_question`, uncompressed
// otherwise; and a response assembled from such bytes. Lets a server keep
// the records of a name encoded and only shuffle and copy per query.
std::string EncodeRecord(const Record& r, bool owner_is_question);
// `groups`: per instance, its answer records and its additional records;
// they are emitted in the order given. Truncation as in ResponseBuilder.
struct EncodedGroup {
  std::vector<std::string> answers;
  std::vector<std::string> additional;
};
std::string BuildEncoded(const Query& q, Rcode rcode,
                         const std::vector<const EncodedGroup*>& groups, size_t max_size,
                         bool* truncated, bool authoritative = true);

// A minimal error answer (no question) for a query whose body could not be
// parsed: same id, QR, the rcode.
std::string ErrorResponse(uint16_t id, uint8_t opcode, Rcode rcode);

// A query for `name` (dotted) and `qtype`, with an EDNS0 OPT record
// advertising `edns_size` when non-zero. For clients: tests, benchmarks.
std::string BuildQuery(std::string_view name, uint16_t qtype, uint16_t edns_size = 0,
                       uint16_t id = 0x1234);

// "7f000001" <-> 4 bytes, 32 hex digits <-> 16 bytes (names under addr.).
std::string HexAddress(const std::string& raw);
bool ParseHexAddress(std::string_view hex, std::string* raw);

}  // namespace weft::dns
