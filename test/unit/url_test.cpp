#include <gtest/gtest.h>

#include <string>

#include "asqlite/options.hpp"
#include "support/check.hpp"

namespace {

using asqlite::errc;
using asqlite::path_from_url;
using asqlite::test::fails_with;

TEST(Url, RelativePath) {
    EXPECT_EQ(path_from_url("sqlite:///rel.db"), "rel.db");
    EXPECT_EQ(path_from_url("sqlite:///data/autobots.db"), "data/autobots.db");
}

TEST(Url, AbsolutePath) {
    EXPECT_EQ(path_from_url("sqlite:////abs/path.db"), "/abs/path.db");
    EXPECT_EQ(path_from_url("sqlite:////tmp/x.db"), "/tmp/x.db");
}

TEST(Url, MemoryForms) {
    EXPECT_EQ(path_from_url("sqlite://"), ":memory:");
    EXPECT_EQ(path_from_url("sqlite:///"), ":memory:");
    EXPECT_EQ(path_from_url("sqlite:///:memory:"), ":memory:");
    EXPECT_EQ(path_from_url(":memory:"), ":memory:");
}

TEST(Url, DriverSuffixesAreSynonyms) {
    EXPECT_EQ(path_from_url("sqlite+aiosqlite:///x"), "x");
    EXPECT_EQ(path_from_url("sqlite+aiosqlite:////abs/x.db"), "/abs/x.db");
    EXPECT_EQ(path_from_url("sqlite+aiosqlite://"), ":memory:");
    EXPECT_EQ(path_from_url("sqlite+pysqlite:///y.db"), "y.db");
}

TEST(Url, PlainPathsPassThrough) {
    EXPECT_EQ(path_from_url("autobots.db"), "autobots.db");
    EXPECT_EQ(path_from_url("/var/lib/app/db.sqlite"), "/var/lib/app/db.sqlite");
    EXPECT_EQ(path_from_url("./relative/dir/x.db"), "./relative/dir/x.db");
    EXPECT_EQ(path_from_url("file:x.db?mode=ro"), "file:x.db?mode=ro");
}

TEST(Url, OtherSchemesAreRejected) {
    EXPECT_TRUE(fails_with([] { (void)path_from_url("postgres://user@host/db"); },
                           errc::invalid_url, {"postgres://user@host/db", "not an SQLite URL"}));
    EXPECT_TRUE(fails_with([] { (void)path_from_url("mysql://localhost/x"); }, errc::invalid_url,
                           {"mysql://localhost/x"}));
    EXPECT_TRUE(fails_with([] { (void)path_from_url("sqlite3:///x.db"); }, errc::invalid_url,
                           {"sqlite3:///x.db"}));
}

TEST(Url, HostPartIsRejected) {
    EXPECT_TRUE(fails_with([] { (void)path_from_url("sqlite://somehost/x.db"); }, errc::invalid_url,
                           {"sqlite://somehost/x.db", "host part"}));
}

TEST(Url, FromUrlKeepsOtherDefaults) {
    const auto o = asqlite::engine_options::from_url("sqlite:////data/app.db");
    EXPECT_EQ(o.path, "/data/app.db");
    EXPECT_EQ(o.pool_size, 10u);
    EXPECT_EQ(o.journal_mode, "wal");
}

TEST(Url, SqliteUrisPassThrough) {
    EXPECT_EQ(path_from_url("file:///abs.db?mode=ro"), "file:///abs.db?mode=ro");
    EXPECT_EQ(path_from_url("file:data.db?cache=shared"), "file:data.db?cache=shared");
}

}  // namespace
