// Another process writing the same file: SQLITE_BUSY is retried on Asio
// timers (no worker sleeps in SQLite's busy handler) and never reaches the
// caller within busy_timeout; both processes make progress.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <cstdio>
#include <fstream>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

namespace asio = boost::asio;

class AsyncBusy : public test::temp_dir_test {};

// The sqlite3 command-line shell, a separate process, takes the write lock
// `rounds` times and holds it for a few hundred milliseconds each time.
std::string lock_holder_script(const std::string& dir, int rounds) {
    const std::string path = dir + "/holder.sql";
    std::ofstream out(path);
    out << ".timeout 20000\n";
    for (int i = 0; i < rounds; ++i) {
        out << "BEGIN IMMEDIATE;\n"
            << "INSERT INTO items (name) VALUES ('cli-" << i << "');\n"
            << "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM "
               "c WHERE x < 1000000) SELECT x FROM c);\n"
            << "COMMIT;\n";
    }
    return path;
}

TEST_F(AsyncBusy, AnotherProcessHoldingTheLockIsWaitedOutOnTimers) {
    if (std::system("command -v sqlite3 > /dev/null") != 0) {
        GTEST_SKIP() << "the sqlite3 shell is not installed (apt-get install sqlite3)";
    }
    {
        connection c(db_path);
        c.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)");
    }
    constexpr int cli_rounds = 6;
    const std::string script = lock_holder_script(dir.path().string(), cli_rounds);
    const std::string command = fmt::format("sqlite3 '{}' < '{}' > '{}/holder.out' 2>&1", db_path,
                                            script, dir.path().string());
    FILE* holder = ::popen(command.c_str(), "r");
    ASSERT_NE(holder, nullptr);

    asio::io_context io;
    engine_options o;
    o.path = db_path;
    o.pool_size = 4;
    o.threads = 2;
    o.busy_timeout = std::chrono::seconds(20);
    auto db = create_async_engine(io.get_executor(), o);
    constexpr int writers = 8;
    constexpr int per_writer = 25;
    std::atomic<int> failures{0};
    for (int w = 0; w < writers; ++w) {
        asio::co_spawn(
            asio::make_strand(io),
            [&, w]() -> asio::awaitable<void> {
                try {
                    auto s = co_await db.session();
                    for (int i = 0; i < per_writer; ++i) {
                        const auto name = fmt::format("a-{}-{}", w, i);
                        if (i % 3 == 0) {
                            auto tx = co_await s.begin();
                            co_await s.execute("INSERT INTO items (name) VALUES (?)", name);
                            co_await tx.commit();
                        } else if (i % 3 == 1) {
                            co_await s.execute("INSERT INTO items (name) VALUES (?)", name);
                        } else {
                            co_await s.write([&](connection& c) {
                                c.execute("INSERT INTO items (name) VALUES (?)", name);
                            });
                        }
                        co_await s.scalar<int>("SELECT count(*) FROM items");
                        co_await test::sleep_for(std::chrono::milliseconds(10));
                    }
                } catch (const std::exception& e) {
                    failures.fetch_add(1);
                    ADD_FAILURE() << e.what();
                }
            },
            asio::detached);
    }
    test::run_io(io, 2);
    const int status = ::pclose(holder);
    std::ifstream holder_out(dir.file("holder.out"));
    const std::string holder_text((std::istreambuf_iterator<char>(holder_out)), {});
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << holder_text;
    EXPECT_EQ(holder_text.find("Error"), std::string::npos) << holder_text;
    EXPECT_EQ(failures.load(), 0);
    connection check(db_path);
    EXPECT_EQ(check.scalar<int>("SELECT count(*) FROM items WHERE name LIKE 'a-%'"),
              writers * per_writer);
    EXPECT_EQ(check.scalar<int>("SELECT count(*) FROM items WHERE name LIKE 'cli-%'"), cli_rounds);
    EXPECT_GT(db.stats().busy_retries, 0u) << "the other process never held the lock against us";
}

}  // namespace
}  // namespace asqlite
