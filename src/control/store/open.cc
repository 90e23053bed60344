#include "control/store/open.h"

#include <filesystem>

#include "base/file.h"
#include "base/log.h"
#include "base/strings.h"
#include "control/store/etcd_store.h"
#include "control/store/sqlite_store.h"

namespace weft::control::store {

Result<std::unique_ptr<Store>> OpenStore(const std::string& url, const std::string& data_dir,
                                         const EtcdAccess& etcd) {
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
  EtcdOptions o;
  std::string err;
  auto read = [&](const std::string& path, const char* flag, std::string* out) {
    if (path.empty() || !err.empty()) return;
    *out = ReadWholeFile(path, &err);
    if (!err.empty()) err = std::string(flag) + ": " + err;
  };
  read(etcd.ca_file, "--etcd-ca", &o.ca_pem);
  read(etcd.cert_file, "--etcd-cert", &o.cert_pem);
  read(etcd.key_file, "--etcd-key", &o.key_pem);
  read(etcd.password_file, "--etcd-password-file", &o.password);
  if (!err.empty()) return Status(StatusCode::kInvalidArgument, err);
  o.password = std::string(TrimSpace(o.password));
  o.user = etcd.user;
  if (o.cert_pem.empty() != o.key_pem.empty())
    return Status(StatusCode::kInvalidArgument, "--etcd-cert and --etcd-key go together");
  if (o.user.empty() != etcd.password_file.empty())
    return Status(StatusCode::kInvalidArgument, "--etcd-user and --etcd-password-file go together");
  auto e = EtcdStore::Open(url, std::move(o));
  if (!e.ok()) return e.status();
  if (url.rfind("etcds://", 0) != 0)
    LOG_WARN(
        "etcd in plaintext ({}): the store's contents (encrypted CA keys, token hashes, the "
        "catalog) cross the network readable by anyone on the path; use etcds:// with "
        "--etcd-ca",
        url);
  if (etcd.user.empty())
    LOG_WARN(
        "etcd without its own auth: anyone who reaches etcd can change the mesh; use "
        "--etcd-user and --etcd-password-file");
  return std::unique_ptr<Store>(std::move(e).value());
}

}  // namespace weft::control::store
