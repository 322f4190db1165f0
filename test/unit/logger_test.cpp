#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/logger.hpp"
#include "support/check.hpp"

namespace {

using asqlite::log_level;
using asqlite::test::contains;

struct captured {
    std::vector<std::pair<log_level, std::string>> lines;
    asqlite::logger::sink_type sink() {
        return [this](log_level l, std::string_view m) { lines.emplace_back(l, std::string(m)); };
    }
};

TEST(Logger, DefaultLevelIsInfo) {
    asqlite::logger log;
    EXPECT_EQ(log.level(), log_level::info);
    EXPECT_FALSE(log.enabled(log_level::debug));
    EXPECT_TRUE(log.enabled(log_level::info));
    EXPECT_TRUE(log.enabled(log_level::error));
}

TEST(Logger, SinkReceivesFormattedMessages) {
    asqlite::logger log;
    captured out;
    log.set_sink(out.sink());
    log.log(log_level::warn, "{} + {} = {}", 1, 2, "three");
    ASSERT_EQ(out.lines.size(), 1u);
    EXPECT_EQ(out.lines[0].first, log_level::warn);
    EXPECT_EQ(out.lines[0].second, "1 + 2 = three");
}

TEST(Logger, LevelFiltersMessages) {
    asqlite::logger log;
    captured out;
    log.set_sink(out.sink());
    log.log(log_level::debug, "hidden");
    log.write(log_level::trace, "hidden too");
    log.set_level(log_level::warn);
    log.log(log_level::info, "hidden as well");
    log.log(log_level::error, "shown");
    log.set_level(log_level::off);
    log.log(log_level::error, "off means off");
    ASSERT_EQ(out.lines.size(), 1u);
    EXPECT_EQ(out.lines[0].second, "shown");
}

TEST(Logger, LevelNames) {
    EXPECT_EQ(asqlite::to_string(log_level::trace), "TRACE");
    EXPECT_EQ(asqlite::to_string(log_level::info), "INFO");
    EXPECT_EQ(asqlite::to_string(log_level::warn), "WARN");
    EXPECT_EQ(asqlite::to_string(log_level::error), "ERROR");
}

TEST(Logger, ParameterTextForEcho) {
    using asqlite::detail::param_text;
    EXPECT_EQ(param_text(nullptr), "NULL");
    EXPECT_EQ(param_text(std::nullopt), "NULL");
    EXPECT_EQ(param_text(std::optional<int>{}), "NULL");
    EXPECT_EQ(param_text(std::optional<int>{7}), "7");
    EXPECT_EQ(param_text(true), "1");
    EXPECT_EQ(param_text(-42), "-42");
    EXPECT_EQ(param_text(2.5), "2.5");
    EXPECT_EQ(param_text(std::string("hi")), "'hi'");
    EXPECT_EQ(param_text("lit"), "'lit'");
    EXPECT_EQ(param_text(std::vector<std::byte>(3)), "<blob 3 bytes>");
    const std::string text = param_text(std::string(100, 'x'));
    EXPECT_TRUE(contains(text, "'" + std::string(64, 'x') + "…'"));
    EXPECT_FALSE(contains(text, std::string(65, 'x')));
    EXPECT_TRUE(contains(text, "(100 bytes)"));
}

}  // namespace
