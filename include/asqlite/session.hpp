#pragma once
// A scoped session: `co_await engine.session()` or
// `co_await asqlite::get_async_session()`. It holds no connection of its
// own: each statement runs on the read connection a worker finds idle (or
// opens while the pool has room) and gives it back when it ends. Only when
// every connection is held does a statement wait for one (FIFO,
// pool_timeout, cancellation).
//
// Reads and writes: a file database has one writer connection (the writer
// lane) besides the read connections. A statement that writes waits for the
// writer (FIFO, same timeout and cancellation) and runs there in
// autocommit; write(fn) runs fn inside BEGIN IMMEDIATE ... COMMIT there in
// one hop; begin() makes the session's transaction hold the writer from its
// first statement until commit or rollback. Writers never see "database is
// locked" from each other, and readers never wait for writers (WAL). A
// :memory: database, or pool_size 1, has a single connection for both.
//
// Transactions begun with SQL behave as on one connection: `BEGIN
// IMMEDIATE` (or EXCLUSIVE) through execute() takes the writer, which the
// session keeps until a statement ends the transaction (COMMIT, ROLLBACK,
// END) or the session is destroyed (rolled back); once SQLite has rolled it
// back by itself (an interrupted write), statements fail until that
// ROLLBACK. `BEGIN` (deferred) and `SAVEPOINT` start a read transaction on
// a read connection, which the session keeps: a write inside it fails with
// errc::transaction_state rather than run outside it.
//
// Errors are asqlite::error (code, SQLite's message, SQL text); a cancelled
// operation throws asqlite::error with asio::error::operation_aborted. (A
// coroutine already cancelled when it co_awaits an operation gets Asio's
// own boost::system::system_error from that co_await, as with any
// awaitable.) Every operation runs on the engine's blocking pool and
// completes on the caller's executor, never inside the call that starts it.
//
// Thread safety: a session is used by one coroutine at a time and runs one
// operation at a time (like an Asio socket). With several io threads, run
// coroutines that use cancellation on a strand, as Asio requires.
// Lifetimes: the session, SQL text and view parameters (std::string_view,
// const char*, spans) must stay valid until the operation completes; with
// `co_await` on the call itself that is always so. A transaction must not
// outlive its session.
// Cancellation: per-operation cancellation (asio::cancellation_signal,
// awaitable operators `||`) stops a running statement through SQLite's
// progress handler; the operation completes only after the worker has let go
// of the connection. A transaction destroyed without commit() (also by an
// exception or a cancellation) rolls back on the blocking pool before its
// connection is reused; a connection whose state is unknown is closed.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/detail/completion.hpp"
#include "asqlite/detail/operation.hpp"
#include "asqlite/result.hpp"

namespace asqlite {

namespace asio = boost::asio;

class session;
template <class T>
class row_stream;
class transaction;
class savepoint;

namespace detail {
class engine_core;
struct pooled_connection;
struct tx_link;
class driver;
}  // namespace detail

class session {
  public:
    session() = default;
    session(std::shared_ptr<detail::engine_core> core, detail::pooled_connection* pc) noexcept;
    session(session&& other) noexcept;
    session& operator=(session&& other) noexcept;
    ~session();

    // Every operation below takes any completion token as its last argument
    // (use_awaitable when there is none): `co_await s.execute(sql, id)`, or
    // `s.execute(sql, id, handler)` with a callback, use_future, deferred,
    // as_tuple(...) or a bound cancellation slot, completing with
    // void(std::exception_ptr, T) (void(std::exception_ptr) for void).

    /// Runs one statement; all rows are materialised.
    template <class... A>
    auto execute(std::string_view sql, A&&... args) {
        return statement_op<result>(
            sql,
            detail::materialised(sql, [](connection& c, std::string_view text,
                                         const auto&... p) { return c.execute(text, p...); }),
            detail::take_value{}, std::forward<A>(args)...);
    }
    /// execute() with the parameters in a tuple.
    template <class... P, class Token = asio::use_awaitable_t<>>
    auto async_execute(std::string_view sql, std::tuple<P...> params, Token&& token = {}) {
        return std::apply(
            [&](auto&... p) { return execute(sql, std::move(p)..., std::forward<Token>(token)); },
            params);
    }

    /// First column of the first row (see connection::scalar).
    template <class T, class... A>
    auto scalar(std::string_view sql, A&&... args) {
        return statement_op<T>(
            sql,
            detail::materialised(sql, [](connection& c, std::string_view text,
                                         const auto&... p) { return c.scalar<T>(text, p...); }),
            detail::take_value{}, std::forward<A>(args)...);
    }

    /// Exactly one row as T (described struct, tuple or scalar).
    template <class T, class... A>
    auto one(std::string_view sql, A&&... args) {
        return statement_op<T>(
            sql, detail::captured_row(sql),
            [sql](detail::row_snapshot* snap) {
                auto row = snap->read<T>();
                if (!row) {
                    detail::throw_no_rows(sql);
                }
                return std::move(*row);
            },
            std::forward<A>(args)...);
    }

    /// Zero or one row as T (copied into a buffer on the blocking pool, made
    /// a T on the caller's thread: see detail/row_snapshot.hpp).
    template <class T, class... A>
    auto one_or_none(std::string_view sql, A&&... args) {
        return statement_op<std::optional<T>>(
            sql, detail::captured_row(sql),
            [](detail::row_snapshot* snap) { return snap->read<T>(); }, std::forward<A>(args)...);
    }

    /// Every row as T.
    template <class T, class... A>
    auto all(std::string_view sql, A&&... args) {
        return statement_op<std::vector<T>>(
            sql,
            detail::materialised(sql, [](connection& c, std::string_view text,
                                         const auto&... p) { return c.query<T>(text, p...); }),
            detail::take_value{}, std::forward<A>(args)...);
    }

    /// Runs fn(connection&) on the blocking pool in one hop and returns its
    /// value (its exceptions propagate). Outside a transaction it runs on a
    /// read connection, where anything that writes (a statement, create_all)
    /// fails with errc::readonly, saying to use write(fn) or begin(); inside
    /// one, on the writer.
    /// fn must not keep the connection reference. Connection state that
    /// outlives the call (temporary tables, pragmas, functions) belongs in
    /// engine_options::on_connect: outside a transaction, the next
    /// operation may run on another connection.
    template <class Fn, class Token = asio::use_awaitable_t<>>
    auto run(Fn fn, Token&& token = {}) {
        return work_op(detail::operation_kind::run, std::move(fn), std::forward<Token>(token));
    }

    /// Runs fn(connection&) as one write transaction (BEGIN IMMEDIATE, fn,
    /// COMMIT; ROLLBACK when fn throws) on the writer lane, in one hop. Inside
    /// an open transaction, fn just joins it. When another process holds the
    /// database lock, the transaction is retried (fn runs again) until
    /// busy_timeout: fn should only touch the database.
    template <class Fn, class Token = asio::use_awaitable_t<>>
    auto write(Fn fn, Token&& token = {}) {
        return work_op(detail::operation_kind::write, std::move(fn), std::forward<Token>(token));
    }

    /// A write transaction: from here on every statement of the session
    /// runs on the writer. An idle writer is taken at once; a busy one is
    /// waited for by the first statement (FIFO, pool_timeout, cancellation:
    /// errors of the wait come from that statement, and leave the
    /// transaction as if it had not run). BEGIN IMMEDIATE runs with the
    /// first statement, in the same hop, so SQLite's lock (and BUSY from
    /// another process holding it, waited out up to busy_timeout) comes
    /// there; a transaction without statements commits without touching
    /// SQLite. Never waits itself. Throws errc::transaction_state when a
    /// transaction is already open here.
    template <class Token = asio::use_awaitable_t<>>
    auto begin(Token&& token = {}) {
        return start<transaction>(std::forward<Token>(token), [this] { return begin_op(); });
    }
    /// A savepoint inside this session's begin() transaction (SQLAlchemy's
    /// begin_nested()): completes with a savepoint, which rolls the
    /// transaction back to this point unless released; savepoints nest.
    /// Without an open begin() transaction: errc::transaction_state.
    template <class Token = asio::use_awaitable_t<>>
    auto begin_nested(Token&& token = {}) {
        return start<savepoint>(std::forward<Token>(token), [this] { return begin_nested_op(); });
    }

    /// The rows of one statement as a stream, stepped in batches while the
    /// consumer takes them (include "asqlite/stream.hpp"): see row_stream.
    /// Outside a transaction the stream reads on a session of its own (a
    /// read connection, one snapshot); inside one, on the transaction's
    /// connection through this session, which must then outlive it.
    /// Completes with row_stream<T>.
    template <class T, class... A>
    auto stream(std::string_view sql, A&&... args);

    /// The session belongs to an engine (not moved from or default-made).
    bool valid() const noexcept { return core_ != nullptr; }
    /// A transaction of this session is open: begin()'s, or one begun with
    /// SQL through execute().
    bool in_transaction() const noexcept;

  private:
    friend class transaction;
    friend class savepoint;
    friend class detail::driver;
    template <class>
    friend class row_stream;

    /// A statement giving a T: make_job(params) is its job on the blocking
    /// pool, finish(job's value) makes the T. args: parameters, then perhaps
    /// a completion token.
    template <class T, class MakeJob, class Finish, class... A>
    auto statement_op(std::string_view sql, MakeJob make_job, Finish finish, A&&... args) {
        return detail::split_token<detail::op_signature<T>>(
            [&](auto params, auto&& token) {
                return start<T>(token, [this, sql, job = make_job(std::move(params)),
                                        finish = std::move(finish)]() mutable {
                    return detail::start_on<T>(*this, detail::operation_kind::statement, sql,
                                               std::move(job), std::move(finish));
                });
            },
            std::forward<A>(args)...);
    }
    /// run(fn) or write(fn).
    template <class Fn, class Token>
    auto work_op(detail::operation_kind kind, Fn fn, Token&& token) {
        using R = std::invoke_result_t<Fn&, connection&>;
        return start<R>(std::forward<Token>(token), [this, kind, fn = std::move(fn)]() mutable {
            return detail::start_on<R>(*this, kind, {}, std::move(fn), detail::take_value{});
        });
    }
    /// make() (an awaitable) started with `token`; without an engine,
    /// errc::transaction_state (detail::start_checked).
    template <class T, class Token, class Make>
    auto start(Token&& token, Make make) {
        return detail::start_checked<T>(
            std::forward<Token>(token), [this] { check_usable(); }, io_executor(), std::move(make));
    }

    void check_usable() const;
    void release() noexcept;
    /// Keeps `what` (a dropped stream's statement) until the next job on
    /// the connection of this session's transaction destroys it there.
    void hand_over_orphan(std::shared_ptr<void> what) noexcept;
    asio::any_io_executor io_executor() const;
    asio::awaitable<transaction> begin_op();
    asio::awaitable<savepoint> begin_nested_op();
    detail::tx_link* open_tx() const noexcept;
    /// It holds a connection inside a transaction begun with SQL.
    bool holds_sql_transaction() const noexcept;

    std::shared_ptr<detail::engine_core> core_;
    detail::pooled_connection* pc_ = nullptr;
    std::shared_ptr<detail::tx_link> tx_;  // the transaction begun here, while it is open
};

/// A write transaction (BEGIN IMMEDIATE) holding the writer lane from its
/// first statement. Move-only.
/// Without commit() it rolls back when destroyed, before the writer
/// connection serves anyone else.
class transaction {
  public:
    transaction() = default;
    transaction(transaction&& other) noexcept;
    transaction& operator=(transaction&& other) noexcept;
    ~transaction();

    /// COMMIT. SQLITE_BUSY (a reader's lock, in the rollback journal modes)
    /// is waited out up to busy_timeout; a commit that fails rolls the
    /// transaction back and throws. The writer goes to the next in line as
    /// soon as COMMIT is done, on the worker. Takes any completion token,
    /// like the session's operations.
    template <class Token = asio::use_awaitable_t<>>
    auto commit(Token&& token = {}) {
        return start(std::forward<Token>(token), [this] { return commit_op(); });
    }
    /// ROLLBACK.
    template <class Token = asio::use_awaitable_t<>>
    auto rollback(Token&& token = {}) {
        return start(std::forward<Token>(token), [this] { return rollback_op(); });
    }

    bool active() const noexcept { return link_ != nullptr; }

  private:
    friend class session;
    transaction(std::shared_ptr<detail::tx_link> link, session writer) noexcept;

    asio::awaitable<void> commit_op();
    asio::awaitable<void> rollback_op();
    /// make() started with `token`; finished: errc::transaction_state.
    template <class Token, class Make>
    auto start(Token&& token, Make make) {
        return detail::start_checked<void>(
            std::forward<Token>(token), [this] { check_active(); }, io_executor(), std::move(make));
    }
    void check_active() const;
    asio::any_io_executor io_executor() const;

    /// Closes the transaction for its session; returns where it ran. Throws
    /// errc::transaction_state when finished or orphaned.
    detail::tx_link finish();

    std::shared_ptr<detail::tx_link> link_;
    session writer_;  // empty when the transaction runs on the session's own connection
};

/// A savepoint of a begin() transaction (session::begin_nested()). Move-only.
/// release() keeps its work in the transaction, rollback() undoes it and the
/// transaction goes on; dropped without either, it is rolled back before the
/// session's next statement in the transaction (or its commit). Its
/// statements run through its session, which must outlive it. Inside
/// another savepoint it nests: releasing or rolling back the outer one ends
/// the inner ones too.
class savepoint {
  public:
    savepoint() = default;
    savepoint(savepoint&& other) noexcept;
    savepoint& operator=(savepoint&& other) noexcept;
    ~savepoint();

    /// RELEASE: its work stays, for the transaction's commit. A release that
    /// fails leaves it to be rolled back, as if dropped.
    template <class Token = asio::use_awaitable_t<>>
    auto release(Token&& token = {}) {
        return start(std::forward<Token>(token), [this] { return end_op(false); });
    }
    /// ROLLBACK TO, then RELEASE: its work is undone, the transaction goes on.
    template <class Token = asio::use_awaitable_t<>>
    auto rollback(Token&& token = {}) {
        return start(std::forward<Token>(token), [this] { return end_op(true); });
    }

    /// Neither released nor rolled back yet.
    bool active() const noexcept { return link_ != nullptr; }

  private:
    friend class session;
    savepoint(session* s, std::shared_ptr<detail::tx_link> link, std::uint64_t id) noexcept;

    asio::awaitable<void> end_op(bool undo);
    /// make() started with `token`; ended: errc::transaction_state.
    template <class Token, class Make>
    auto start(Token&& token, Make make) {
        return detail::start_checked<void>(
            std::forward<Token>(token), [this] { check_active(); }, io_executor(), std::move(make));
    }
    void check_active() const;
    asio::any_io_executor io_executor() const;
    /// Leaves it to the transaction's next step to roll back (when the
    /// transaction is still open on a connection).
    void abandon() noexcept;

    session* session_ = nullptr;
    std::shared_ptr<detail::tx_link> link_;
    std::uint64_t id_ = 0;
};

}  // namespace asqlite
