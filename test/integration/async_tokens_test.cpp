// Every async operation takes any completion token as its last argument,
// as Asio's own operations do: callbacks, use_future, deferred, as_tuple,
// and per-operation cancellation through a bound cancellation slot. Without
// one, the operation is an awaitable, as before.

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/describe/class.hpp>

#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

struct item {
    std::int64_t id;
    std::string name;
};
BOOST_DESCRIBE_STRUCT(item, (), (id, name))

class AsyncTokens : public test::temp_dir_test {
  protected:
    void SetUp() override {
        connection c(db_path);
        c.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)");
        c.exec("INSERT INTO items (name) VALUES ('a'), ('b')");
    }
    engine_options options() {
        engine_options o;
        o.path = db_path;
        o.pool_size = 3;
        o.threads = 2;
        return o;
    }
    std::int64_t count() {
        return connection(db_path).scalar<std::int64_t>("SELECT count(*) FROM items");
    }

    asio::io_context io;
};

/// The io_context runs on a thread of its own while the test waits on
/// futures.
class io_thread {
  public:
    explicit io_thread(asio::io_context& io) : io_(io), work_(io.get_executor()) {
        thread_ = std::thread([this] { io_.run(); });
    }
    ~io_thread() { join(); }
    /// Lets io run out of work and waits for the thread.
    void join() {
        work_.reset();
        if (thread_.joinable()) {
            thread_.join();
        }
    }

  private:
    asio::io_context& io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::thread thread_;
};

TEST_F(AsyncTokens, EveryOperationCompletesThroughACallback) {
    auto db = create_async_engine(io.get_executor(), options());
    std::optional<session> s;
    std::vector<std::string> done;
    auto ok = [&done](std::string what) {
        return [&done, what](std::exception_ptr ep, auto&&...) {
            EXPECT_FALSE(ep) << what;
            done.push_back(what);
        };
    };
    db.session([&](std::exception_ptr ep, session got) {
        ASSERT_FALSE(ep);
        s.emplace(std::move(got));
        s->execute("INSERT INTO items (name) VALUES (?)", std::string("c"), ok("execute"));
        s->scalar<std::int64_t>("SELECT count(*) FROM items WHERE name <> ?", "zzz",
                                [&](std::exception_ptr ep, std::int64_t n) {
                                    EXPECT_FALSE(ep);
                                    EXPECT_GE(n, 2);
                                    done.push_back("scalar");
                                });
    });
    io.run();
    io.restart();
    // One operation at a time per session; each of these after the last.
    s->one<item>("SELECT id, name FROM items WHERE name = ?", "a",
                 [&](std::exception_ptr ep, item it) {
                     EXPECT_FALSE(ep);
                     EXPECT_EQ(it.name, "a");
                     s->one_or_none<item>("SELECT id, name FROM items WHERE name = ?", "none",
                                          [&](std::exception_ptr ep, std::optional<item> it) {
                                              EXPECT_FALSE(ep);
                                              EXPECT_FALSE(it.has_value());
                                              done.push_back("one_or_none");
                                          });
                     done.push_back("one");
                 });
    io.run();
    io.restart();
    s->all<std::string>("SELECT name FROM items ORDER BY id",
                        [&](std::exception_ptr ep, std::vector<std::string> names) {
                            EXPECT_FALSE(ep);
                            EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));
                            done.push_back("all");
                        });
    io.run();
    io.restart();
    s->write([](connection& c) { c.exec("INSERT INTO items (name) VALUES ('d')"); }, ok("write"));
    io.run();
    io.restart();
    s->run([](connection& c) { return c.scalar<int>("SELECT 7"); },
           [&](std::exception_ptr ep, int v) {
               EXPECT_FALSE(ep);
               EXPECT_EQ(v, 7);
               done.push_back("run");
           });
    io.run();
    io.restart();
    std::optional<transaction> tx;
    s->begin([&](std::exception_ptr ep, transaction t) {
        ASSERT_FALSE(ep);
        tx.emplace(std::move(t));
        s->execute("INSERT INTO items (name) VALUES ('e')", ok("execute in tx"));
    });
    io.run();
    io.restart();
    tx->commit(ok("commit"));
    io.run();
    io.restart();
    s->begin([&](std::exception_ptr ep, transaction t) {
        ASSERT_FALSE(ep);
        tx.emplace(std::move(t));
        s->execute("INSERT INTO items (name) VALUES ('f')", [&](std::exception_ptr ep, result) {
            ASSERT_FALSE(ep);
            tx->rollback(ok("rollback"));
        });
    });
    io.run();
    std::sort(done.begin(), done.end());
    EXPECT_EQ(done,
              (std::vector<std::string>{"all", "commit", "execute", "execute in tx", "one",
                                        "one_or_none", "rollback", "run", "scalar", "write"}));
    EXPECT_EQ(count(), 5);  // a, b, c, d, e (f rolled back)
    s.reset();
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_EQ(db.stats().writer_in_use, 0u);
}

TEST_F(AsyncTokens, UseFutureWithTheIoContextOnAnotherThread) {
    auto db = create_async_engine(io.get_executor(), options());
    io_thread running(io);
    session s = db.session(asio::use_future).get();
    EXPECT_EQ(s.scalar<int>("SELECT ? + 1", 41, asio::use_future).get(), 42);
    EXPECT_EQ(s.all<std::string>("SELECT name FROM items ORDER BY id", asio::use_future).get(),
              (std::vector<std::string>{"a", "b"}));
    s.write([](connection& c) { c.exec("INSERT INTO items (name) VALUES ('x')"); },
            asio::use_future)
        .get();
    transaction tx = s.begin(asio::use_future).get();
    s.execute("INSERT INTO items (name) VALUES (?)", "y", asio::use_future).get();
    tx.commit(asio::use_future).get();
    EXPECT_EQ(count(), 4);
    // Errors arrive as the future's exception, with asqlite's code.
    auto failing = s.execute("INSERT INTO items (name) VALUES ('a')", asio::use_future);
    failing.wait();
    auto missing = s.one<item>("SELECT id, name FROM items WHERE name = 'none'", asio::use_future);
    missing.wait();
    auto via_default = get_async_session(io.get_executor(), asio::use_future);
    EXPECT_TRUE(via_default.get().valid());
    reset_default_engine();
    // The errors are read once the io thread is gone: an error freed there
    // after this thread read it is a race to ThreadSanitizer that is not
    // one (exception_ptr counts its references inside libstdc++, which it
    // does not see).
    running.join();
    EXPECT_TRUE(test::fails_with([&] { failing.get(); }, errc::constraint_unique, {"UNIQUE"}));
    EXPECT_TRUE(test::fails_with([&] { missing.get(); }, errc::no_rows, {}));
}

TEST_F(AsyncTokens, DeferredOperationsStartWhenInvoked) {
    auto db = create_async_engine(io.get_executor(), options());
    test::run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        // Nothing runs until the deferred operation is started.
        auto insert = s.execute("INSERT INTO items (name) VALUES (?)", "late", asio::deferred);
        co_await test::sleep_for(20ms);
        EXPECT_EQ(count(), 2);
        auto [ep, r] = co_await std::move(insert)(asio::as_tuple(asio::use_awaitable));
        EXPECT_FALSE(ep);
        EXPECT_EQ(r.rows_affected(), 1);
        EXPECT_EQ(count(), 3);
        auto begin = s.begin(asio::deferred);
        auto [bep, tx] = co_await std::move(begin)(asio::as_tuple(asio::use_awaitable));
        ASQLITE_CO_ASSERT(!bep);
        co_await s.execute("INSERT INTO items (name) VALUES ('in tx')");
        auto [cep] = co_await tx.commit(asio::as_tuple(asio::deferred))(asio::use_awaitable);
        EXPECT_FALSE(cep);
    }());
    EXPECT_EQ(count(), 4);
}

TEST_F(AsyncTokens, AsTupleReportsErrorsInsteadOfThrowing) {
    auto db = create_async_engine(io.get_executor(), options());
    test::run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto [ep, n] = co_await s.scalar<int>("SELECT count(*) FROM nowhere",
                                              asio::as_tuple(asio::use_awaitable));
        ASQLITE_CO_ASSERT(ep != nullptr);
        EXPECT_EQ(n, 0);
        EXPECT_TRUE(test::fails_with([&] { std::rethrow_exception(ep); }, errc::error,
                                     {"no such table: nowhere"}));
        auto [ok, names] = co_await s.all<std::string>("SELECT name FROM items ORDER BY id",
                                                       asio::as_tuple(asio::use_awaitable));
        EXPECT_FALSE(ok);
        EXPECT_EQ(names, (std::vector<std::string>{"a", "b"}));
        // The tuple form of the parameters says the same.
        auto [tep, r] = co_await s.async_execute("SELECT ? || ?", std::tuple{"x", "y"},
                                                 asio::as_tuple(asio::use_awaitable));
        EXPECT_FALSE(tep);
        EXPECT_EQ(r[0].get<std::string>(0), "xy");
    }());
}

TEST_F(AsyncTokens, ACancellationSlotBoundToACallbackStopsARunningStatement) {
    auto db = create_async_engine(io.get_executor(), options());
    asio::cancellation_signal signal;
    std::optional<std::error_code> code;
    std::optional<session> s;
    db.session([&](std::exception_ptr ep, session got) {
        ASSERT_FALSE(ep);
        s.emplace(std::move(got));
        s->scalar<std::int64_t>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM "
            "c",
            asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr ep, std::int64_t) {
                try {
                    std::rethrow_exception(ep);
                } catch (const error& e) {
                    code = e.code();
                } catch (...) {
                    ADD_FAILURE() << "not an asqlite::error";
                }
            }));
    });
    asio::steady_timer timer(io, 50ms);
    timer.async_wait(
        [&](boost::system::error_code) { signal.emit(asio::cancellation_type::terminal); });
    io.run();
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, make_error_code(asio::error::operation_aborted));
    EXPECT_EQ(db.stats().in_use, 0u);
    // The session goes on.
    io.restart();
    std::optional<int> after;
    s->scalar<int>("SELECT 5", [&](std::exception_ptr ep, int v) {
        EXPECT_FALSE(ep);
        after = v;
    });
    io.run();
    EXPECT_EQ(after, 5);
}

TEST_F(AsyncTokens, AMovedFromSessionRefusesATokenAtOnce) {
    auto db = create_async_engine(io.get_executor(), options());
    session s;
    bool called = false;
    EXPECT_TRUE(test::fails_with(
        [&] { s.execute("SELECT 1", [&](std::exception_ptr, result) { called = true; }); },
        errc::transaction_state, {"belongs to no engine"}));
    transaction tx;
    EXPECT_TRUE(test::fails_with([&] { tx.commit([&](std::exception_ptr) { called = true; }); },
                                 errc::transaction_state, {"already finished"}));
    io.run();
    EXPECT_FALSE(called);
}

// An operation's job and parameters live in the awaiting frame while it
// runs (detail/operation.hpp): each is destroyed exactly once, whichever
// token, and a parameter the caller made for the call stays intact until
// the statement has run. (The function objects are named: GCC 12 destroys
// one made inside the co_await expression twice, docs/async.md.)
TEST_F(AsyncTokens, AnOperationOwnsItsJobAndParametersExactlyOnce) {
    auto db = create_async_engine(io.get_executor(), options());
    auto owned = std::make_shared<int>(7);
    const std::string long_name(200, 'n');  // on the heap, not in a small buffer
    session s;
    test::run_coro(io, [&]() -> asio::awaitable<void> {
        s = co_await db.session();
        auto read = [owned](connection& c) { return c.scalar<int>("SELECT ?", *owned); };
        EXPECT_EQ(co_await s.run(std::move(read)), 7);
        EXPECT_EQ(owned.use_count(), 1);
        auto write = [owned, long_name](connection& c) {
            return c.execute("INSERT INTO items (name) VALUES (?)", long_name).rows_affected();
        };
        EXPECT_EQ(co_await s.write(std::move(write)), 1);
        EXPECT_EQ(owned.use_count(), 1);
        EXPECT_EQ(co_await s.scalar<std::string>("SELECT name FROM items WHERE name = ?",
                                                 std::string(long_name)),
                  long_name);
    }());
    long inside = 0;
    auto callback_job = [owned](connection&) { return owned.use_count(); };
    s.run(std::move(callback_job), [&](std::exception_ptr ep, long n) {
        EXPECT_FALSE(ep);
        inside = n;
    });
    io.restart();
    io.run();
    EXPECT_EQ(inside, 2);  // the test's pointer and the job's own
    EXPECT_EQ(owned.use_count(), 1);
}

// What the caller's completion throws leaves io_context::run(), as from any
// Asio completion: the handler runs once, the process goes on, and so does
// the engine.
TEST_F(AsyncTokens, WhatACompletionThrowsLeavesRunOnce) {
    auto db = create_async_engine(io.get_executor(), options());
    session s;
    test::run_coro(io, [&]() -> asio::awaitable<void> { s = co_await db.session(); }());
    io.restart();
    int calls = 0;
    s.scalar<int>("SELECT 1", [&](std::exception_ptr ep, int n) {
        ++calls;
        EXPECT_FALSE(ep);
        EXPECT_EQ(n, 1);
        throw std::runtime_error("from the callback");
    });
    EXPECT_THROW(io.run(), std::runtime_error);
    // A coroutine that throws after its co_await, spawned with a handler
    // that rethrows: the same.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await s.scalar<int>("SELECT 2");
            ++calls;
            throw std::logic_error("from the coroutine");
        },
        [](std::exception_ptr e) {
            if (e) {
                std::rethrow_exception(e);
            }
        });
    io.restart();
    EXPECT_THROW(io.run(), std::logic_error);
    EXPECT_EQ(calls, 2);
    io.restart();
    test::run_coro(
        io, [&]() -> asio::awaitable<void> { EXPECT_EQ(co_await s.scalar<int>("SELECT 3"), 3); }());
    EXPECT_EQ(db.stats().in_use, 0u);
}

}  // namespace
}  // namespace asqlite
