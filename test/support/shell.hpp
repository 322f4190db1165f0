#pragma once
// Running a program through the shell in a test: quoting, and what it
// printed and returned.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace asqlite::test {

/// `s` as one single-quoted shell word.
inline std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char ch : s) {
        out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    }
    return out + "'";
}

/// The whole content of a file ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// A finished program: its exit status (-1 when it did not exit) and output.
struct run_result {
    int exit_code = -1;
    std::string out;
    std::string err;
};

}  // namespace asqlite::test
