// Picks the store implementation from the server's flags.
#pragma once

#include <memory>
#include <string>

#include "control/store/store.h"

namespace weft::control::store {

// How a server reaches etcd beyond its URL: files read at start.
struct EtcdAccess {
  std::string ca_file, cert_file, key_file;  // etcds://: TLS (client certificate optional)
  std::string user, password_file;           // etcd's own auth
};

// `url` "" opens the embedded SQLite store under `data_dir` (created when
// missing); "etcd://host:port,..." connects to an etcd cluster in
// plaintext (with a warning), "etcds://host:port,..." over TLS.
Result<std::unique_ptr<Store>> OpenStore(const std::string& url, const std::string& data_dir,
                                         const EtcdAccess& etcd = {});

}  // namespace weft::control::store
