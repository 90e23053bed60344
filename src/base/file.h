// Files on disk: the one reader and the one writer of whole files (state,
// caches, tokens, bundles).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace weft {

// A whole file's bytes; on failure "" and *err = "PATH: cannot read: REASON".
std::string ReadWholeFile(const std::string& path, std::string* err);

// Replaces `path` with `data` atomically and durably: written to a new
// temporary file beside it with `mode` (whatever the umask), fsynced,
// renamed over `path`, and the directory fsynced, so a crash at any point
// leaves either the old file or the new one, never a torn one. The
// temporary file is removed on failure. Unavailable names the step that
// failed.
Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0600);

// A data directory that only its owner may read: created 0700 when
// missing; when it exists, a looser mode on it becomes 0700 and on any file
// directly in it 0600, except the names in `public_files`. Each fix is
// appended to *fixed as "PATH was MODE" for the caller to warn about.
Status SecureDataDir(const std::string& dir, const std::vector<std::string>& public_files,
                     std::vector<std::string>* fixed);

}  // namespace weft
