#include "base/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

namespace weft {
namespace {

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-file-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(FileTest, WriteFileAtomicReplacesWithTheModeAskedAndLeavesNoTemporary) {
  const std::string path = dir_ + "/state.json";
  const mode_t old = ::umask(0);  // a permissive umask must not widen the mode
  ASSERT_TRUE(WriteFileAtomic(path, "one").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "two, longer").ok());
  ::umask(old);
  std::string err;
  EXPECT_EQ(ReadWholeFile(path, &err), "two, longer") << err;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(WriteFileAtomic(path, "pub", 0644).ok());
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);  // no temporary left behind
}

TEST_F(FileTest, WriteFileAtomicFailureNamesThePathAndKeepsTheOldFile) {
  const std::string path = dir_ + "/missing/state.json";
  Status s = WriteFileAtomic(path, "x");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  std::string err;
  EXPECT_EQ(ReadWholeFile(dir_ + "/nothing", &err), "");
  EXPECT_NE(err.find("cannot read"), std::string::npos) << err;
}

}  // namespace
}  // namespace weft
