#include "base/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
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

Status SecureDataDir(const std::string& dir, const std::vector<std::string>& public_files,
                     std::vector<std::string>* fixed) {
  auto octal = [](mode_t m) {
    char b[8];
    std::snprintf(b, sizeof(b), "%04o", static_cast<unsigned>(m & 07777));
    return std::string(b);
  };
  // Each missing level is made 0700 (mkdir -p under a 077 umask).
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return Fail("creating", part);
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Fail("reading the mode of", dir);
  if (!S_ISDIR(st.st_mode)) return {StatusCode::kInvalidArgument, dir + ": not a directory"};
  if ((st.st_mode & 077) != 0) {
    if (::chmod(dir.c_str(), 0700) != 0) return Fail("setting the mode of", dir);
    fixed->push_back(dir + " was " + octal(st.st_mode));
  }
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Fail("listing", dir);
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (std::find(public_files.begin(), public_files.end(), name) != public_files.end()) continue;
    const std::string path = dir + "/" + name;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0)
      continue;
    if (::chmod(path.c_str(), 0600) == 0) fixed->push_back(path + " was " + octal(st.st_mode));
  }
  ::closedir(d);
  return {};
}

}  // namespace weft
