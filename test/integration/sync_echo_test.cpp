#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/logger.hpp"
#include "support/check.hpp"

namespace {

/// The "(123µs)" elapsed time that ends an echo line, or -1.
long long elapsed_micros(const std::string& line) {
    const std::string suffix = "µs)";
    if (line.size() < suffix.size() ||
        line.compare(line.size() - suffix.size(), suffix.size(), suffix) != 0) {
        return -1;
    }
    const auto open = line.rfind('(');
    if (open == std::string::npos) {
        return -1;
    }
    const std::string digits = line.substr(open + 1, line.size() - suffix.size() - open - 1);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
        return -1;
    }
    return std::stoll(digits);
}

using namespace std::chrono;
using asqlite::connection;
using asqlite::log_level;
using asqlite::test::contains;

class Echo : public ::testing::Test {
  protected:
    Echo() {
        log.set_sink([this](log_level l, std::string_view m) {
            levels.push_back(l);
            lines.emplace_back(m);
        });
    }
    connection open(bool echo = true) {
        asqlite::connection_options o;
        o.echo = echo;
        o.log = &log;
        return connection(":memory:", o);
    }

    asqlite::logger log;
    std::vector<std::string> lines;
    std::vector<log_level> levels;
};

TEST_F(Echo, LogsStatementParametersAndTime) {
    auto c = open();
    EXPECT_TRUE(c.echo());
    c.execute("SELECT ?, ?, ?", 42, "hello", nullptr);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(levels[0], log_level::info);
    const std::string& line = lines[0];
    EXPECT_TRUE(contains(line, "SELECT ?, ?, ?"));
    EXPECT_TRUE(contains(line, "[42, 'hello', NULL]"));
    // Elapsed time in microseconds at the end.
    EXPECT_GE(elapsed_micros(line), 0) << line;
}

TEST_F(Echo, EveryParameterKind) {
    auto c = open();
    const asqlite::timestamp t = sys_days{2024y / March / 5} + 13h + 4min + 5s;
    c.execute("SELECT ?, ?, ?, ?, ?, ?", true, 2.5, std::optional<int>{}, std::optional<int>{7},
              asqlite::blob(3), t);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(contains(lines[0], "[1, 2.5, NULL, 7, <blob 3 bytes>, '2024-03-05 13:04:05']"));
}

TEST_F(Echo, LongTextIsTruncated) {
    auto c = open();
    const std::string long_text(500, 'x');
    c.execute("SELECT length(?)", long_text);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(contains(lines[0], "'" + std::string(64, 'x') + "…' (500 bytes)"));
    EXPECT_FALSE(contains(lines[0], std::string(65, 'x')));
}

TEST_F(Echo, TruncationNeverSplitsAUtf8Character) {
    auto c = open();
    // 63 ASCII bytes, then 'é' (2 bytes) straddling the 64-byte cut.
    const std::string text = std::string(63, 'a') + "\xc3\xa9" + std::string(100, 'b');
    c.execute("SELECT length(?)", text);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(contains(lines[0], "'" + std::string(63, 'a') + "…' (165 bytes)")) << lines[0];
    EXPECT_FALSE(contains(lines[0], "\xc3'")) << "half a character was logged";
}

TEST_F(Echo, EveryHelperAndScriptStatementIsLogged) {
    auto c = open();
    c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_TRUE(contains(lines[0], "CREATE TABLE t(x);"));
    EXPECT_TRUE(contains(lines[1], "INSERT INTO t VALUES (1);"));
    (void)c.query<int>("SELECT x FROM t WHERE x = ?", 1);
    (void)c.one<int>("SELECT x FROM t");
    (void)c.one_or_none<int>("SELECT x FROM t WHERE x = ?", 5);
    (void)c.scalar<int>("SELECT count(*) FROM t");
    ASSERT_EQ(lines.size(), 6u);
    EXPECT_TRUE(contains(lines[2], "SELECT x FROM t WHERE x = ? [1]"));
    EXPECT_TRUE(contains(lines[4], "[5]"));
    EXPECT_TRUE(contains(lines[5], "SELECT count(*) FROM t []"));
}

TEST_F(Echo, FailuresAreLoggedWithTheError) {
    auto c = open();
    EXPECT_THROW(c.execute("SELECT * FROM nosuch WHERE x = ?", 3), asqlite::error);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_TRUE(contains(lines[0], "SELECT * FROM nosuch WHERE x = ? [3] failed after"));
    EXPECT_TRUE(contains(lines[0], "no such table: nosuch"));
}

TEST_F(Echo, OffLogsNothing) {
    auto c = open(false);
    c.execute("SELECT 1");
    c.exec("CREATE TABLE t(x)");
    EXPECT_TRUE(lines.empty());
    c.set_echo(true);
    c.execute("SELECT 2");
    EXPECT_EQ(lines.size(), 1u);
    c.set_echo(false);
    c.execute("SELECT 3");
    EXPECT_EQ(lines.size(), 1u);
}

TEST_F(Echo, LoggerLevelAboveInfoSilencesEcho) {
    auto c = open();
    log.set_level(log_level::warn);
    c.execute("SELECT 1");
    EXPECT_TRUE(lines.empty());
}

TEST_F(Echo, ElapsedTimeReflectsTheWork) {
    auto c = open();
    // A recursive CTE that takes measurable time.
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
        "SELECT sum(i) FROM n");
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_GT(elapsed_micros(lines[0]), 100) << lines[0];
}

}  // namespace
