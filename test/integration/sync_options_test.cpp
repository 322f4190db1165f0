#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <ostream>
#include <string>

#include "asqlite/engine.hpp"
#include "asqlite/options.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace std::chrono_literals;
using asqlite::engine_options;
using asqlite::errc;
using asqlite::test::fails_with;
using asqlite::test::scoped_env;

/// Clears every variable from_env() reads for the test, restoring them after.
class Options : public ::testing::Test {
  protected:
    Options() {
        for (const auto& name : asqlite::test::engine_env_names()) {
            env.unset(name);
        }
    }
    scoped_env env;
};

TEST_F(Options, DefaultsMatchTheSeed) {
    const engine_options o;
    EXPECT_EQ(o.path, "autobots.db");
    EXPECT_EQ(o.pool_size, 10u);
    EXPECT_EQ(o.max_overflow, 0u);
    EXPECT_EQ(o.pool_timeout, 30s);
    EXPECT_EQ(o.pool_recycle, 3600s);
    EXPECT_FALSE(o.pre_ping);
    EXPECT_FALSE(o.echo.has_value());
    EXPECT_EQ(o.journal_mode, "wal");
    EXPECT_EQ(o.synchronous, "normal");
    EXPECT_TRUE(o.foreign_keys);
    EXPECT_EQ(o.busy_timeout, 5s);
    EXPECT_EQ(o.statement_cache_size, 100u);
    EXPECT_EQ(o.threads, 0u);
    EXPECT_EQ(o.completion_hold, 200us);
    EXPECT_EQ(o.spin_wait, 50us);
    EXPECT_TRUE(o.group_commit);
    EXPECT_EQ(o.group_commit_max_jobs, 64u);
    EXPECT_EQ(o.group_commit_max_time, 2ms);
    EXPECT_NO_THROW(o.validate());
}

TEST_F(Options, EchoDefaultsPerEngineKind) {
    engine_options o;
    EXPECT_TRUE(o.connection_settings(true).echo);    // sync engine
    EXPECT_FALSE(o.connection_settings(false).echo);  // async engine
    o.echo = false;
    EXPECT_FALSE(o.connection_settings(true).echo);
    o.echo = true;
    EXPECT_TRUE(o.connection_settings(false).echo);
}

TEST_F(Options, ConnectionSettingsCarryThePragmas) {
    engine_options o;
    o.journal_mode = "truncate";
    o.synchronous = "full";
    o.foreign_keys = false;
    o.busy_timeout = 250ms;
    o.statement_cache_size = 7;
    const auto c = o.connection_settings(false);
    EXPECT_EQ(c.journal_mode, "truncate");
    EXPECT_EQ(c.synchronous, "full");
    EXPECT_FALSE(c.foreign_keys);
    EXPECT_EQ(c.busy_timeout, 250ms);
    EXPECT_EQ(c.statement_cache_size, 7u);
}

TEST_F(Options, FromEnvWithNothingSetIsTheDefaults) {
    const auto o = engine_options::from_env();
    const engine_options d;
    EXPECT_EQ(o.path, d.path);
    EXPECT_EQ(o.pool_size, d.pool_size);
    EXPECT_EQ(o.max_overflow, d.max_overflow);
    EXPECT_EQ(o.pool_timeout, d.pool_timeout);
    EXPECT_EQ(o.pool_recycle, d.pool_recycle);
    EXPECT_EQ(o.echo, d.echo);
    EXPECT_EQ(o.journal_mode, d.journal_mode);
    EXPECT_EQ(o.busy_timeout, d.busy_timeout);
}

TEST_F(Options, FromEnvReadsEveryVariable) {
    env.set("SQLITE_DB_PATH", "/data/x.db");
    env.set("ASQLITE_POOL_SIZE", "4");
    env.set("ASQLITE_MAX_OVERFLOW", "2");
    env.set("ASQLITE_POOL_TIMEOUT", "2.5");
    env.set("ASQLITE_POOL_RECYCLE", "0");
    env.set("ASQLITE_PRE_PING", "yes");
    env.set("ASQLITE_ECHO", "false");
    env.set("ASQLITE_JOURNAL_MODE", "DELETE");
    env.set("ASQLITE_SYNCHRONOUS", "Full");
    env.set("ASQLITE_FOREIGN_KEYS", "off");
    env.set("ASQLITE_BUSY_TIMEOUT", "0.25");
    env.set("ASQLITE_STATEMENT_CACHE_SIZE", "0");
    env.set("ASQLITE_THREADS", "3");
    env.set("ASQLITE_COMPLETION_HOLD", "0.00005");
    env.set("ASQLITE_SPIN_WAIT", "0");
    env.set("ASQLITE_GROUP_COMMIT", "off");
    env.set("ASQLITE_GROUP_COMMIT_MAX_JOBS", "16");
    env.set("ASQLITE_GROUP_COMMIT_MAX_TIME", "0.0005");
    const auto o = engine_options::from_env();
    EXPECT_EQ(o.path, "/data/x.db");
    EXPECT_EQ(o.pool_size, 4u);
    EXPECT_EQ(o.max_overflow, 2u);
    EXPECT_EQ(o.pool_timeout, 2500ms);
    EXPECT_EQ(o.pool_recycle, 0ms);
    EXPECT_TRUE(o.pre_ping);
    EXPECT_EQ(o.echo, false);
    EXPECT_EQ(o.journal_mode, "delete");
    EXPECT_EQ(o.synchronous, "full");
    EXPECT_FALSE(o.foreign_keys);
    EXPECT_EQ(o.busy_timeout, 250ms);
    EXPECT_EQ(o.statement_cache_size, 0u);
    EXPECT_EQ(o.threads, 3u);
    EXPECT_EQ(o.completion_hold, 50us);
    EXPECT_EQ(o.spin_wait, 0us);
    EXPECT_FALSE(o.group_commit);
    EXPECT_EQ(o.group_commit_max_jobs, 16u);
    EXPECT_EQ(o.group_commit_max_time, 500us);
    EXPECT_NO_THROW(o.validate());
}

TEST_F(Options, SqliteDbPathUrlForms) {
    env.set("SQLITE_DB_PATH", "sqlite:///rel.db");
    EXPECT_EQ(engine_options::from_env().path, "rel.db");
    env.set("SQLITE_DB_PATH", "sqlite:////abs/path.db");
    EXPECT_EQ(engine_options::from_env().path, "/abs/path.db");
    env.set("SQLITE_DB_PATH", "sqlite://");
    EXPECT_EQ(engine_options::from_env().path, ":memory:");
    env.set("SQLITE_DB_PATH", ":memory:");
    EXPECT_EQ(engine_options::from_env().path, ":memory:");
    env.set("SQLITE_DB_PATH", "sqlite+aiosqlite:///x.db");
    EXPECT_EQ(engine_options::from_env().path, "x.db");
    env.set("SQLITE_DB_PATH", "plain.db");
    EXPECT_EQ(engine_options::from_env().path, "plain.db");
}

TEST_F(Options, SqliteDbPathBadValues) {
    env.set("SQLITE_DB_PATH", "");
    EXPECT_TRUE(fails_with([] { (void)engine_options::from_env(); }, errc::invalid_option,
                           {"SQLITE_DB_PATH"}));
    env.set("SQLITE_DB_PATH", "postgres://user@host/db");
    EXPECT_TRUE(fails_with([] { (void)engine_options::from_env(); }, errc::invalid_url,
                           {"SQLITE_DB_PATH", "postgres://user@host/db"}));
    env.set("SQLITE_DB_PATH", "sqlite://host/x.db");
    EXPECT_TRUE(fails_with([] { (void)engine_options::from_env(); }, errc::invalid_url,
                           {"SQLITE_DB_PATH", "sqlite://host/x.db", "host part"}));
}

struct bad_env_case {
    const char* name;
    const char* value;
};

void PrintTo(const bad_env_case& c, std::ostream* os) {
    *os << c.name << "='" << c.value << "'";
}

class OptionsBadEnv : public Options, public ::testing::WithParamInterface<bad_env_case> {};

TEST_P(OptionsBadEnv, NamesTheVariableAndTheValue) {
    const auto [name, value] = GetParam();
    env.set(name, value);
    EXPECT_TRUE(fails_with([] { (void)engine_options::from_env(); }, errc::invalid_option,
                           {name, std::string("'") + value + "'", "expected"}));
}

INSTANTIATE_TEST_SUITE_P(
    Options, OptionsBadEnv,
    ::testing::Values(
        bad_env_case{"ASQLITE_POOL_SIZE", "ten"}, bad_env_case{"ASQLITE_POOL_SIZE", "0"},
        bad_env_case{"ASQLITE_POOL_SIZE", "-3"}, bad_env_case{"ASQLITE_POOL_SIZE", ""},
        bad_env_case{"ASQLITE_POOL_SIZE", "4x"}, bad_env_case{"ASQLITE_POOL_SIZE", " 4"},
        bad_env_case{"ASQLITE_POOL_SIZE", "2.5"},
        bad_env_case{"ASQLITE_POOL_SIZE", "99999999999999999999999"},
        bad_env_case{"ASQLITE_MAX_OVERFLOW", "-1"}, bad_env_case{"ASQLITE_MAX_OVERFLOW", "lots"},
        bad_env_case{"ASQLITE_POOL_TIMEOUT", "-1"}, bad_env_case{"ASQLITE_POOL_TIMEOUT", "soon"},
        bad_env_case{"ASQLITE_POOL_TIMEOUT", "inf"}, bad_env_case{"ASQLITE_POOL_TIMEOUT", "nan"},
        bad_env_case{"ASQLITE_POOL_TIMEOUT", "30s"}, bad_env_case{"ASQLITE_POOL_RECYCLE", "1e20"},
        bad_env_case{"ASQLITE_PRE_PING", "maybe"}, bad_env_case{"ASQLITE_ECHO", "2"},
        bad_env_case{"ASQLITE_JOURNAL_MODE", "fast"},
        bad_env_case{"ASQLITE_SYNCHRONOUS", "sometimes"},
        bad_env_case{"ASQLITE_FOREIGN_KEYS", "enabled"},
        bad_env_case{"ASQLITE_BUSY_TIMEOUT", "forever"},
        bad_env_case{"ASQLITE_STATEMENT_CACHE_SIZE", "-5"}, bad_env_case{"ASQLITE_THREADS", "-1"},
        bad_env_case{"ASQLITE_COMPLETION_HOLD", "-0.1"},
        bad_env_case{"ASQLITE_COMPLETION_HOLD", "200us"},
        bad_env_case{"ASQLITE_SPIN_WAIT", "-0.00001"}, bad_env_case{"ASQLITE_SPIN_WAIT", "50us"},
        bad_env_case{"ASQLITE_GROUP_COMMIT", "sometimes"},
        bad_env_case{"ASQLITE_GROUP_COMMIT_MAX_JOBS", "0"},
        bad_env_case{"ASQLITE_GROUP_COMMIT_MAX_JOBS", "many"},
        bad_env_case{"ASQLITE_GROUP_COMMIT_MAX_TIME", "-1"},
        bad_env_case{"ASQLITE_GROUP_COMMIT_MAX_TIME", "2ms"}),
    [](const ::testing::TestParamInfo<bad_env_case>& info) {
        std::string name = std::string(info.param.name) + "_" + std::to_string(info.index);
        for (char& ch : name) {
            ch = std::isalnum(static_cast<unsigned char>(ch)) != 0 ? ch : '_';
        }
        return name;
    });

TEST_F(Options, ValidateRejectsUnusableValues) {
    engine_options o;
    o.pool_size = 0;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"pool_size"}));
    o = {};
    o.path = "";
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"path is empty"}));
    o = {};
    o.pool_timeout = -1ms;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"negative"}));
    o = {};
    o.busy_timeout = std::chrono::milliseconds{std::int64_t{1} << 40};
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"busy_timeout"}));
    o = {};
    o.journal_mode = "WAL2";
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"'WAL2'"}));
    o = {};
    o.synchronous = "NORMAL";  // the env parser lower-cases; the struct takes SQLite's spelling
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"'NORMAL'"}));
    o = {};
    o.completion_hold = -1us;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"negative"}));
    o.completion_hold = 1001ms;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option,
                           {"completion_hold", "1001000 us", "at most one second"}));
    o.completion_hold = 1s;
    EXPECT_NO_THROW(o.validate());
    o = {};
    o.spin_wait = -1us;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"negative"}));
    o.spin_wait = 1s + 1us;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option,
                           {"spin_wait", "1000001 us", "at most one second"}));
    o.spin_wait = 0us;
    EXPECT_NO_THROW(o.validate());
    o = {};
    o.group_commit_max_jobs = 0;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option,
                           {"group_commit_max_jobs", "at least 1"}));
    o.group_commit_max_jobs = 1;
    EXPECT_NO_THROW(o.validate());
    o.group_commit_max_time = -1us;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option, {"negative"}));
    o.group_commit_max_time = 2s;
    EXPECT_TRUE(fails_with([&] { o.validate(); }, errc::invalid_option,
                           {"group_commit_max_time", "at most one second"}));
}

TEST_F(Options, EngineValidatesAtConstruction) {
    engine_options o;
    o.pool_size = 0;
    EXPECT_TRUE(
        fails_with([&] { asqlite::create_engine(o); }, errc::invalid_option, {"pool_size"}));
    EXPECT_TRUE(fails_with([] { asqlite::create_engine("mysql://h/db"); }, errc::invalid_url,
                           {"mysql://h/db"}));
}

class Engine : public asqlite::test::temp_dir_test {};

TEST_F(Engine, ConnectAppliesTheOptions) {
    engine_options o;
    o.path = db_path;
    o.synchronous = "full";
    o.busy_timeout = 777ms;
    o.statement_cache_size = 3;
    int connected = 0;
    o.on_connect = [&](asqlite::connection& c) {
        ++connected;
        c.exec("CREATE TABLE IF NOT EXISTS hook(x)");
    };
    const auto e = asqlite::create_engine(o);
    EXPECT_EQ(e.options().path, db_path);
    auto c = e.connect();
    EXPECT_EQ(connected, 1);
    EXPECT_TRUE(c.echo());  // the sync engine echoes unless told otherwise
    EXPECT_EQ(c.path(), db_path);
    EXPECT_EQ(c.journal_mode(), "wal");
    EXPECT_EQ(c.scalar<int>("PRAGMA synchronous"), 2);
    EXPECT_EQ(c.scalar<int>("PRAGMA busy_timeout"), 777);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM sqlite_schema WHERE name = 'hook'"), 1);
    auto c2 = e.connect();
    EXPECT_EQ(connected, 2);
}

TEST_F(Engine, EchoCanBeTurnedOff) {
    engine_options o;
    o.path = db_path;
    o.echo = false;
    EXPECT_FALSE(asqlite::create_engine(o).connect().echo());
}

TEST_F(Engine, FromUrl) {
    const auto e = asqlite::create_engine("sqlite:///" + db_path);  // absolute: four slashes
    EXPECT_EQ(e.options().path, db_path);
    auto c = e.connect();
    c.exec("CREATE TABLE t(x)");
    EXPECT_TRUE(std::filesystem::exists(db_path));
    EXPECT_EQ(asqlite::create_engine("sqlite://").options().path, ":memory:");
}

}  // namespace
