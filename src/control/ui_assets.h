// The web dashboard's files (ui/ in the source tree), built into the binary
// by scripts/embed_assets.py: served at /ui/NAME with no build step or
// internet on the user's side.
#pragma once

#include <span>
#include <string_view>

namespace weft::control {

struct UiAsset {
  std::string_view name;  // "app.js"
  std::string_view content_type;
  std::string_view etag;  // quoted, from the content's SHA-256
  std::string_view body;
};
std::span<const UiAsset> UiAssets();

}  // namespace weft::control
