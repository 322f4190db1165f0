#pragma once
// A scoped session: `co_await engine.session()` or
// `co_await asqlite::get_async_session()`. It holds no connection of its
// own. Each statement runs on the read connection the worker running it
// picks (the most recently used idle one, or a new one while the pool has
// room) and gives back when it ends; a session keeps a connection only while
// a transaction is open on it (`execute("BEGIN")`; a begin() transaction
// holds the writer lane instead, see below), and gives it
// back when the transaction ends or the session is destroyed. A statement
// waits for a connection (FIFO, pool_timeout, cancellation) only when every
// one is held that way.
//
// Transactions begun with SQL behave as on one connection: `BEGIN IMMEDIATE`
// (or EXCLUSIVE) through execute() takes the writer lane, and the session
// keeps it until a statement ends the transaction (COMMIT, ROLLBACK, END)
// or the session is destroyed (rolled back); once SQLite has rolled it back
// by itself (an interrupted write), statements fail until that ROLLBACK.
// `BEGIN` (deferred) and `SAVEPOINT` start a read transaction on a read
// connection: a write inside it fails with errc::transaction_state rather
// than run outside it, on the writer.
//
// Reads and writes: a file database has one writer connection (the writer
// lane) besides the read connections. A statement that writes is routed to
// the writer lane (FIFO, same timeout and cancellation as the pool) and runs
// there in autocommit; begin() makes the session's transaction hold the
// writer from its first statement (BEGIN IMMEDIATE runs with it, in its hop)
// until commit or rollback, and every statement of the session runs on it.
// write(fn) runs fn inside BEGIN IMMEDIATE ... COMMIT on the writer in one
// hop. Each of these waits for the writer in its own job, and the writer
// passes from one to the next on the worker, with no trip through the io
// thread between. So writers never contend inside SQLite and never see
// "database is locked" from each other; readers never wait for writers
// (WAL). A :memory: database, or pool_size 1, has a single connection for
// both.
//
// Every operation runs on the engine's blocking pool and completes on the
// awaiting coroutine's executor. Errors are asqlite::error (code, SQLite's
// message, SQL text); a cancelled operation throws asqlite::error with
// asio::error::operation_aborted. (A coroutine already cancelled when it
// co_awaits an operation gets Asio's own boost::system::system_error from
// that co_await, as with any awaitable: Asio checks before the operation
// starts.)
//
// Thread safety: a session is used by one coroutine at a time and runs one
// operation at a time (like an Asio socket). With several io threads, run
// coroutines that use cancellation on a strand, as Asio requires.
// Lifetimes: SQL text and view parameters (std::string_view, const char*,
// spans) must stay valid until the operation completes; with `co_await` on
// the call itself that is always so. A transaction must not outlive its
// session.
// Cancellation: per-operation cancellation (asio::cancellation_signal,
// awaitable operators `||`) stops a running statement through SQLite's
// progress handler; the operation completes only after the worker has let go
// of the connection. A transaction destroyed without commit() (also by an
// exception or a cancellation) rolls back on the blocking pool before its
// connection is reused; a connection whose state is unknown is closed.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/detail/completion.hpp"
#include "asqlite/detail/operation.hpp"
#include "asqlite/detail/row_snapshot.hpp"
#include "asqlite/detail/sql_text.hpp"
#include "asqlite/result.hpp"

namespace asqlite {

namespace asio = boost::asio;

class session;
class transaction;

namespace detail {
class engine_core;
struct pooled_connection;
struct tx_link;
struct op_state;
class driver;

/// The job of a single-row read, made from the parameters: the row goes
/// into a snapshot that the job carries until the caller has read it.
inline auto captured_row(std::string_view sql) {
    return [sql](auto params) {
        return [sql, params = std::move(params), snap = snapshot_lease()](connection& c) {
            return std::apply(
                [&](const auto&... p) {
                    return c.read_one_row(
                        sql,
                        [&snap](const statement& st, bool has_row) {
                            snap.get().capture(st, has_row);
                            return &snap.get();
                        },
                        p...);
                },
                params);
        };
    };
}

/// The job of a statement whose whole result is made on the blocking pool
/// by call(connection&, sql, params...), made from the parameters.
template <class Call>
auto materialised(std::string_view sql, Call call) {
    return [sql, call](auto params) {
        return [sql, call, params = std::move(params)](connection& c) {
            return std::apply([&](const auto&... p) { return call(c, sql, p...); }, params);
        };
    };
}

/// The finish of an operation whose value is its result.
struct take_value {
    template <class V>
    V operator()(V&& v) const {
        return std::move(v);
    }
};
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

    /// Zero or one row as T. (The row is copied into the connection's
    /// buffer on the blocking pool and becomes a T here, on the caller's
    /// thread: see detail/row_snapshot.hpp.)
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

    /// The session belongs to an engine (not moved from or default-made).
    bool valid() const noexcept { return core_ != nullptr; }
    /// A transaction of this session is open: begin()'s, or one begun with
    /// SQL through execute().
    bool in_transaction() const noexcept;

  private:
    friend class transaction;
    friend class detail::driver;

    /// A statement operation giving a T: make_job(params) is its job on the
    /// blocking pool, finish(job's value) makes the T on the caller's
    /// executor. args: the parameters, then perhaps a completion token.
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
    /// make() (an awaitable) started with `token` (detail::start_operation).
    /// A session that belongs to no engine refuses a token other than
    /// use_awaitable at once (errc::transaction_state); with use_awaitable,
    /// the co_await throws it.
    template <class T, class Token, class Make>
    auto start(Token&& token, Make make) {
        if constexpr (!detail::is_use_awaitable<Token>) {
            check_usable();
        }
        return detail::start_operation<T>(std::forward<Token>(token), io_executor(),
                                          std::move(make));
    }

    void check_usable() const;
    void release() noexcept;
    asio::any_io_executor io_executor() const;
    asio::awaitable<transaction> begin_op();
    detail::tx_link* open_tx() const noexcept;
    /// The session holds a connection inside a transaction begun with SQL
    /// (on a read connection, or on a single-connection lane).
    bool holds_sql_transaction() const noexcept;
    /// errc::transaction_state: a write transaction cannot start inside a
    /// read transaction begun with SQL (`BEGIN`, `SAVEPOINT`).
    [[noreturn]] static void throw_in_sql_read_transaction();
    /// After a statement on the writer lane that left the writer `pc` with
    /// the session: inside a transaction (`BEGIN IMMEDIATE`), it becomes the
    /// session's transaction, begun by SQL; otherwise pc goes back to `lane`
    /// (rolled back on the way).
    void keep_sql_transaction(detail::pooled_connection* pc, detail::engine_core* lane) noexcept;
    /// After a statement of a transaction begun with SQL: gives the writer
    /// back when the transaction has ended. When SQLite ended it by itself
    /// after a failed or cancelled statement, the session keeps the writer
    /// and refuses every statement (errc::transaction_state) until the
    /// user's ROLLBACK, COMMIT or END: nothing runs in autocommit that the
    /// user meant to be inside.
    void after_sql_statement(detail::sql_end end, bool failed) noexcept;
    /// After the first statement of a begin() transaction that waited for
    /// the writer: the writer it kept becomes the transaction's (or goes
    /// back, when the transaction is gone).
    static void adopt_writer(detail::tx_link& tx, detail::op_state& state) noexcept;
    /// Gives the connection back when nothing keeps it here any more (no
    /// transaction open on it, none dropped and still to roll back).
    void unpin_if_idle() noexcept;

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
    /// make() started with `token` (see session::start); a transaction no
    /// longer active refuses a token other than use_awaitable at once.
    template <class Token, class Make>
    auto start(Token&& token, Make make) {
        if constexpr (!detail::is_use_awaitable<Token>) {
            check_active();
        }
        return detail::start_operation<void>(std::forward<Token>(token), io_executor(),
                                             std::move(make));
    }
    void check_active() const;
    asio::any_io_executor io_executor() const;

    /// Closes the transaction for its session; returns where it ran. Throws
    /// errc::transaction_state when finished or orphaned.
    detail::tx_link finish();

    std::shared_ptr<detail::tx_link> link_;
    session writer_;  // empty when the transaction runs on the session's own connection
};

}  // namespace asqlite
