#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstddef>
#include <string>
#include <tuple>
#include <vector>

#include "asqlite/connection.hpp"
#include "support/check.hpp"

namespace {

using asqlite::connection;
using asqlite::connection_options;

connection with_capacity(std::size_t n) {
    connection_options o;
    o.statement_cache_size = n;
    return connection(":memory:", o);
}

TEST(StatementCache, StartsEmpty) {
    connection c(":memory:");
    EXPECT_EQ(c.cache_size(), 0u);
    EXPECT_EQ(c.cache_hits(), 0u);
    EXPECT_EQ(c.cache_misses(), 0u);
}

TEST(StatementCache, SameSqlHitsDifferentSqlMisses) {
    connection c(":memory:");
    EXPECT_EQ(c.scalar<int>("SELECT ?", 1), 1);
    EXPECT_EQ(c.cache_misses(), 1u);
    EXPECT_EQ(c.cache_hits(), 0u);
    EXPECT_EQ(c.scalar<int>("SELECT ?", 2), 2);
    EXPECT_EQ(c.scalar<int>("SELECT ?", 3), 3);
    EXPECT_EQ(c.cache_hits(), 2u);
    EXPECT_EQ(c.cache_misses(), 1u);
    c.execute("SELECT 1 + ?", 1);
    EXPECT_EQ(c.cache_misses(), 2u);
    EXPECT_EQ(c.cache_size(), 2u);
    // The key is the exact text.
    c.execute("SELECT  ?", 1);
    EXPECT_EQ(c.cache_misses(), 3u);
    EXPECT_EQ(c.cache_size(), 3u);
}

TEST(StatementCache, EveryHelperUsesIt) {
    connection c(":memory:");
    const std::string sql = "SELECT 5";
    (void)c.execute(sql);
    (void)c.query<int>(sql);
    (void)c.one<int>(sql);
    (void)c.one_or_none<int>(sql);
    (void)c.scalar<int>(sql);
    EXPECT_EQ(c.cache_misses(), 1u);
    EXPECT_EQ(c.cache_hits(), 4u);
    EXPECT_EQ(c.cache_size(), 1u);
}

TEST(StatementCache, EvictsTheLeastRecentlyUsed) {
    auto c = with_capacity(2);
    (void)c.scalar<int>("SELECT 1");  // miss: [1]
    (void)c.scalar<int>("SELECT 2");  // miss: [2, 1]
    (void)c.scalar<int>("SELECT 1");  // hit:  [1, 2]
    EXPECT_EQ(c.cache_hits(), 1u);
    (void)c.scalar<int>("SELECT 3");  // miss, evicts 2: [3, 1]
    EXPECT_EQ(c.cache_size(), 2u);
    EXPECT_EQ(c.cache_misses(), 3u);
    (void)c.scalar<int>("SELECT 1");  // hit
    EXPECT_EQ(c.cache_hits(), 2u);
    (void)c.scalar<int>("SELECT 3");  // hit
    EXPECT_EQ(c.cache_hits(), 3u);
    (void)c.scalar<int>("SELECT 2");  // miss: it was evicted
    EXPECT_EQ(c.cache_misses(), 4u);
    EXPECT_EQ(c.cache_size(), 2u);
}

TEST(StatementCache, CapacityIsHonouredUnderChurn) {
    auto c = with_capacity(5);
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(c.scalar<int>("SELECT " + std::to_string(i)), i);
    }
    EXPECT_EQ(c.cache_size(), 5u);
    EXPECT_EQ(c.cache_misses(), 50u);
    for (int i = 45; i < 50; ++i) {
        (void)c.scalar<int>("SELECT " + std::to_string(i));
    }
    EXPECT_EQ(c.cache_hits(), 5u);
}

TEST(StatementCache, DefaultCapacityIsOneHundred) {
    connection c(":memory:");
    for (int i = 0; i < 150; ++i) {
        (void)c.scalar<int>("SELECT " + std::to_string(i));
    }
    EXPECT_EQ(c.cache_size(), 100u);
}

TEST(StatementCache, ZeroCapacityDisablesIt) {
    auto c = with_capacity(0);
    EXPECT_EQ(c.scalar<int>("SELECT 1"), 1);
    EXPECT_EQ(c.scalar<int>("SELECT 1"), 1);
    EXPECT_EQ(c.cache_size(), 0u);
    EXPECT_EQ(c.cache_hits(), 0u);
    EXPECT_EQ(c.cache_misses(), 2u);
}

TEST(StatementCache, LeaseResetsAndClearsBindings) {
    connection c(":memory:");
    {
        auto lease = c.prepare_cached("SELECT ?");
        lease->bind(0, 99);
        ASSERT_TRUE(lease->step());
        EXPECT_EQ(lease->get<int>(0), 99);
    }
    auto lease = c.prepare_cached("SELECT ?");
    EXPECT_EQ(c.cache_hits(), 1u);
    ASSERT_TRUE(lease->step());
    EXPECT_EQ(lease->get<std::optional<int>>(0), std::nullopt);  // binding cleared
}

// The connection's own calls bind their arguments without a copy: the lease
// must let go of them when it ends, before the caller's strings do. A
// binding left behind would point into freed memory (ASan reads it here).
TEST(StatementCache, TheConnectionsCallsLeaveNoBorrowedArgumentBehind) {
    connection c(":memory:");
    c.exec("CREATE TABLE t(s TEXT, b BLOB)");
    const std::string sql = "INSERT INTO t VALUES (?, ?)";
    {
        const std::string text(100, 'q');
        const std::vector<std::byte> bytes(50, std::byte{7});
        c.execute(sql, text, bytes);
    }
    EXPECT_EQ(c.scalar<std::string>("SELECT s FROM t"), std::string(100, 'q'));
    auto lease = c.prepare_cached(sql);
    EXPECT_EQ(c.cache_hits(), 1u);
    char* expanded = sqlite3_expanded_sql(lease->native_handle());
    ASSERT_NE(expanded, nullptr);
    const std::string shown(expanded);
    sqlite3_free(expanded);
    EXPECT_EQ(shown, "INSERT INTO t VALUES (NULL, NULL)");
}

TEST(StatementCache, NestedUseOfTheSameSql) {
    connection c(":memory:");
    c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);");
    const std::string sql = "SELECT x FROM t WHERE x >= ? ORDER BY x";
    (void)c.query<int>(sql, 0);  // now cached
    const auto misses = c.cache_misses();
    auto outer = c.prepare_cached(sql);
    outer->bind(0, 1);
    ASSERT_TRUE(outer->step());
    EXPECT_EQ(outer->get<int>(0), 1);
    // The cached statement is busy: the inner use gets a fresh one and does
    // not disturb the outer iteration.
    EXPECT_EQ(c.query<int>(sql, 2), (std::vector<int>{2, 3}));
    EXPECT_EQ(c.cache_misses(), misses + 1);
    ASSERT_TRUE(outer->step());
    EXPECT_EQ(outer->get<int>(0), 2);
    ASSERT_TRUE(outer->step());
    EXPECT_EQ(outer->get<int>(0), 3);
    EXPECT_FALSE(outer->step());
    EXPECT_EQ(c.cache_size(), 1u);
}

TEST(StatementCache, BusyStatementsAreNotEvicted) {
    auto c = with_capacity(1);
    c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);");
    auto held = c.prepare_cached("SELECT x FROM t ORDER BY x");
    ASSERT_TRUE(held->step());
    EXPECT_EQ(c.scalar<int>("SELECT 42"), 42);  // would evict the held one if it could
    EXPECT_EQ(c.scalar<int>("SELECT 43"), 43);
    EXPECT_EQ(held->get<int>(0), 1);
    ASSERT_TRUE(held->step());
    EXPECT_EQ(held->get<int>(0), 2);
}

TEST(StatementCache, ClearCache) {
    connection c(":memory:");
    (void)c.scalar<int>("SELECT 1");
    c.clear_cache();
    EXPECT_EQ(c.cache_size(), 0u);
    (void)c.scalar<int>("SELECT 1");
    EXPECT_EQ(c.cache_misses(), 2u);
}

TEST(StatementCache, CachedStatementSeesSchemaChanges) {
    connection c(":memory:");
    c.exec("CREATE TABLE t(a); INSERT INTO t VALUES (1);");
    EXPECT_EQ(c.execute("SELECT * FROM t").columns().size(), 1u);
    c.exec("ALTER TABLE t ADD COLUMN b DEFAULT 2");
    const auto r = c.execute("SELECT * FROM t");
    EXPECT_EQ(c.cache_hits(), 1u);
    EXPECT_EQ(r.columns(), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(r[0].get<int>("b"), 2);
}

TEST(StatementCache, CachedMappingFollowsADroppedColumn) {
    connection c(":memory:");
    c.exec("CREATE TABLE t(a, b, c); INSERT INTO t VALUES (1, 2, 3);");
    using three = std::tuple<int, int, int>;
    using two = std::tuple<int, int>;
    EXPECT_EQ(c.query<three>("SELECT * FROM t"), (std::vector<three>{{1, 2, 3}}));
    c.exec("ALTER TABLE t DROP COLUMN b");
    // The same cached text now yields two columns, a and c.
    EXPECT_EQ(c.query<two>("SELECT * FROM t"), (std::vector<two>{{1, 3}}));
    EXPECT_EQ(c.one_or_none<two>("SELECT * FROM t"), two(1, 3));
    EXPECT_EQ(c.execute("SELECT * FROM t").columns(), (std::vector<std::string>{"a", "c"}));
    EXPECT_GE(c.cache_hits(), 2u);
}

TEST(StatementCache, FailedStatementIsReusable) {
    connection c(":memory:");
    c.exec("CREATE TABLE t(x UNIQUE)");
    c.execute("INSERT INTO t VALUES (?)", 1);
    EXPECT_THROW(c.execute("INSERT INTO t VALUES (?)", 1), asqlite::error);
    c.execute("INSERT INTO t VALUES (?)", 2);
    EXPECT_EQ(c.cache_hits(), 2u);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 2);
}

TEST(StatementCache, PrepareBypassesIt) {
    connection c(":memory:");
    auto s = c.prepare("SELECT 1");
    EXPECT_EQ(c.cache_size(), 0u);
    EXPECT_EQ(c.cache_misses(), 0u);
}

}  // namespace
