#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "asqlite/connection.hpp"
#include "support/check.hpp"

namespace {

using asqlite::connection;
using asqlite::errc;
using asqlite::test::catch_error;
using asqlite::test::contains;
using asqlite::test::fails_with;

class Query : public ::testing::Test {
  protected:
    void SetUp() override { c.exec("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2);"); }
    connection c{":memory:"};
};

TEST_F(Query, OneReturnsTheOnlyRow) {
    EXPECT_EQ(c.one<int>("SELECT x FROM t WHERE x = ?", 2), 2);
    using t = std::tuple<int, std::string>;
    EXPECT_EQ((c.one<t>("SELECT x, 'a' FROM t WHERE x = 1")), t(1, "a"));
}

TEST_F(Query, OneWithoutRows) {
    auto e = catch_error([&] { (void)c.one<int>("SELECT x FROM t WHERE x > ?", 5); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::no_rows);
    EXPECT_TRUE(contains(e->message(), "no rows"));
    EXPECT_EQ(e->sql(), "SELECT x FROM t WHERE x > ?");
}

TEST_F(Query, OneWithTooManyRows) {
    auto e = catch_error([&] { (void)c.one<int>("SELECT x FROM t"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::too_many_rows);
    EXPECT_TRUE(contains(e->message(), "more than one row"));
    EXPECT_EQ(e->sql(), "SELECT x FROM t");
}

TEST_F(Query, OneOrNone) {
    EXPECT_EQ(c.one_or_none<int>("SELECT x FROM t WHERE x = ?", 9), std::nullopt);
    EXPECT_EQ(c.one_or_none<int>("SELECT x FROM t WHERE x = ?", 1), 1);
    EXPECT_TRUE(fails_with([&] { (void)c.one_or_none<int>("SELECT x FROM t"); },
                           errc::too_many_rows, {"more than one row"}));
    // The cached statement was reset after the failure and is usable again.
    EXPECT_EQ(c.one_or_none<int>("SELECT x FROM t WHERE x = ?", 2), 2);
    EXPECT_EQ(c.query<int>("SELECT x FROM t"), (std::vector<int>{1, 2}));
}

TEST_F(Query, Scalar) {
    EXPECT_EQ(c.scalar<std::int64_t>("SELECT count(*) FROM t"), 2);
    EXPECT_EQ(c.scalar<int>("SELECT x FROM t ORDER BY x DESC"), 2);  // first row of many
    EXPECT_EQ(c.scalar<std::string>("SELECT 'a', 'b'"), "a");        // first column
    EXPECT_EQ(c.scalar<std::optional<int>>("SELECT x FROM t WHERE x > 5"), std::nullopt);
    EXPECT_EQ(c.scalar<std::optional<int>>("SELECT NULL"), std::nullopt);
    EXPECT_TRUE(fails_with([&] { (void)c.scalar<int>("SELECT x FROM t WHERE x > 5"); },
                           errc::no_rows, {"no rows"}));
    EXPECT_TRUE(
        fails_with([&] { (void)c.scalar<int>("SELECT NULL AS n"); }, errc::null_value, {"'n'"}));
    EXPECT_TRUE(
        fails_with([&] { (void)c.scalar<int>("SELECT 'x' AS s"); }, errc::type_mismatch, {"'s'"}));
}

TEST_F(Query, QueryReturnsEveryRow) {
    EXPECT_EQ(c.query<int>("SELECT x FROM t ORDER BY x"), (std::vector<int>{1, 2}));
    EXPECT_EQ(c.query<int>("SELECT x FROM t WHERE x > ?", 1), (std::vector<int>{2}));
    EXPECT_TRUE(c.query<int>("SELECT x FROM t WHERE x > ?", 9).empty());
}

TEST_F(Query, ErrorCodeOverloadOfExecute) {
    std::error_code ec = errc::busy;  // cleared on success
    const auto ok = c.execute(ec, "INSERT INTO t VALUES (?)", 3);
    EXPECT_FALSE(ec);
    EXPECT_EQ(ok.rows_affected(), 1);

    const auto bad = c.execute(ec, "SELEKT 1");
    EXPECT_EQ(ec, errc::error);
    EXPECT_TRUE(bad.empty());
    EXPECT_EQ(c.last_diagnostics().code, errc::error);
    EXPECT_TRUE(contains(c.last_diagnostics().message, "syntax error"));
    EXPECT_EQ(c.last_diagnostics().sql, "SELEKT 1");

    c.execute(ec, "SELECT ?", 1, 2);
    EXPECT_EQ(ec, errc::parameter_count_mismatch);
    EXPECT_TRUE(contains(c.last_diagnostics().message, "takes 1 parameters, 2 given"));
}

TEST_F(Query, ErrorCodeOverloadReportsConstraints) {
    c.exec("CREATE UNIQUE INDEX ux ON t(x)");
    std::error_code ec;
    c.execute(ec, "INSERT INTO t VALUES (?)", 1);
    EXPECT_EQ(ec, errc::constraint_unique);
    EXPECT_EQ(asqlite::primary_code(ec), errc::constraint);
    EXPECT_TRUE(contains(c.last_diagnostics().message, "UNIQUE constraint failed: t.x"));
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 2);
}

TEST_F(Query, ErrorCodeOverloadOfQuery) {
    std::error_code ec = errc::busy;
    EXPECT_EQ(c.query<int>(ec, "SELECT x FROM t ORDER BY x"), (std::vector<int>{1, 2}));
    EXPECT_FALSE(ec);

    const auto bad = c.query<std::string>(ec, "SELECT x AS number FROM t");
    EXPECT_EQ(ec, errc::type_mismatch);
    EXPECT_TRUE(bad.empty());
    EXPECT_TRUE(contains(c.last_diagnostics().message, "'number'"));

    c.query<int>(ec, "SELECT x FROM nosuch");
    EXPECT_EQ(ec, errc::error);
    EXPECT_TRUE(contains(c.last_diagnostics().message, "no such table: nosuch"));
    EXPECT_EQ(c.last_diagnostics().sql, "SELECT x FROM nosuch");
}

TEST_F(Query, DiagnosticsKeepTheLastFailure) {
    EXPECT_FALSE(c.last_diagnostics().code);
    std::error_code ec;
    c.execute(ec, "SELECT * FROM nosuch1");
    c.execute(ec, "SELECT 1");
    EXPECT_FALSE(ec);
    // A success does not erase what went wrong before.
    EXPECT_TRUE(contains(c.last_diagnostics().message, "nosuch1"));
    c.execute(ec, "SELECT * FROM nosuch2");
    EXPECT_TRUE(contains(c.last_diagnostics().message, "nosuch2"));
}

}  // namespace
