// The dashboard's files (web/index.html, web/login.html, web/static/...),
// compiled into asflowd by cmake/EmbedFiles.cmake: the pages work offline
// and need nothing installed next to the binary.
#ifndef ASFLOW_SERVER_WEB_ASSETS_H_
#define ASFLOW_SERVER_WEB_ASSETS_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace asflow {

struct WebAsset {
  absl::string_view path;  // relative to web/, e.g. "static/app.js"
  absl::string_view content_type;
  absl::string_view data;
};

extern const WebAsset kWebAssets[];
extern const size_t kWebAssetCount;

// The file at `path` (relative to web/), or null.
inline const WebAsset* FindWebAsset(absl::string_view path) {
  for (size_t i = 0; i < kWebAssetCount; ++i) {
    if (kWebAssets[i].path == path) return &kWebAssets[i];
  }
  return nullptr;
}

}  // namespace asflow

#endif  // ASFLOW_SERVER_WEB_ASSETS_H_
