// `weft apply -f`: reads manifests from files, directories or stdin,
// validates them all, then PUTs each to the server.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/file.h"
#include "cli/ctl.h"
#include "cli/ctl_internal.h"
#include "http/server.h"
#include "mesh/manifest.h"

namespace weft::cli {
namespace {

using json = nlohmann::json;

// Reads the documents of -f FILE|DIR|- into (source, text) pairs.
bool ReadSources(const std::vector<std::string>& files,
                 std::vector<std::pair<std::string, std::string>>* out, std::string* err) {
  namespace fs = std::filesystem;
  for (const auto& f : files) {
    if (f == "-") {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      out->emplace_back("stdin", ss.str());
      continue;
    }
    std::error_code ec;
    if (fs::is_directory(f, ec)) {
      std::vector<std::string> names;
      for (const auto& e : fs::directory_iterator(f, ec)) {
        auto ext = e.path().extension().string();
        if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json"))
          names.push_back(e.path().string());
      }
      std::sort(names.begin(), names.end());
      if (names.empty()) {
        *err = f + ": no .yaml, .yml or .json files in this directory";
        return false;
      }
      for (const auto& n : names) {
        std::string text = ReadWholeFile(n, err);
        if (!err->empty()) return false;
        out->emplace_back(n, std::move(text));
      }
      continue;
    }
    std::string text = ReadWholeFile(f, err);
    if (!err->empty()) return false;
    out->emplace_back(f, std::move(text));
  }
  return true;
}

constexpr const char* kApplyUsage = "weft apply -f FILE|DIR|- [-f ...] [--server URL]";

}  // namespace

int ApplyMain(const Args& args) {
  CtlFlags f;
  if (int rc = ParseCtlFlags(args, &f, kApplyUsage); rc >= 0) return rc;
  if (f.files.empty()) return BadUsage("apply: -f FILE|DIR|- is required", kApplyUsage);
  if (!f.positional.empty())
    return BadUsage("apply: unexpected \"" + f.positional[0] + "\"", kApplyUsage);
  std::vector<std::pair<std::string, std::string>> sources;
  std::string err;
  if (!ReadSources(f.files, &sources, &err)) return Fail(err);
  // Validate everything before writing anything.
  std::vector<mesh::Manifest> manifests;
  for (const auto& [src, text] : sources) {
    auto r = mesh::ParseManifests(text);
    if (!r.ok()) return Fail(src + ": " + r.status().message());
    for (auto& m : r.value()) manifests.push_back(std::move(m));
  }
  if (manifests.empty()) return Fail("apply: no manifests found");
  return ApplyManifests(ServerAddress(f.server), manifests, stdout);
}

int ApplyManifests(const std::string& server, const std::vector<mesh::Manifest>& manifests,
                   std::FILE* out) {
  http::Client c(server, ApiClientOptions());
  int failures = 0;
  for (const auto& m : manifests) {
    std::string target = "/v1/config/" + m.kind + "/" + http::PercentEncode(m.name) +
                         "?ns=" + http::PercentEncode(m.ns);
    auto r = c.Do("PUT", target, mesh::ToJson(m), {{"content-type", "application/json"}});
    if (!r.ok()) return Fail("apply: " + r.status().message());
    if (r->status != 200) {
      std::fprintf(stderr, "%s %s/%s: %s\n", m.kind.c_str(), m.ns.c_str(), m.name.c_str(),
                   ApiError(r.value()).c_str());
      ++failures;
      continue;
    }
    json j = json::parse(r->body, nullptr, false);
    std::string result =
        j.is_object() && j.contains("Result") ? j["Result"].get<std::string>() : "?";
    if (out)
      std::fprintf(out, "%s %s/%s %s\n", m.kind.c_str(), m.ns.c_str(), m.name.c_str(),
                   result.c_str());
  }
  return failures ? 1 : 0;
}

}  // namespace weft::cli
