#include "agent/dns.h"

#include <algorithm>
#include <map>

namespace weft::dns {
namespace {

constexpr size_t kHeader = 12;
constexpr size_t kMaxName = 255;
constexpr int kMaxPointers = 16;
constexpr size_t kOptSize = 11;  // root name, type, class, ttl, rdlength

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

// Reads a (possibly compressed) name at *pos. Lower-cases it; refuses
// labels with dots or non-printable bytes. Advances *pos past the name as
// it stands in the message.
bool ReadName(const uint8_t* data, size_t len, size_t* pos, std::string* out) {
  out->clear();
  size_t p = *pos;
  bool jumped = false;
  int jumps = 0;
  size_t wire = 1;  // length on the wire, root byte included
  for (;;) {
    if (p >= len) return false;
    const uint8_t b = data[p];
    if ((b & 0xC0) == 0xC0) {
      if (p + 1 >= len || ++jumps > kMaxPointers) return false;
      const size_t target = static_cast<size_t>(((b & 0x3F) << 8) | data[p + 1]);
      if (target >= p) return false;  // pointers go backwards only: no loops
      if (!jumped) *pos = p + 2;
      jumped = true;
      p = target;
      continue;
    }
    if ((b & 0xC0) != 0) return false;  // extended label types
    if (b == 0) {
      if (!jumped) *pos = p + 1;
      return true;
    }
    if (p + 1 + b > len) return false;
    wire += 1 + b;
    if (wire > kMaxName) return false;
    if (!out->empty()) out->push_back('.');
    for (size_t i = 0; i < b; ++i) {
      const uint8_t c = data[p + 1 + i];
      if (c <= 0x20 || c >= 0x7f || c == '.') return false;
      out->push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
    }
    p += 1 + b;
  }
}

// Skips one resource record; returns its type and class, and for OPT the
// position just past it.
bool SkipRecord(const uint8_t* data, size_t len, size_t* pos, uint16_t* type, uint16_t* klass,
                std::string* name) {
  if (!ReadName(data, len, pos, name)) return false;
  if (*pos + 10 > len) return false;
  *type = Get16(data + *pos);
  *klass = Get16(data + *pos + 2);
  const uint16_t rdlen = Get16(data + *pos + 8);
  *pos += 10;
  if (*pos + rdlen > len) return false;
  *pos += rdlen;
  return true;
}

class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}
  void U16(uint16_t v) {
    out_->push_back(static_cast<char>(v >> 8));
    out_->push_back(static_cast<char>(v & 0xff));
  }
  void U32(uint32_t v) {
    U16(static_cast<uint16_t>(v >> 16));
    U16(static_cast<uint16_t>(v & 0xffff));
  }
  // Writes a dotted name, pointing at an earlier copy of any suffix.
  void Name(std::string_view name, bool compress) {
    while (!name.empty()) {
      if (compress) {
        auto it = seen_.find(name);
        if (it != seen_.end()) {
          U16(static_cast<uint16_t>(0xC000 | it->second));
          return;
        }
        if (out_->size() < 0x3FFF) seen_.emplace(std::string(name), out_->size());
      }
      const size_t dot = name.find('.');
      std::string_view label = name.substr(0, dot);
      if (label.size() > 63) label = label.substr(0, 63);
      out_->push_back(static_cast<char>(label.size()));
      out_->append(label);
      name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
    }
    out_->push_back('\0');
  }
  void Record(const struct Record& r) {
    Name(r.name, true);
    U16(r.type);
    U16(kClassIn);
    U32(r.ttl);
    const size_t len_at = out_->size();
    U16(0);
    if (r.type == kSrv) {
      U16(r.priority);
      U16(r.weight);
      U16(r.port);
      Name(r.target, false);  // RFC 2782: no compression in the target
    } else {
      out_->append(r.address);
    }
    const size_t rdlen = out_->size() - len_at - 2;
    (*out_)[len_at] = static_cast<char>(rdlen >> 8);
    (*out_)[len_at + 1] = static_cast<char>(rdlen & 0xff);
  }
  size_t size() const { return out_->size(); }

 private:
  std::string* out_;
  std::map<std::string, size_t, std::less<>> seen_;
};

void Header(Writer& w, uint16_t id, uint8_t opcode, bool aa, bool tc, bool rd, Rcode rcode,
            uint16_t qd, uint16_t an, uint16_t ar) {
  w.U16(id);
  uint16_t flags = 0x8000;  // QR
  flags |= static_cast<uint16_t>((opcode & 0xF) << 11);
  if (aa) flags |= 0x0400;
  if (tc) flags |= 0x0200;
  if (rd) flags |= 0x0100;
  flags |= static_cast<uint16_t>(rcode) & 0xF;
  w.U16(flags);
  w.U16(qd);
  w.U16(an);
  w.U16(0);  // authority
  w.U16(ar);
}

}  // namespace

ParseStatus ParseQuery(const uint8_t* data, size_t len, Query* out) {
  if (len < kHeader) return ParseStatus::kDrop;
  out->id = Get16(data);
  const uint16_t flags = Get16(data + 2);
  if (flags & 0x8000) return ParseStatus::kDrop;  // a response, not a query
  out->opcode = static_cast<uint8_t>((flags >> 11) & 0xF);
  out->recursion_desired = (flags & 0x0100) != 0;
  const uint16_t qd = Get16(data + 4), an = Get16(data + 6), ns = Get16(data + 8),
                 ar = Get16(data + 10);
  if (out->opcode != 0) return ParseStatus::kNotImp;
  if (qd != 1) return ParseStatus::kFormErr;
  size_t pos = kHeader;
  if (!ReadName(data, len, &pos, &out->name)) return ParseStatus::kFormErr;
  if (pos + 4 > len) return ParseStatus::kFormErr;
  out->qtype = Get16(data + pos);
  out->qclass = Get16(data + pos + 2);
  pos += 4;
  std::string name;
  uint16_t type = 0, klass = 0;
  for (uint32_t i = 0; i < static_cast<uint32_t>(an) + ns; ++i) {
    if (!SkipRecord(data, len, &pos, &type, &klass, &name)) return ParseStatus::kFormErr;
  }
  for (uint16_t i = 0; i < ar; ++i) {
    if (!SkipRecord(data, len, &pos, &type, &klass, &name)) return ParseStatus::kFormErr;
    if (type == kOpt) {
      if (out->edns || !name.empty()) return ParseStatus::kFormErr;  // one OPT, at the root
      out->edns = true;
      out->udp_size = static_cast<uint16_t>(std::clamp<size_t>(klass, kMaxUdpPlain, 4096));
    }
  }
  return ParseStatus::kOk;
}

ResponseBuilder::ResponseBuilder(const Query& q, Rcode rcode, bool authoritative)
    : q_(q), rcode_(rcode), aa_(authoritative) {}

std::string ResponseBuilder::Build(size_t max_size, bool* truncated) const {
  // One group: the answers in order, then the additional records.
  EncodedGroup g;
  g.answers.reserve(answers_.size());
  for (const auto& r : answers_) g.answers.push_back(EncodeRecord(r, r.name == q_.name));
  for (const auto& r : additional_) g.additional.push_back(EncodeRecord(r, r.name == q_.name));
  return BuildEncoded(q_, rcode_, {&g}, max_size, truncated, aa_);
}

std::string ErrorResponse(uint16_t id, uint8_t opcode, Rcode rcode) {
  std::string out;
  Writer w(&out);
  Header(w, id, opcode, false, false, false, rcode, 0, 0, 0);
  return out;
}

std::string HexAddress(const std::string& raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

bool ParseHexAddress(std::string_view hex, std::string* raw) {
  if (hex.size() != 8 && hex.size() != 32) return false;
  raw->clear();
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = val(hex[i]), lo = val(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    raw->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

std::string BuildQuery(std::string_view name, uint16_t qtype, uint16_t edns_size, uint16_t id) {
  std::string out;
  Writer w(&out);
  w.U16(id);
  w.U16(0x0100);  // RD
  w.U16(1);
  w.U16(0);
  w.U16(0);
  w.U16(edns_size ? 1 : 0);
  w.Name(name, false);
  w.U16(qtype);
  w.U16(kClassIn);
  if (edns_size) {
    out.push_back('\0');
    w.U16(kOpt);
    w.U16(edns_size);
    w.U32(0);
    w.U16(0);
  }
  return out;
}

std::string EncodeRecord(const Record& r, bool owner_is_question) {
  std::string out;
  Writer w(&out);
  if (owner_is_question) {
    w.U16(0xC000 | kHeader);
    // The rest as Writer::Record does, without the owner name.
    Record copy = r;
    copy.name.clear();
    std::string body;
    Writer bw(&body);
    bw.Record(copy);
    out.append(body, 1, std::string::npos);  // drop the root byte of the empty name
  } else {
    w.Record(r);
  }
  return out;
}

std::string BuildEncoded(const Query& q, Rcode rcode,
                         const std::vector<const EncodedGroup*>& groups, size_t max_size,
                         bool* truncated, bool authoritative) {
  std::string out;
  out.reserve(std::min<size_t>(max_size, 4096));
  Writer w(&out);
  Header(w, q.id, q.opcode, authoritative, false, q.recursion_desired, rcode, 1, 0, 0);
  w.Name(q.name, false);  // the pointers in the records expect it at offset 12, uncompressed
  w.U16(q.qtype);
  w.U16(q.qclass);
  const size_t reserve = q.edns ? kOptSize : 0;
  size_t answers = 0, additional = 0;
  bool tc = false;
  for (const auto* g : groups) {
    for (const auto& a : g->answers) {
      if (out.size() + a.size() + reserve > max_size) {
        tc = true;
        break;
      }
      out += a;
      ++answers;
    }
    if (tc) break;
  }
  if (!tc) {
    bool full = false;
    for (const auto* g : groups) {
      for (const auto& a : g->additional) {
        if (out.size() + a.size() + reserve > max_size) {
          full = true;
          break;
        }
        out += a;
        ++additional;
      }
      if (full) break;
    }
  }
  if (q.edns) {
    out.push_back('\0');
    w.U16(kOpt);
    w.U16(4096);
    w.U32(0);
    w.U16(0);
    ++additional;
  }
  std::string head;
  Writer hw(&head);
  Header(hw, q.id, q.opcode, true, tc, q.recursion_desired, rcode, 1,
         static_cast<uint16_t>(answers), static_cast<uint16_t>(additional));
  out.replace(0, kHeader, head);
  if (truncated) *truncated = tc;
  return out;
}

}  // namespace weft::dns
