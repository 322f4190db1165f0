// Group commit: writes waiting in line for the writer share one transaction,
// each in a savepoint of its own, and complete after its COMMIT. What a
// caller sees of that: its own outcome (a failure rolls back only its own
// work), durability and visibility as if each had committed alone, and
// whole groups (a reader never sees part of one).
//
// Most tests make a group on purpose: a begin() transaction holds the
// writer from the io side while the writes queue behind it, and its commit
// lets them go together.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

/// How one spawned operation ended.
struct outcome {
    bool done = false;
    std::exception_ptr ep;
};

class AsyncGroupCommit : public test::temp_dir_test {
  protected:
    void SetUp() override {
        connection c(db_path);
        c.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE, data BLOB)");
        c.exec("INSERT INTO t (v) VALUES ('taken')");
    }

    engine_options options() const {
        engine_options o;
        o.path = db_path;
        o.pool_size = 4;
        // Every write made to queue joins one group, also under the
        // sanitizers.
        o.group_commit_max_time = 1s;
        return o;
    }

    /// Spawns `op` (an awaitable factory) on io; `out` records how it ended.
    template <class Op>
    void spawn(Op op, outcome& out, asio::cancellation_slot slot = {}) {
        asio::co_spawn(io, std::move(op),
                       asio::bind_cancellation_slot(slot, [&out](std::exception_ptr ep) {
                           out.done = true;
                           out.ep = ep;
                       }));
    }

    /// Runs on io: a begin() transaction that takes the writer (its first
    /// statement), then `queue()` spawns the writes, which wait in line; once
    /// `waiting` of them wait, the transaction commits and they go together.
    /// `then()` runs after the commit (on io, while the group runs),
    /// `before_commit()` right before it.
    asio::awaitable<void> hold_writer_while(async_engine& db, std::size_t waiting,
                                            std::function<void()> queue,
                                            std::function<asio::awaitable<void>()> then = {},
                                            std::function<void()> before_commit = {}) {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        co_await s.execute("INSERT INTO t (v) VALUES ('holder')");
        queue();
        while (db.stats().writer_waiters < waiting) {
            co_await test::sleep_for(1ms);
        }
        EXPECT_EQ(db.stats().writer_waiters, waiting);
        if (before_commit) {
            before_commit();
        }
        co_await tx.commit();
        if (then) {
            co_await then();
        }
    }

    std::set<std::string> values() {
        connection c(db_path);
        const auto rows = c.query<std::string>("SELECT v FROM t");
        return {rows.begin(), rows.end()};
    }

    asio::io_context io;
};

/// An autocommit INSERT of `v` through its own session.
auto insert(async_engine& db, std::string v) {
    return [&db, v]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.execute("INSERT INTO t (v) VALUES (?)", v);
    };
}

/// write(fn) through its own session.
template <class Fn>
auto write(async_engine& db, Fn fn) {
    return [&db, fn]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.write(fn);
    };
}

std::error_code code_of(const outcome& o) {
    return error_code_of(o.ep);
}

TEST_F(AsyncGroupCommit, FailuresInAGroupStayWithTheirCallers) {
    // In one group: successful writes, a UNIQUE violation, an fn that
    // throws after writing, and an fn cancelled while it runs a statement.
    // SQLite rolls the whole transaction back when a write is interrupted:
    // the writes before it run again, so nothing is lost or doubled.
    auto db = create_async_engine(io.get_executor(), options());
    std::vector<outcome> out(7);
    asio::cancellation_signal cancel;
    std::atomic<bool> long_write_started{false};
    test::run_coro(
        io,
        hold_writer_while(
            db, 7,
            [&] {
                spawn(insert(db, "a"), out[0]);
                spawn(insert(db, "taken"), out[1]);
                spawn(write(db,
                            [](connection& c) {
                                c.execute("INSERT INTO t (v) VALUES ('thrown')");
                                throw std::runtime_error("fn gave up");
                            }),
                      out[2]);
                spawn(write(db, [](connection& c) { c.execute("INSERT INTO t (v) VALUES ('b')"); }),
                      out[3]);
                spawn(write(db,
                            [&](connection& c) {
                                long_write_started = true;
                                c.exec(
                                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL "
                                    "SELECT x + 1 FROM n WHERE x < 100000000) "
                                    "INSERT INTO t (v) SELECT 'x' || x FROM n");
                            }),
                      out[4], cancel.slot());
                spawn(insert(db, "c"), out[5]);
                spawn(insert(db, "d"), out[6]);
            },
            [&]() -> asio::awaitable<void> {
                while (!long_write_started) {
                    co_await test::sleep_for(1ms);
                }
                co_await test::sleep_for(5ms);
                cancel.emit(asio::cancellation_type::terminal);
            }));
    for (const auto& o : out) {
        ASSERT_TRUE(o.done);
    }
    EXPECT_FALSE(out[0].ep);
    EXPECT_EQ(code_of(out[1]), errc::constraint_unique);
    ASSERT_TRUE(out[2].ep);
    EXPECT_THROW(std::rethrow_exception(out[2].ep), std::runtime_error);
    EXPECT_FALSE(out[3].ep);
    EXPECT_EQ(code_of(out[4]), make_error_code(asio::error::operation_aborted));
    EXPECT_FALSE(out[5].ep);
    EXPECT_FALSE(out[6].ep);
    EXPECT_EQ(values(), (std::set<std::string>{"taken", "holder", "a", "b", "c", "d"}));
    const pool_stats st = db.stats();
    EXPECT_EQ(st.group_commits, 1U);
    EXPECT_EQ(st.grouped_writes, 7U);
}

TEST_F(AsyncGroupCommit, AWriteFnMayNotEndItsTransaction) {
    // COMMIT (even with its error swallowed) or ROLLBACK inside write(fn)
    // fails that write with transaction_state and keeps nothing of it, alone
    // or in a group, where the others commit.
    auto committing = [](connection& c) {
        c.execute("INSERT INTO t (v) VALUES ('committed by fn')");
        c.exec("COMMIT");
    };
    auto swallowing = [](connection& c) {
        c.execute("INSERT INTO t (v) VALUES ('swallowed')");
        try {
            c.exec("COMMIT");
        } catch (const error&) {
        }
    };
    auto rolling_back = [](connection& c) {
        c.execute("INSERT INTO t (v) VALUES ('rolled back by fn')");
        c.exec("ROLLBACK");
    };
    auto db = create_async_engine(io.get_executor(), options());
    std::vector<outcome> alone(3);
    spawn(write(db, committing), alone[0]);
    io.run();
    io.restart();
    spawn(write(db, swallowing), alone[1]);
    io.run();
    io.restart();
    spawn(write(db, rolling_back), alone[2]);
    io.run();
    io.restart();
    for (const auto& o : alone) {
        ASSERT_TRUE(o.done);
        EXPECT_EQ(code_of(o), errc::transaction_state);
    }
    EXPECT_EQ(values(), (std::set<std::string>{"taken"}));

    std::vector<outcome> grouped(6);
    test::run_coro(io, hold_writer_while(db, 6, [&] {
                       spawn(insert(db, "a"), grouped[0]);
                       spawn(write(db, committing), grouped[1]);
                       spawn(insert(db, "b"), grouped[2]);
                       spawn(write(db, swallowing), grouped[3]);
                       spawn(write(db, rolling_back), grouped[4]);
                       spawn(insert(db, "c"), grouped[5]);
                   }));
    for (std::size_t i = 0; i < grouped.size(); ++i) {
        ASSERT_TRUE(grouped[i].done);
        if (i == 1 || i == 3 || i == 4) {
            EXPECT_EQ(code_of(grouped[i]), errc::transaction_state) << i;
        } else {
            EXPECT_FALSE(grouped[i].ep) << i;
        }
    }
    EXPECT_EQ(values(), (std::set<std::string>{"taken", "holder", "a", "b", "c"}));
    EXPECT_EQ(db.stats().group_commits, 1U);
}

TEST_F(AsyncGroupCommit, ADeferredForeignKeyFailsOnlyTheWriteThatBrokeIt) {
    {
        connection c(db_path);
        c.exec(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) "
            "DEFERRABLE INITIALLY DEFERRED);"
            "INSERT INTO parent (id) VALUES (1)");
    }
    auto db = create_async_engine(io.get_executor(), options());
    auto child_of = [&db](int parent) {
        return [&db, parent]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            co_await s.execute("INSERT INTO child (parent_id) VALUES (?)", parent);
        };
    };
    std::vector<outcome> out(4);
    test::run_coro(io, hold_writer_while(db, 4, [&] {
                       spawn(child_of(1), out[0]);
                       spawn(child_of(99), out[1]);  // no such parent
                       spawn(write(db,
                                   [](connection& c) {
                                       // Broken, then mended before its commit: fine.
                                       c.execute("INSERT INTO child (parent_id) VALUES (2)");
                                       c.execute("INSERT INTO parent (id) VALUES (2)");
                                   }),
                             out[2]);
                       spawn(child_of(1), out[3]);
                   }));
    EXPECT_FALSE(out[0].ep);
    EXPECT_EQ(code_of(out[1]), errc::constraint_foreignkey);
    EXPECT_FALSE(out[2].ep);
    EXPECT_FALSE(out[3].ep);
    connection c(db_path);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM child"), 3);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM child WHERE parent_id = 99"), 0);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM pragma_foreign_key_check"), 0);
}

TEST_F(AsyncGroupCommit, AReaderNeverSeesPartOfAGroup) {
    constexpr std::size_t writes = 24;
    auto db = create_async_engine(io.get_executor(), options());
    std::vector<outcome> out(writes);
    std::set<std::int64_t> seen;
    bool writes_done = false;
    outcome reader;
    test::run_coro(io, [&]() -> asio::awaitable<void> {
        spawn(
            [&]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                // Until every write has completed, and once more.
                for (bool last = false; !last;) {
                    last = writes_done;
                    seen.insert(co_await s.scalar<std::int64_t>(
                        "SELECT count(*) FROM t WHERE v LIKE 'w%'"));
                }
            },
            reader);
        co_await hold_writer_while(db, writes, [&] {
            for (std::size_t i = 0; i < writes; ++i) {
                spawn(insert(db, "w" + std::to_string(i)), out[i]);
            }
        });
        while (!std::all_of(out.begin(), out.end(), [](const outcome& o) { return o.done; })) {
            co_await test::sleep_for(1ms);
        }
        writes_done = true;
    }());
    ASSERT_TRUE(reader.done);  // run_coro ran io until nothing was left
    EXPECT_FALSE(reader.ep);
    for (const auto& o : out) {
        ASSERT_TRUE(o.done);
        EXPECT_FALSE(o.ep);
    }
    EXPECT_EQ(db.stats().group_commits, 1U);
    EXPECT_EQ(db.stats().grouped_writes, writes);
    // Before the group, or all of it; never a part.
    EXPECT_TRUE(seen.count(static_cast<std::int64_t>(writes)));
    for (const auto n : seen) {
        EXPECT_TRUE(n == 0 || n == static_cast<std::int64_t>(writes)) << n;
    }
}

TEST_F(AsyncGroupCommit, EveryWriterReadsItsOwnWriteAtOnce) {
    // 32 writers in a loop: their writes share groups, and each reads its
    // row right after its write completed, from a read connection.
    auto db = create_async_engine(io.get_executor(), options());
    constexpr int writers = 32;
    constexpr int rounds = 20;
    int missing = 0;
    int done = 0;
    for (int w = 0; w < writers; ++w) {
        asio::co_spawn(
            io,
            [&, w]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                for (int i = 0; i < rounds; ++i) {
                    const std::string v = "w" + std::to_string(w) + "-" + std::to_string(i);
                    if (i % 2 == 0) {
                        co_await s.execute("INSERT INTO t (v) VALUES (?)", v);
                    } else {
                        // Named first: GCC 12 destroys a lambda's captures
                        // twice when it is made inside a co_await.
                        auto fn = [v](connection& c) {
                            c.execute("INSERT INTO t (v) VALUES (?)", v);
                        };
                        co_await s.write(fn);
                    }
                    if (co_await s.scalar<int>("SELECT count(*) FROM t WHERE v = ?", v) != 1) {
                        ++missing;
                    }
                }
                ++done;
            },
            test::rethrow_failure);
    }
    io.run();
    EXPECT_EQ(done, writers);
    EXPECT_EQ(missing, 0);
    connection c(db_path);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t WHERE v LIKE 'w%'"), writers * rounds);
    const pool_stats st = db.stats();
    EXPECT_GT(st.group_commits, 0U);
    EXPECT_GT(st.grouped_writes, 2 * st.group_commits);
}

TEST_F(AsyncGroupCommit, OffEveryWriteCommitsAlone) {
    engine_options o = options();
    o.group_commit = false;
    auto db = create_async_engine(io.get_executor(), o);
    std::vector<outcome> out(8);
    test::run_coro(io, hold_writer_while(db, out.size(), [&] {
                       for (std::size_t i = 0; i < out.size(); ++i) {
                           spawn(insert(db, "w" + std::to_string(i)), out[i]);
                       }
                   }));
    for (const auto& o2 : out) {
        EXPECT_FALSE(o2.ep);
    }
    EXPECT_EQ(db.stats().group_commits, 0U);
    EXPECT_EQ(values().size(), out.size() + 2);
}

TEST_F(AsyncGroupCommit, AGroupTakesAtMostMaxJobs) {
    engine_options o = options();
    o.group_commit_max_jobs = 4;
    auto db = create_async_engine(io.get_executor(), o);
    std::vector<outcome> out(10);
    test::run_coro(io, hold_writer_while(db, out.size(), [&] {
                       for (std::size_t i = 0; i < out.size(); ++i) {
                           spawn(insert(db, "w" + std::to_string(i)), out[i]);
                       }
                   }));
    for (const auto& o2 : out) {
        EXPECT_FALSE(o2.ep);
    }
    // 4 + 4 + 2.
    EXPECT_EQ(db.stats().group_commits, 3U);
    EXPECT_EQ(db.stats().grouped_writes, 10U);
    EXPECT_EQ(values().size(), out.size() + 2);
}

/// While alive: files this process writes may not grow past `bytes`
/// (RLIMIT_FSIZE; a write past it fails with EFBIG instead of raising
/// SIGXFSZ). A full disk, for this process only.
class file_size_limit {
  public:
    explicit file_size_limit(rlim_t bytes) {
        old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
        ::getrlimit(RLIMIT_FSIZE, &old_);
        rlimit lim = old_;
        lim.rlim_cur = bytes;
        ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    ~file_size_limit() {
        ::setrlimit(RLIMIT_FSIZE, &old_);
        ::signal(SIGXFSZ, old_handler_);
    }
    file_size_limit(const file_size_limit&) = delete;
    file_size_limit& operator=(const file_size_limit&) = delete;

  private:
    rlimit old_{};
    sighandler_t old_handler_ = SIG_DFL;
};

off_t file_size(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

TEST_F(AsyncGroupCommit, ACommitThatFailsFailsTheWholeGroupAndKeepsNothing) {
    // The group's pages go to the WAL at COMMIT; the file may not grow that
    // far, so COMMIT fails: every write of the group gets the error, none
    // of them is in the file, and the engine goes on with a new writer.
    constexpr std::size_t writes = 8;
    auto db = create_async_engine(io.get_executor(), options());
    std::vector<outcome> out(writes);
    std::optional<file_size_limit> full_disk;
    test::run_coro(io, hold_writer_while(
                           db, writes,
                           [&] {
                               for (std::size_t i = 0; i < writes; ++i) {
                                   spawn(
                                       [&db, i]() -> asio::awaitable<void> {
                                           auto s = co_await db.session();
                                           co_await s.execute(
                                               "INSERT INTO t (v, data) VALUES (?, zeroblob(?))",
                                               "big" + std::to_string(i), 16 * 1024);
                                       },
                                       out[i]);
                               }
                           },
                           {},
                           [&] {
                               // From here on the files may grow by 32 KiB: enough for
                               // the holder's commit, less than the group needs.
                               const off_t largest =
                                   std::max(file_size(db_path + "-wal"), file_size(db_path));
                               full_disk.emplace(static_cast<rlim_t>(largest + 32 * 1024));
                           }));
    full_disk.reset();
    std::error_code first;
    for (const auto& o : out) {
        ASSERT_TRUE(o.done);
        ASSERT_TRUE(o.ep);
        const std::error_code ec = code_of(o);
        EXPECT_TRUE(primary_code(ec) == errc::ioerr || primary_code(ec) == errc::full) << ec;
        if (!first) {
            first = ec;
        }
        EXPECT_EQ(ec, first);
    }
    EXPECT_EQ(values(), (std::set<std::string>{"taken", "holder"}));
    // The engine serves on: a new writer, and the next write commits.
    outcome after;
    spawn(insert(db, "after"), after);
    io.restart();
    io.run();
    ASSERT_TRUE(after.done);
    EXPECT_FALSE(after.ep);
    connection c(db_path);
    EXPECT_EQ(c.scalar<std::string>("PRAGMA integrity_check"), "ok");
    EXPECT_TRUE(values().count("after"));
}

}  // namespace
}  // namespace asqlite
