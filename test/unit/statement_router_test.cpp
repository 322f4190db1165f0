// The statement router (src/statement_router.hpp) with a
// fake clock: every way a statement can take, each outcome at each step.

#include <gtest/gtest.h>

#include <chrono>
#include <utility>
#include <vector>

#include "statement_router.hpp"

namespace {

using namespace std::chrono_literals;
using asqlite::detail::busy_backoff;
using asqlite::detail::open_transaction;
using asqlite::detail::operation_kind;
using asqlite::detail::route;
using asqlite::detail::route_clock;
using asqlite::detail::route_facts;
using asqlite::detail::sql_kind;
using asqlite::detail::statement_router;
using asqlite::detail::step_outcome;

const route_clock::time_point t0{};

route_facts facts(sql_kind kind, bool writer_lane = true) {
    route_facts f;
    f.kind = kind;
    f.writer_lane = writer_lane;
    return f;
}

statement_router router(route_facts f, route_clock::duration budget = 5s) {
    return statement_router(f, budget);
}

TEST(StatementRouter, AQueryRunsOnAnIdleReadConnection) {
    auto r = router(facts(sql_kind::query));
    EXPECT_EQ(r.start(), route::idle_read);
    EXPECT_TRUE(r.shares_reads());
    EXPECT_FALSE(r.checks_writes());
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);  // and stays done
}

TEST(StatementRouter, WithNothingIdleTheStatementWaitsInTurnForAReadConnection) {
    auto r = router(facts(sql_kind::query));
    r.start();
    EXPECT_EQ(r.next(step_outcome::no_idle_connection, t0), route::checked_out);
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
}

TEST(StatementRouter, AWriteGoesStraightToTheWriter) {
    auto r = router(facts(sql_kind::write));
    EXPECT_EQ(r.start(), route::writer);
    EXPECT_FALSE(r.shares_reads());
    EXPECT_FALSE(r.checks_writes());
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
}

TEST(StatementRouter, WithoutAWriterLaneEverythingRunsOnTheOneLane) {
    auto r = router(facts(sql_kind::write, false));
    EXPECT_EQ(r.start(), route::idle_read);
    EXPECT_FALSE(r.checks_writes());
    EXPECT_EQ(r.next(step_outcome::no_idle_connection, t0), route::checked_out);
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
    // A statement cannot be sent to a writer that does not exist.
    auto other = router(facts(sql_kind::other, false));
    other.start();
    EXPECT_EQ(other.next(step_outcome::writes, t0), route::fail);
}

TEST(StatementRouter, AStatementWhoseWordsDoNotTellAsksSqliteAndMovesToTheWriter) {
    auto r = router(facts(sql_kind::other));
    EXPECT_EQ(r.start(), route::idle_read);
    EXPECT_TRUE(r.checks_writes());
    EXPECT_EQ(r.next(step_outcome::writes, t0), route::writer);
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
    // Also from a connection checked out in turn.
    auto waited = router(facts(sql_kind::other));
    waited.start();
    waited.next(step_outcome::no_idle_connection, t0);
    EXPECT_EQ(waited.next(step_outcome::writes, t0), route::writer);
    // A read of that kind just runs.
    auto read = router(facts(sql_kind::other));
    read.start();
    EXPECT_EQ(read.next(step_outcome::ok, t0), route::done);
}

TEST(StatementRouter, TheWriterNeverSendsAStatementOnAgain) {
    auto r = router(facts(sql_kind::other));
    r.start();
    r.next(step_outcome::writes, t0);
    EXPECT_EQ(r.next(step_outcome::writes, t0), route::fail);
    auto w = router(facts(sql_kind::write));
    w.start();
    EXPECT_EQ(w.next(step_outcome::no_idle_connection, t0), route::fail);
}

TEST(StatementRouter, InsideAnOpenTransactionEveryOperationTakesTheTransactionsWay) {
    const std::pair<open_transaction, route> ways[] = {
        {open_transaction::begun, route::transaction},
        {open_transaction::awaiting_writer, route::first_on_writer},
        {open_transaction::by_sql, route::sql_transaction},
    };
    for (const auto& [tx, way] : ways) {
        for (operation_kind op :
             {operation_kind::statement, operation_kind::run, operation_kind::write}) {
            for (sql_kind kind : {sql_kind::query, sql_kind::write, sql_kind::other}) {
                route_facts f = facts(kind);
                f.op = op;
                f.transaction = tx;
                f.holds_connection = tx == open_transaction::by_sql;
                auto r = router(f);
                EXPECT_EQ(r.start(), way);
                EXPECT_FALSE(r.checks_writes());
                EXPECT_FALSE(r.shares_reads());
                EXPECT_FALSE(r.wraps_in_transaction());  // fn joins the open one
                EXPECT_FALSE(r.explains_refused_writes());
                EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
                // BUSY that left no trace (BEGIN IMMEDIATE still to run, a
                // COMMIT still open) is waited out on the same way.
                auto busy = router(f);
                busy.start();
                ASSERT_EQ(busy.next(step_outcome::busy, t0), route::wait);
                EXPECT_EQ(busy.next(step_outcome::ok, t0 + busy.wait()), way);
            }
        }
    }
}

TEST(StatementRouter, RunOutsideATransactionReadsAndIsNeverRepeated) {
    for (bool held : {false, true}) {
        route_facts f = facts(sql_kind::other);
        f.op = operation_kind::run;
        f.holds_connection = held;
        auto r = router(f);
        EXPECT_EQ(r.start(), held ? route::held : route::idle_read);
        EXPECT_FALSE(r.checks_writes());
        EXPECT_FALSE(r.shares_reads());
        EXPECT_TRUE(r.explains_refused_writes());
        EXPECT_FALSE(r.wraps_in_transaction());
        // fn may do more than touch the database: BUSY is its caller's.
        EXPECT_EQ(r.next(step_outcome::busy, t0), route::fail);
    }
    route_facts f = facts(sql_kind::other);
    f.op = operation_kind::run;
    auto r = router(f);
    r.start();
    EXPECT_EQ(r.next(step_outcome::no_idle_connection, t0), route::checked_out);
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
}

TEST(StatementRouter, WriteMakesItsOwnTransactionOnTheWriterAndRepeatsItOnBusy) {
    route_facts f = facts(sql_kind::other);
    f.op = operation_kind::write;
    auto r = router(f);
    EXPECT_EQ(r.start(), route::writer);
    EXPECT_TRUE(r.wraps_in_transaction());
    EXPECT_FALSE(r.checks_writes());
    ASSERT_EQ(r.next(step_outcome::busy, t0), route::wait);
    EXPECT_EQ(r.next(step_outcome::ok, t0 + r.wait()), route::writer);
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
    // Without a writer lane, on the lane's one connection.
    route_facts g = facts(sql_kind::other, false);
    g.op = operation_kind::write;
    auto single = router(g);
    EXPECT_EQ(single.start(), route::idle_read);
    EXPECT_TRUE(single.wraps_in_transaction());
    EXPECT_EQ(single.next(step_outcome::no_idle_connection, t0), route::checked_out);
}

TEST(StatementRouter, WriteInsideAReadTransactionBegunWithSqlIsRefused) {
    route_facts f = facts(sql_kind::other);
    f.op = operation_kind::write;
    f.holds_connection = true;
    f.in_sql_read_transaction = true;
    auto r = router(f);
    EXPECT_EQ(r.start(), route::refused);
    EXPECT_EQ(r.next(step_outcome::failed, t0), route::fail);
    // On a single-connection lane that transaction is the writer's: fn joins it.
    f.writer_lane = false;
    auto single = router(f);
    EXPECT_EQ(single.start(), route::held);
    EXPECT_FALSE(single.wraps_in_transaction());
    // What fn did stays in the user's transaction: BUSY is not retried.
    EXPECT_EQ(single.next(step_outcome::busy, t0), route::fail);
}

TEST(StatementRouter, AHeldConnectionTakesEveryStatementEvenAWrite) {
    route_facts f = facts(sql_kind::write);
    f.holds_connection = true;
    auto r = router(f);
    EXPECT_EQ(r.start(), route::held);
    EXPECT_FALSE(r.checks_writes());
    EXPECT_EQ(r.next(step_outcome::ok, t0), route::done);
}

TEST(StatementRouter, BusyIsRetriedOnTheSameWayAfterGrowingWaits) {
    for (route first : {route::idle_read, route::writer, route::held}) {
        route_facts f = facts(first == route::writer ? sql_kind::write : sql_kind::query);
        f.holds_connection = first == route::held;
        auto r = router(f, 1s);
        ASSERT_EQ(r.start(), first);
        std::vector<route_clock::duration> waits;
        route_clock::time_point now = t0;
        for (int i = 0; i < 9; ++i) {
            ASSERT_EQ(r.next(step_outcome::busy, now), route::wait);
            waits.push_back(r.wait());
            now += r.wait();
            ASSERT_EQ(r.next(step_outcome::ok, now), first);
        }
        EXPECT_EQ(waits, (std::vector<route_clock::duration>{1ms, 2ms, 4ms, 8ms, 16ms, 32ms, 64ms,
                                                             100ms, 100ms}));
        EXPECT_EQ(r.next(step_outcome::ok, now), route::done);
    }
}

TEST(StatementRouter, BusyFailsOnceTheNextWaitWouldEndAfterTheBudget) {
    auto r = router(facts(sql_kind::query), 10ms);
    r.start();
    route_clock::time_point now = t0;
    int waits = 0;
    route step = r.next(step_outcome::busy, now);
    while (step == route::wait) {
        ++waits;
        now += r.wait();
        ASSERT_EQ(r.next(step_outcome::ok, now), route::idle_read);
        step = r.next(step_outcome::busy, now);
    }
    EXPECT_EQ(step, route::fail);
    EXPECT_EQ(waits, 3);  // 1 + 2 + 4 ms; the next 8 ms would end at 15 ms
    EXPECT_LE(now - t0, 10ms);
    // The budget counts from the first BUSY, not from the start.
    auto late = router(facts(sql_kind::query), 10ms);
    late.start();
    EXPECT_EQ(late.next(step_outcome::busy, t0 + 1h), route::wait);
}

TEST(StatementRouter, ANoBudgetMeansNoRetry) {
    auto r = router(facts(sql_kind::write), 0ms);
    r.start();
    EXPECT_EQ(r.next(step_outcome::busy, t0), route::fail);
}

TEST(StatementRouter, BusyOnACheckedOutConnectionLooksForAnIdleOneFirstAgain) {
    auto r = router(facts(sql_kind::query));
    r.start();
    r.next(step_outcome::no_idle_connection, t0);
    ASSERT_EQ(r.next(step_outcome::busy, t0), route::wait);
    EXPECT_EQ(r.next(step_outcome::ok, t0 + r.wait()), route::idle_read);
}

TEST(StatementRouter, BusyAfterMovingToTheWriterIsRetriedOnTheWriter) {
    auto r = router(facts(sql_kind::other));
    r.start();
    r.next(step_outcome::writes, t0);
    ASSERT_EQ(r.next(step_outcome::busy, t0), route::wait);
    EXPECT_EQ(r.next(step_outcome::ok, t0 + r.wait()), route::writer);
}

TEST(StatementRouter, AFailureOrCancellationAtEveryStepEndsTheStatement) {
    struct way {
        route_facts facts;
        std::vector<step_outcome> before;  // outcomes that lead to the step
    };
    route_facts held = facts(sql_kind::query);
    held.holds_connection = true;
    route_facts tx = facts(sql_kind::query);
    tx.transaction = open_transaction::begun;
    route_facts first = facts(sql_kind::query);
    first.transaction = open_transaction::awaiting_writer;
    route_facts by_sql = facts(sql_kind::query);
    by_sql.transaction = open_transaction::by_sql;
    const std::vector<way> ways = {
        {facts(sql_kind::query), {}},                                  // idle_read
        {facts(sql_kind::query), {step_outcome::no_idle_connection}},  // checked_out
        {facts(sql_kind::write), {}},                                  // writer
        {facts(sql_kind::other), {step_outcome::writes}},              // writer after asking
        {facts(sql_kind::query), {step_outcome::busy}},                // the BUSY wait
        {held, {}},                                                    // held
        {tx, {}},                                                      // transaction
        {first, {}},                                                   // first_on_writer
        {by_sql, {}},                                                  // sql_transaction
        {tx, {step_outcome::busy}},                                    // its BUSY wait
    };
    for (const way& w : ways) {
        auto r = router(w.facts);
        r.start();
        for (step_outcome o : w.before) {
            r.next(o, t0);
        }
        EXPECT_EQ(r.next(step_outcome::failed, t0), route::fail);
        EXPECT_EQ(r.next(step_outcome::ok, t0), route::fail);  // and stays failed
    }
}

TEST(BusyBackoff, DoublesUpTo100MillisecondsWithinTheBudget) {
    busy_backoff b(250ms);
    route_clock::time_point now = t0;
    std::vector<route_clock::duration> waits;
    while (const auto w = b.after_busy(now)) {
        waits.push_back(*w);
        now += *w;
    }
    EXPECT_EQ(waits,
              (std::vector<route_clock::duration>{1ms, 2ms, 4ms, 8ms, 16ms, 32ms, 64ms, 100ms}));
    EXPECT_EQ(now - t0, 227ms);
}

}  // namespace
