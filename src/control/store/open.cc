#include "control/store/open.h"

#include <filesystem>

#include "control/store/etcd_store.h"
#include "control/store/sqlite_store.h"

namespace weft::control::store {

Result<std::unique_ptr<Store>> OpenStore(const std::string& url, const std::string& data_dir) {
  if (url.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(data_dir, ec);
    if (ec) return Status(StatusCode::kUnavailable, "--data-dir " + data_dir + ": " + ec.message());
    SqliteOptions o;
    o.path = data_dir + "/weft.db";
    auto s = SqliteStore::Open(o);
    if (!s.ok()) return s.status();
    return std::unique_ptr<Store>(std::move(s).value());
  }
  auto e = EtcdStore::Open(url);
  if (!e.ok()) return e.status();
  return std::unique_ptr<Store>(std::move(e).value());
}

}  // namespace weft::control::store
