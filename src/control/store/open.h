// Picks the store implementation from the server's flags.
#pragma once

#include <memory>
#include <string>

#include "control/store/store.h"

namespace weft::control::store {

// `url` "" opens the embedded SQLite store under `data_dir` (created when
// missing); "etcd://host:port,host:port" connects to an etcd cluster.
Result<std::unique_ptr<Store>> OpenStore(const std::string& url, const std::string& data_dir);

}  // namespace weft::control::store
