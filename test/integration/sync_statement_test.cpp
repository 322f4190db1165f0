#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "asqlite/connection.hpp"
#include "support/check.hpp"

namespace {

using namespace std::chrono;
using asqlite::connection;
using asqlite::errc;
using asqlite::statement;
using asqlite::test::catch_error;
using asqlite::test::contains;
using asqlite::test::fails_with;

class Statement : public ::testing::Test {
  protected:
    connection c{":memory:"};

    /// Binds `v` as the only parameter of "SELECT typeof(?1), quote(?1)".
    template <class T>
    std::pair<std::string, std::string> round(const T& v) {
        auto s = c.prepare("SELECT typeof(?1), quote(?1)");
        s.bind(0, v);
        EXPECT_TRUE(s.step());
        return {s.get<std::string>(0), s.get<std::string>(1)};
    }
};

TEST_F(Statement, BindsByZeroBasedPosition) {
    auto s = c.prepare("SELECT ?, ?, ?");
    EXPECT_EQ(s.parameter_count(), 3);
    s.bind(0, 1).bind(1, "two").bind(2, 3.5);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<int>(0), 1);
    EXPECT_EQ(s.get<std::string>(1), "two");
    EXPECT_EQ(s.get<double>(2), 3.5);
    EXPECT_FALSE(s.step());
}

TEST_F(Statement, NumberedParametersAreOneBasedInSqlZeroBasedInBind) {
    auto s = c.prepare("SELECT ?2, ?1");
    s.bind(0, "first").bind(1, "second");
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<std::string>(0), "second");
    EXPECT_EQ(s.get<std::string>(1), "first");
}

TEST_F(Statement, BindsByNameWithOrWithoutPrefix) {
    auto s = c.prepare("SELECT :x, @y, $z, :w");
    EXPECT_EQ(s.parameter_index(":x"), 0);
    EXPECT_EQ(s.parameter_index("x"), 0);
    EXPECT_EQ(s.parameter_index("@y"), 1);
    EXPECT_EQ(s.parameter_index("y"), 1);
    EXPECT_EQ(s.parameter_index("$z"), 2);
    EXPECT_EQ(s.parameter_index("z"), 2);
    s.bind(":x", 1).bind("y", 2).bind("$z", 3).bind("w", 4);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<int>(0), 1);
    EXPECT_EQ(s.get<int>(1), 2);
    EXPECT_EQ(s.get<int>(2), 3);
    EXPECT_EQ(s.get<int>(3), 4);
}

TEST_F(Statement, RepeatedNameIsOneParameter) {
    auto s = c.prepare("SELECT :v + :v");
    EXPECT_EQ(s.parameter_count(), 1);
    s.bind("v", 21);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<int>(0), 42);
}

TEST_F(Statement, UnknownParameterName) {
    auto s = c.prepare("SELECT :x");
    auto e = catch_error([&] { s.bind("nope", 1); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::unknown_parameter);
    EXPECT_TRUE(contains(e->message(), "'nope'"));
    EXPECT_EQ(e->sql(), "SELECT :x");
    // A prefix is part of the name: @x is not :x.
    EXPECT_TRUE(fails_with([&] { s.bind("@x", 1); }, errc::unknown_parameter, {"'@x'"}));
    EXPECT_TRUE(fails_with([&] { (void)s.parameter_index(""); }, errc::unknown_parameter, {}));
}

TEST_F(Statement, BindIndexOutOfRange) {
    auto s = c.prepare("SELECT ?, ?");
    auto e = catch_error([&] { s.bind(2, 1); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::bind_out_of_range);
    EXPECT_TRUE(contains(e->message(), "bind index 2"));
    EXPECT_TRUE(contains(e->message(), "2 parameters"));
    EXPECT_EQ(e->sql(), "SELECT ?, ?");
    EXPECT_TRUE(fails_with([&] { s.bind(-1, 1); }, errc::bind_out_of_range, {"bind index -1"}));
    EXPECT_TRUE(fails_with([&] { s.bind(5, "x"); }, errc::bind_out_of_range, {"bind index 5"}));
    EXPECT_TRUE(fails_with([&] { s.bind(2, nullptr); }, errc::bind_out_of_range, {"2"}));
    auto none = c.prepare("SELECT 1");
    EXPECT_TRUE(fails_with([&] { none.bind(0, 1); }, errc::bind_out_of_range,
                           {"bind index 0", "0 parameters"}));
}

TEST_F(Statement, WrongParameterCount) {
    auto e = catch_error([&] { c.execute("SELECT ?", 1, 2); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::parameter_count_mismatch);
    EXPECT_TRUE(contains(e->message(), "takes 1 parameters, 2 given"));
    EXPECT_EQ(e->sql(), "SELECT ?");
    EXPECT_TRUE(fails_with([&] { c.execute("SELECT ?, ?", 1); }, errc::parameter_count_mismatch,
                           {"takes 2 parameters, 1 given"}));
    EXPECT_TRUE(fails_with([&] { c.query<int>("SELECT :a"); }, errc::parameter_count_mismatch,
                           {"takes 1 parameters, 0 given"}));
    EXPECT_TRUE(fails_with([&] { c.scalar<int>("SELECT 1", 5); }, errc::parameter_count_mismatch,
                           {"takes 0 parameters, 1 given"}));
}

TEST_F(Statement, InvalidSql) {
    auto e = catch_error([&] { c.execute("SELEKT 1"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::error);
    EXPECT_TRUE(contains(e->message(), "syntax error"));
    EXPECT_EQ(e->sql(), "SELEKT 1");
    EXPECT_TRUE(contains(e->what(), "SELEKT 1"));

    e = catch_error([&] { (void)c.prepare("SELECT * FROM nosuch"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::error);
    EXPECT_TRUE(contains(e->message(), "no such table: nosuch"));
    EXPECT_EQ(e->sql(), "SELECT * FROM nosuch");

    EXPECT_TRUE(fails_with([&] { c.execute("SELECT nosuchcol FROM (SELECT 1 AS a)"); }, errc::error,
                           {"no such column: nosuchcol"}));
}

TEST_F(Statement, TwoStatementsAreMisuse) {
    auto e = catch_error([&] { c.execute("SELECT 1; SELECT 2"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::misuse);
    EXPECT_TRUE(contains(e->message(), "more than one statement"));
    EXPECT_EQ(e->sql(), "SELECT 1; SELECT 2");
    c.exec("CREATE TABLE t(x)");
    EXPECT_TRUE(fails_with([&] { c.execute("INSERT INTO t VALUES (1);INSERT INTO t VALUES (2)"); },
                           errc::misuse, {"more than one statement"}));
    // Nothing ran.
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 0);
}

TEST_F(Statement, TrailingSemicolonsAndCommentsAreFine) {
    EXPECT_EQ(c.scalar<int>("SELECT 1;"), 1);
    EXPECT_EQ(c.scalar<int>("SELECT 2; -- trailing comment"), 2);
    EXPECT_EQ(c.scalar<int>("SELECT 3;;  /* block */ \n"), 3);
}

TEST_F(Statement, EmptySqlIsMisuse) {
    EXPECT_TRUE(fails_with([&] { c.execute(""); }, errc::misuse, {"no statement"}));
    EXPECT_TRUE(fails_with([&] { c.execute("  -- nothing\n"); }, errc::misuse, {"no statement"}));
}

TEST_F(Statement, BindsNull) {
    EXPECT_EQ(round(nullptr).first, "null");
    EXPECT_EQ(round(std::nullopt).first, "null");
    EXPECT_EQ(round(std::optional<int>{}).first, "null");
    EXPECT_EQ(round(std::optional<std::string>{}).first, "null");
}

TEST_F(Statement, BindsBool) {
    EXPECT_EQ(round(true), std::make_pair(std::string("integer"), std::string("1")));
    EXPECT_EQ(round(false), std::make_pair(std::string("integer"), std::string("0")));
}

TEST_F(Statement, BindsEveryIntegerType) {
    using p = std::pair<std::string, std::string>;
    EXPECT_EQ(round(std::int8_t{-128}), p("integer", "-128"));
    EXPECT_EQ(round(std::uint8_t{255}), p("integer", "255"));
    EXPECT_EQ(round(std::int16_t{-32768}), p("integer", "-32768"));
    EXPECT_EQ(round(std::uint16_t{65535}), p("integer", "65535"));
    EXPECT_EQ(round(std::numeric_limits<std::int32_t>::min()), p("integer", "-2147483648"));
    EXPECT_EQ(round(std::numeric_limits<std::uint32_t>::max()), p("integer", "4294967295"));
    EXPECT_EQ(round(std::numeric_limits<std::int64_t>::min()),
              p("integer", "-9223372036854775808"));
    EXPECT_EQ(round(std::numeric_limits<std::int64_t>::max()), p("integer", "9223372036854775807"));
    EXPECT_EQ(round(std::uint64_t{9223372036854775807ULL}), p("integer", "9223372036854775807"));
    EXPECT_EQ(round(static_cast<short>(-7)), p("integer", "-7"));
    EXPECT_EQ(round(123L), p("integer", "123"));
    EXPECT_EQ(round(456ULL), p("integer", "456"));
    EXPECT_EQ(round(std::size_t{789}), p("integer", "789"));
}

TEST_F(Statement, UnsignedAboveInt64MaxIsOutOfRange) {
    auto s = c.prepare("SELECT ?");
    const std::uint64_t too_big = 9223372036854775808ULL;
    auto e = catch_error([&] { s.bind(0, too_big); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::value_out_of_range);
    EXPECT_TRUE(contains(e->message(), "9223372036854775808"));
    EXPECT_TRUE(contains(e->message(), "parameter 0"));
    EXPECT_EQ(e->sql(), "SELECT ?");
    EXPECT_TRUE(fails_with([&] { s.bind(0, std::numeric_limits<std::uint64_t>::max()); },
                           errc::value_out_of_range, {"18446744073709551615"}));
    EXPECT_TRUE(fails_with([&] { c.execute("SELECT ?", std::optional<std::uint64_t>(too_big)); },
                           errc::value_out_of_range, {"9223372036854775808"}));
}

TEST_F(Statement, BindsEnumsAsTheirValue) {
    enum class color : std::uint8_t { red = 2, blue = 7 };
    EXPECT_EQ(round(color::blue), std::make_pair(std::string("integer"), std::string("7")));
    c.exec("CREATE TABLE t(c INTEGER)");
    c.execute("INSERT INTO t VALUES (?)", color::red);
    EXPECT_EQ(c.scalar<color>("SELECT c FROM t"), color::red);
}

TEST_F(Statement, BindsFloatingPoint) {
    EXPECT_EQ(round(3.25), std::make_pair(std::string("real"), std::string("3.25")));
    EXPECT_EQ(round(1.5f), std::make_pair(std::string("real"), std::string("1.5")));
    EXPECT_EQ(round(-1e300).first, "real");
    auto s = c.prepare("SELECT ?");
    s.bind(0, 0.1);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<double>(0), 0.1);  // bit-exact round trip
}

TEST_F(Statement, BindsText) {
    using p = std::pair<std::string, std::string>;
    const std::string str = "it's";
    const std::string_view view = std::string_view("abcdef").substr(1, 3);
    const char* cstr = "c-string";
    EXPECT_EQ(round(str), p("text", "'it''s'"));
    EXPECT_EQ(round(view), p("text", "'bcd'"));  // only the view's range, no NUL needed
    EXPECT_EQ(round(cstr), p("text", "'c-string'"));
    EXPECT_EQ(round("literal"), p("text", "'literal'"));
    EXPECT_EQ(round(std::string()), p("text", "''"));
    EXPECT_EQ(round(std::string_view()), p("text", "''"));  // null data(): still text, not NULL
    EXPECT_EQ(c.scalar<std::string>("SELECT typeof(?)", std::string_view()), "text");
    EXPECT_EQ(round(std::string("h\xC3\xA9llo")), p("text", "'h\xC3\xA9llo'"));
}

// bind() copies: what the caller does to its string afterwards does not
// reach the statement. bind_all_borrowed() reads the caller's bytes when the
// statement runs (SQLITE_STATIC), which is its documented contract.
TEST_F(Statement, BindCopiesTextAndBlobsBindAllBorrowedDoesNot) {
    std::string text = "abc";
    std::vector<std::byte> bytes = {std::byte{1}, std::byte{2}};
    auto copied = c.prepare("SELECT ?1, quote(?2)");
    copied.bind(0, text).bind(1, bytes);
    auto borrowed = c.prepare("SELECT ?1, quote(?2)");
    borrowed.bind_all_borrowed(text, bytes);
    text[0] = 'X';
    bytes[0] = std::byte{0xEE};
    ASSERT_TRUE(copied.step());
    EXPECT_EQ(copied.get<std::string>(0), "abc");
    EXPECT_EQ(copied.get<std::string>(1), "X'0102'");
    ASSERT_TRUE(borrowed.step());
    EXPECT_EQ(borrowed.get<std::string>(0), "Xbc");
    EXPECT_EQ(borrowed.get<std::string>(1), "X'EE02'");
}

TEST_F(Statement, BindAllBorrowedCopiesTimestampsAndChecksTheCount) {
    const asqlite::timestamp t = sys_days{2024y / March / 5} + 13h;
    auto s = c.prepare("SELECT ?1");
    s.bind_all_borrowed(t);  // formatted into a temporary: copied, never borrowed
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<std::string>(0), "2024-03-05 13:00:00");
    EXPECT_TRUE(fails_with([&] { c.prepare("SELECT ?1, ?2").bind_all_borrowed(1); },
                           make_error_code(errc::parameter_count_mismatch), {"2 parameters"}));
}

TEST_F(Statement, TextKeepsEmbeddedNul) {
    const std::string with_nul("a\0b", 3);
    auto s = c.prepare("SELECT length(CAST(?1 AS BLOB)), ?1");
    s.bind(0, with_nul);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<int>(0), 3);
    EXPECT_EQ(s.get<std::string>(1), with_nul);
}

TEST_F(Statement, BindsBlobs) {
    const std::vector<std::byte> bytes = {std::byte{0x00}, std::byte{0xAB}, std::byte{0xFF}};
    using p = std::pair<std::string, std::string>;
    EXPECT_EQ(round(bytes), p("blob", "X'00ABFF'"));
    EXPECT_EQ(round(std::span<const std::byte>(bytes).subspan(1)), p("blob", "X'ABFF'"));
    const std::array<std::byte, 2> arr = {std::byte{1}, std::byte{2}};
    EXPECT_EQ(round(std::span<const std::byte>(arr)), p("blob", "X'0102'"));
    EXPECT_EQ(round(std::optional<asqlite::blob>(bytes)), p("blob", "X'00ABFF'"));
}

TEST_F(Statement, EmptyBlobIsNotNull) {
    EXPECT_EQ(round(std::vector<std::byte>{}),
              std::make_pair(std::string("blob"), std::string("X''")));
    EXPECT_EQ(round(std::span<const std::byte>{}).first, "blob");
}

TEST_F(Statement, BlobRoundTrip) {
    std::vector<std::byte> data(1000);
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] = static_cast<std::byte>(i * 7);
    }
    c.exec("CREATE TABLE t(b BLOB)");
    c.execute("INSERT INTO t VALUES (?)", data);
    EXPECT_EQ(c.scalar<asqlite::blob>("SELECT b FROM t"), data);
    EXPECT_EQ(c.scalar<int>("SELECT length(b) FROM t"), 1000);
}

TEST_F(Statement, BindsOptionalsWithValues) {
    EXPECT_EQ(round(std::optional<int>(5)),
              std::make_pair(std::string("integer"), std::string("5")));
    EXPECT_EQ(round(std::optional<std::string>("x")),
              std::make_pair(std::string("text"), std::string("'x'")));
    EXPECT_EQ(round(std::optional<double>(0.5)).first, "real");
}

TEST_F(Statement, BindsDynamicValues) {
    using asqlite::value;
    EXPECT_EQ(round(value{}).first, "null");
    EXPECT_EQ(round(value{std::int64_t{9}}).second, "9");
    EXPECT_EQ(round(value{2.5}).first, "real");
    EXPECT_EQ(round(value{std::string("s")}).second, "'s'");
    EXPECT_EQ(round(value{asqlite::blob{std::byte{0x10}}}).second, "X'10'");
}

TEST_F(Statement, TimestampIsBoundAsCurrentTimestampText) {
    const asqlite::timestamp t = sys_days{2024y / March / 5} + 13h + 4min + 5s;
    EXPECT_EQ(round(t), std::make_pair(std::string("text"), std::string("'2024-03-05 13:04:05'")));
    // Same shape as what SQLite itself writes, so comparisons with
    // CURRENT_TIMESTAMP and date functions work.
    auto s = c.prepare(
        "SELECT ?1 = datetime(?1), ?1 < CURRENT_TIMESTAMP, length(CURRENT_TIMESTAMP), "
        "CURRENT_TIMESTAMP GLOB "
        "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]'");
    s.bind(0, t);
    ASSERT_TRUE(s.step());
    EXPECT_TRUE(s.get<bool>(0));
    EXPECT_TRUE(s.get<bool>(1));
    EXPECT_EQ(s.get<int>(2), 19);
    EXPECT_TRUE(s.get<bool>(3));
}

TEST_F(Statement, TimestampWithFractionIsUnderstoodBySqlite) {
    const asqlite::timestamp t = sys_days{2024y / March / 5} + 13h + 4min + 5s + 250ms;
    auto s = c.prepare("SELECT ?1, strftime('%f', ?1), julianday(?1) IS NOT NULL");
    s.bind(0, t);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<std::string>(0), "2024-03-05 13:04:05.250000");
    EXPECT_EQ(s.get<std::string>(1), "05.250");
    EXPECT_TRUE(s.get<bool>(2));
    EXPECT_EQ(s.get<asqlite::timestamp>(0), t);
}

TEST_F(Statement, CurrentTimestampParsesBack) {
    const auto before = floor<seconds>(system_clock::now());
    const auto now = c.scalar<asqlite::timestamp>("SELECT CURRENT_TIMESTAMP");
    const auto after = system_clock::now();
    EXPECT_GE(now, before - 1s);
    EXPECT_LE(now, after + 1s);
    EXPECT_EQ(c.scalar<asqlite::timestamp>("SELECT datetime('2024-03-05T13:04:05+02:00')"),
              sys_days{2024y / March / 5} + 11h + 4min + 5s);
}

TEST_F(Statement, TimestampRoundTripThroughATable) {
    c.exec("CREATE TABLE t(ts DATETIME)");
    const asqlite::timestamp t = floor<microseconds>(system_clock::now());
    c.execute("INSERT INTO t VALUES (?)", t);
    EXPECT_EQ(c.scalar<asqlite::timestamp>("SELECT ts FROM t"), t);
    EXPECT_EQ(c.scalar<std::optional<asqlite::timestamp>>("SELECT NULL"), std::nullopt);
}

TEST_F(Statement, StepResetAndClearBindings) {
    c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);");
    auto s = c.prepare("SELECT x FROM t WHERE x >= ? ORDER BY x");
    s.bind(0, 2);
    std::vector<int> got;
    while (s.step()) {
        got.push_back(s.get<int>(0));
    }
    EXPECT_EQ(got, (std::vector<int>{2, 3}));
    s.reset();  // bindings kept
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<int>(0), 2);
    s.reset();
    s.clear_bindings();  // x >= NULL matches nothing
    EXPECT_FALSE(s.step());
}

TEST_F(Statement, ColumnMetadata) {
    auto s = c.prepare("SELECT 1 AS i, 2.5 AS r, 'x' AS t, x'00' AS b, NULL AS n");
    EXPECT_EQ(s.column_count(), 5);
    EXPECT_EQ(s.column_name(0), "i");
    EXPECT_EQ(s.column_name(4), "n");
    EXPECT_EQ(s.column_index("t"), 2);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.column_type(0), asqlite::value_type::integer);
    EXPECT_EQ(s.column_type(1), asqlite::value_type::real);
    EXPECT_EQ(s.column_type(2), asqlite::value_type::text);
    EXPECT_EQ(s.column_type(3), asqlite::value_type::blob);
    EXPECT_EQ(s.column_type(4), asqlite::value_type::null);
    EXPECT_EQ(s.get<int>("i"), 1);
    EXPECT_EQ(s.get<std::string>("t"), "x");
    EXPECT_TRUE(s.readonly());
    EXPECT_EQ(s.sql(), "SELECT 1 AS i, 2.5 AS r, 'x' AS t, x'00' AS b, NULL AS n");
    EXPECT_TRUE(
        fails_with([&] { (void)s.column_index("nosuch"); }, errc::column_not_found, {"'nosuch'"}));
    EXPECT_TRUE(
        fails_with([&] { (void)s.get<int>("nosuch"); }, errc::column_not_found, {"'nosuch'"}));
    EXPECT_TRUE(fails_with([&] { (void)s.get<int>(5); }, errc::column_not_found,
                           {"column index 5", "5 columns"}));
    EXPECT_TRUE(
        fails_with([&] { (void)s.get<int>(-1); }, errc::column_not_found, {"column index -1"}));
}

TEST_F(Statement, LiveRowConversionsAreChecked) {
    auto s = c.prepare("SELECT 300 AS big, 'abc' AS word, NULL AS nil_col");
    ASSERT_TRUE(s.step());
    EXPECT_TRUE(fails_with([&] { (void)s.get<std::int8_t>(0); }, errc::value_out_of_range,
                           {"'big'", "300"}));
    EXPECT_TRUE(fails_with([&] { (void)s.get<int>(1); }, errc::type_mismatch, {"'word'", "TEXT"}));
    EXPECT_TRUE(
        fails_with([&] { (void)s.get<int>("nil_col"); }, errc::null_value, {"'nil_col'", "NULL"}));
    EXPECT_EQ(s.get<std::optional<int>>(2), std::nullopt);
}

TEST_F(Statement, WriteStatementIsNotReadonly) {
    c.exec("CREATE TABLE t(x)");
    auto s = c.prepare("INSERT INTO t VALUES (1)");
    EXPECT_FALSE(s.readonly());
    EXPECT_FALSE(s.step());
    EXPECT_EQ(c.changes(), 1);
}

TEST_F(Statement, StepErrorCarriesSql) {
    c.exec("CREATE TABLE t(x NOT NULL)");
    auto s = c.prepare("INSERT INTO t VALUES (?)");
    s.bind(0, nullptr);
    auto e = catch_error([&] { s.step(); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::constraint_notnull);
    EXPECT_EQ(asqlite::primary_code(e->code()), errc::constraint);
    EXPECT_TRUE(contains(e->message(), "NOT NULL constraint failed: t.x"));
    EXPECT_EQ(e->sql(), "INSERT INTO t VALUES (?)");
}

TEST_F(Statement, MoveTransfersOwnership) {
    auto a = c.prepare("SELECT 7");
    statement b(std::move(a));
    EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move)
    EXPECT_TRUE(b.valid());
    statement d;
    EXPECT_FALSE(d.valid());
    d = std::move(b);
    ASSERT_TRUE(d.step());
    EXPECT_EQ(d.get<int>(0), 7);
}

TEST_F(Statement, BindAllChecksTheCount) {
    auto s = c.prepare("SELECT ? + ?");
    s.bind_all(40, 2);
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.get<int>(0), 42);
    s.reset();
    EXPECT_TRUE(fails_with([&] { s.bind_all(1); }, errc::parameter_count_mismatch,
                           {"takes 2 parameters, 1 given"}));
}

}  // namespace
