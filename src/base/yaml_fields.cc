#include "base/yaml_fields.h"

#include <yaml-cpp/eventhandler.h>

#include <sstream>

#include "base/strings.h"

namespace weft::yaml {

void Fail(const std::string& path, const std::string& what) { throw FieldError{path, what}; }

std::string Quoted(const YAML::Node& n) {
  if (n.IsScalar()) return "\"" + n.Scalar() + "\"";
  return "(not a scalar)";
}

std::string Scalar(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) Fail(path, "expected a single value");
  return n.Scalar();
}

void CheckKeys(const YAML::Node& n, const std::string& path, const std::set<std::string>& allowed) {
  if (!n.IsMap()) Fail(path, "expected a mapping");
  for (const auto& kv : n) {
    std::string k = kv.first.Scalar();
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      Fail(path + "." + k, "unknown field (known: " + list + ")");
    }
  }
}

int64_t Duration(const YAML::Node& n, const std::string& path) {
  auto v = ParseDurationMs(Scalar(n, path));
  if (!v) Fail(path + " " + Quoted(n), "invalid duration (use e.g. 250ms, 5s, 2m)");
  return *v;
}

uint64_t Unsigned(const YAML::Node& n, const std::string& path, uint64_t min, uint64_t max) {
  auto v = ParseDecimal(Scalar(n, path));
  if (!v) Fail(path + " " + Quoted(n), "expected a non-negative integer");
  if (*v < min || *v > max) {
    Fail(path + " " + Quoted(n),
         "out of range (" + std::to_string(min) + ".." + std::to_string(max) + ")");
  }
  return *v;
}

std::string OneOf(const YAML::Node& n, const std::string& path,
                  const std::vector<std::string>& choices) {
  std::string v = Scalar(n, path);
  std::string list;
  for (const auto& c : choices) {
    if (v == c) return v;
    list += (list.empty() ? "" : ", ") + c;
  }
  Fail(path + " \"" + v + "\"", "unknown value (use " + list + ")");
}

namespace {

// A document marker: "---" or "..." at the start of a line, then the end
// of the line or a space.
bool IsMarker(std::string_view line, std::string_view marker) {
  if (line.substr(0, 3) != marker) return false;
  return line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r';
}

// Parser events, ignored but for where the document starts.
class DocumentStart final : public YAML::EventHandler {
 public:
  YAML::Mark mark = YAML::Mark::null_mark();
  void OnDocumentStart(const YAML::Mark& m) override { mark = m; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

bool IsContent(std::string_view line) {
  const size_t first = line.find_first_not_of(" \t\r");
  return first != std::string_view::npos && line[first] != '#';
}

}  // namespace

std::vector<YAML::Node> LoadAll(const std::string& text, size_t max_documents) {
  struct Chunk {
    size_t begin, end, line;
  };
  std::vector<Chunk> chunks;
  size_t begin = 0, begin_line = 0, line_no = 0;
  bool content = false;  // the open chunk has more than directives and comments
  auto cut = [&](size_t at, size_t next_line) {
    if (content) chunks.push_back({begin, at, begin_line});
    begin = at;
    begin_line = next_line;
    content = false;
  };
  for (size_t pos = 0; pos < text.size(); ++line_no) {
    size_t eol = text.find('\n', pos);
    const size_t next = eol == std::string::npos ? text.size() : eol + 1;
    const std::string_view line(text.data() + pos, next - pos - (eol == std::string::npos ? 0 : 1));
    if (IsMarker(line, "---") || line.substr(0, 1) == "%") {
      // A new document (its directives, if any, come first).
      if (content) cut(pos, line_no);
      content = content || IsMarker(line, "---");
    } else if (IsMarker(line, "...")) {
      content = true;
      cut(next, line_no + 1);
    } else if (IsContent(line)) {
      content = true;
    }
    if (chunks.size() > max_documents) break;
    pos = next;
  }
  cut(text.size(), line_no);
  if (chunks.size() > max_documents) {
    throw YAML::ParserException(
        YAML::Mark::null_mark(),
        "too many documents: at most " + std::to_string(max_documents) + " in one request");
  }
  std::vector<YAML::Node> docs;
  docs.reserve(chunks.size());
  for (const Chunk& c : chunks) {
    const std::string chunk = text.substr(c.begin, c.end - c.begin);
    try {
      // One document each: what the parser finds after it was not part of
      // it (a stray ',', ']' or '}' that yaml-cpp skips over otherwise).
      std::istringstream in(chunk);
      YAML::Parser parser(in);
      DocumentStart first, second;
      parser.HandleNextDocument(first);
      if (parser.HandleNextDocument(second)) {
        YAML::Mark m = second.mark.is_null() ? YAML::Mark() : second.mark;
        throw YAML::ParserException(m, "unexpected text outside of the document's content");
      }
      docs.push_back(YAML::Load(chunk));
    } catch (const YAML::Exception& e) {
      YAML::Mark m = e.mark;
      if (!m.is_null()) m.line += static_cast<int>(c.line);
      throw YAML::ParserException(m, e.msg);
    }
  }
  return docs;
}

}  // namespace weft::yaml
