// Field-by-field reading of YAML documents with errors that name the field
// path and the fix. Readers throw FieldError; the public entry points of a
// parser catch it and turn it into one line ("config error: PATH: WHAT").
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace weft::yaml {

struct FieldError {
  std::string path;  // "listeners[1].address \"127.0.0.1:99999\""
  std::string what;  // "port out of range"
  std::string Line(const char* prefix) const { return std::string(prefix) + path + ": " + what; }
};

[[noreturn]] void Fail(const std::string& path, const std::string& what);

// `"value"` for a scalar, for error paths.
std::string Quoted(const YAML::Node& n);
std::string Scalar(const YAML::Node& n, const std::string& path);
// Refuses keys outside `allowed`, naming the known ones.
void CheckKeys(const YAML::Node& n, const std::string& path, const std::set<std::string>& allowed);
// "250ms", "5s", "2m", "1h" -> milliseconds.
int64_t Duration(const YAML::Node& n, const std::string& path);
uint64_t Unsigned(const YAML::Node& n, const std::string& path, uint64_t min, uint64_t max);
// The scalar, which must be one of `choices` (named in the error).
std::string OneOf(const YAML::Node& n, const std::string& path,
                  const std::vector<std::string>& choices);

// The documents of a YAML stream, at most `max_documents` of them (more
// throws YAML::ParserException naming the limit). yaml-cpp's LoadAll never
// returns on some malformed streams (a document whose first token is ','
// grows memory without end), while its single-document Load does; so the
// stream is cut at its document markers ('---' and '...' lines, which YAML
// forbids inside content) and each document is loaded alone. Errors carry
// the line in the whole stream.
std::vector<YAML::Node> LoadAll(const std::string& text, size_t max_documents);

}  // namespace weft::yaml
