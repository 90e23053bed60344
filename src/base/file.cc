#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace weft {

std::string ReadWholeFile(const std::string& path, std::string* err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *err = path + ": cannot read: " + std::strerror(errno);
    return "";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

Status Fail(const std::string& what, const std::string& path) {
  return {StatusCode::kUnavailable, what + " " + path + ": " + std::strerror(errno)};
}

}  // namespace

Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return Fail("creating a temporary file for", path);
  auto fail = [&](const std::string& what) {
    Status s = Fail(what, tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  };
  if (::fchmod(fd, mode) != 0) return fail("setting the mode of");
  for (size_t off = 0; off < data.size();) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("writing");
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("syncing");
  if (::close(fd) != 0) {
    Status s = Fail("closing", tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = Fail("replacing", path);
    ::unlink(tmp.c_str());
    return s;
  }
  // The rename is durable once the directory entry is.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Fail("opening the directory of", path);
  const int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return Fail("syncing the directory of", path);
  return {};
}

}  // namespace weft
