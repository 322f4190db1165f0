#pragma once
// Every test owns a fresh directory, removed afterwards, so ctest -j works
// and a failing test leaves nothing behind.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace asqlite::test {

class temp_dir {
  public:
    temp_dir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "asqlite-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

  private:
    std::filesystem::path path_;
};

/// Fixture base: `dir` is fresh for each test, `db_path` a database file in it.
class temp_dir_test : public ::testing::Test {
  protected:
    temp_dir dir;
    std::string db_path = dir.file("test.db");
};

}  // namespace asqlite::test
