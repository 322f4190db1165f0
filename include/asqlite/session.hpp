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

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/detail/engine_core.hpp"
#include "asqlite/detail/row_snapshot.hpp"
#include "asqlite/detail/sql_text.hpp"
#include "asqlite/detail/statement_router.hpp"
#include "asqlite/result.hpp"

namespace asqlite {

namespace asio = boost::asio;

class session;
class transaction;

namespace detail {
using acquire_handler = asio::any_completion_handler<void(std::exception_ptr, session)>;
/// Checks out a connection of `lane` (the pool, or its writer lane); the
/// completion goes to `work`, the handler's own executor, work-tracked.
void async_acquire(engine_core& lane, acquire_handler handler, asio::any_io_executor work);
/// A session at once when an idle connection is free and nobody waits (no
/// trip through the io_context); an empty session otherwise.
session try_acquire(engine_core& lane);

asio::awaitable<session> acquire_on(engine_core& lane);
/// A session of `lane` holding no connection yet; errc::pool_closed once
/// the engine is closed.
session new_session(std::shared_ptr<engine_core> lane);

/// An open transaction, shared by its session and its transaction object
/// (both movable, io side): where the session's statements go until the
/// transaction ends, and whether the session is still there. One begun by
/// SQL (`BEGIN IMMEDIATE` through execute) has no transaction object: the
/// session holds the writer connection itself until SQLite's transaction
/// ends.
struct tx_link {
    tx_link(engine_core* lane, pooled_connection* conn, bool sql = false) noexcept
        : core(lane), pc(conn), by_sql(sql) {}
    engine_core* core;      // the lane it runs on (the writer lane, or the session's own)
    pooled_connection* pc;  // its connection; null while a begin() waits for the writer
    bool by_sql;            // begun by a statement; the session gives pc back to core
    bool open = true;       // false once committed, rolled back or dropped
    bool session_gone = false;
    // A begin() that found the writer busy takes it with its first
    // statement: the transaction object's writer session, which gets pc
    // then (null once the object is gone or finished).
    session* writer = nullptr;
    bool connection_gone = false;  // BEGIN ran, but the connection was closed since

    /// The writer of a begin() transaction whose BEGIN has run: a
    /// statement there is one job on it. Null otherwise.
    pooled_connection* ready_writer() const noexcept {
        return !by_sql && pc != nullptr && !pc->begin_pending ? pc : nullptr;
    }
};

/// Inside run(fn) outside a transaction: when `e` is a write refused by a
/// read connection, throws the documented error for it (errc::readonly,
/// saying what to use instead); otherwise returns.
void explain_refused_write(connection& c, const error& e);

/// Calls `fn` where it lives: for attempts made from a coroutine frame that
/// outlives them (the frame awaits each attempt, and an operation completes
/// only after the worker is done), so a retry needs no copy of fn and its
/// parameters.
template <class R, class Fn>
auto by_ref(Fn& fn) {
    return [&fn](connection& c) -> R { return fn(c); };
}
/// The job of a single-row read, made from the parameters: the row goes
/// into a snapshot that the function carries (it lives in the operation's
/// frame until the continuation has read it).
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
}  // namespace detail

class session {
  public:
    session() = default;
    session(std::shared_ptr<detail::engine_core> core, detail::pooled_connection* pc) noexcept
        : core_(std::move(core)), pc_(pc) {}
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
        return statement_op<result, result*>(
            sql,
            materialised(sql, [](connection& c, std::string_view text,
                                 const auto&... p) { return c.execute(text, p...); }),
            take_in_place, std::forward<A>(args)...);
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
        return statement_op<T, T*>(
            sql,
            materialised(sql, [](connection& c, std::string_view text,
                                 const auto&... p) { return c.scalar<T>(text, p...); }),
            take_in_place, std::forward<A>(args)...);
    }

    /// Exactly one row as T (described struct, tuple or scalar).
    template <class T, class... A>
    auto one(std::string_view sql, A&&... args) {
        return statement_op<T, detail::row_snapshot*>(
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
        return statement_op<std::optional<T>, detail::row_snapshot*>(
            sql, detail::captured_row(sql),
            [](detail::row_snapshot* snap) { return snap->read<T>(); }, std::forward<A>(args)...);
    }

    /// Every row as T.
    template <class T, class... A>
    auto all(std::string_view sql, A&&... args) {
        return statement_op<std::vector<T>, std::vector<T>*>(
            sql,
            materialised(sql, [](connection& c, std::string_view text,
                                 const auto&... p) { return c.query<T>(text, p...); }),
            take_in_place, std::forward<A>(args)...);
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
        using R = std::invoke_result_t<Fn&, connection&>;
        check_usable();
        return asio::async_initiate<Token, detail::op_signature<R>>(
            [this](auto handler, Fn f) {
                if (detail::tx_link* tx = open_tx(); tx != nullptr && tx->ready_writer()) {
                    detail::session_op<R>(tx->core, tx->pc, std::move(f), std::move(handler), true);
                } else {
                    auto ex = detail::operation_executor(handler, core_->io_executor());
                    asio::co_spawn(std::move(ex), run_op(std::move(f)), std::move(handler));
                }
            },
            token, std::move(fn));
    }

    /// Runs fn(connection&) as one write transaction (BEGIN IMMEDIATE, fn,
    /// COMMIT; ROLLBACK when fn throws) on the writer lane, in one hop. Inside
    /// an open transaction, fn just joins it. When another process holds the
    /// database lock, the transaction is retried (fn runs again) until
    /// busy_timeout: fn should only touch the database.
    template <class Fn, class Token = asio::use_awaitable_t<>>
    auto write(Fn fn, Token&& token = {}) {
        return start<std::invoke_result_t<Fn&, connection&>>(
            std::forward<Token>(token),
            [this, fn = std::move(fn)]() mutable { return write_op(std::move(fn)); });
    }

  private:
    template <class Fn>
    asio::awaitable<std::invoke_result_t<Fn&, connection&>> run_op(Fn f) {
        using R = std::invoke_result_t<Fn&, connection&>;
        try {
            if (open_tx() != nullptr) {
                co_return co_await in_open_transaction<R>(f, {});
            }
            auto refusing_writes = [&f](connection& c) -> R {
                try {
                    return f(c);
                } catch (const error& e) {
                    detail::explain_refused_write(c, e);
                    throw;
                }
            };
            co_return co_await on_connection<R>(refusing_writes);
        } catch (const boost::system::system_error& e) {
            detail::rethrow_if_aborted(e);
            throw;
        }
    }

    template <class Fn>
    asio::awaitable<std::invoke_result_t<Fn&, connection&>> write_op(Fn fn) {
        using R = std::invoke_result_t<Fn&, connection&>;
        check_usable();
        try {
            if (open_tx() != nullptr) {
                co_return co_await in_open_transaction<R>(fn, {});
            }
            if (holds_sql_transaction()) {
                if (core_->writer_lane() != nullptr) {
                    throw_in_sql_read_transaction();
                }
                // A single connection: fn joins the transaction begun on it.
                co_return co_await on_connection<R>(fn);
            }
            auto in_transaction = [fn = std::move(fn)](connection& c) mutable -> R {
                transaction_guard tx(c, transaction_mode::immediate);
                if constexpr (std::is_void_v<R>) {
                    fn(c);
                    tx.commit();
                } else {
                    R out = fn(c);
                    tx.commit();
                    return out;
                }
            };
            // BUSY (another process holds the lock) is retried on a timer: the
            // transaction was rolled back, so fn runs again from the start.
            if (detail::engine_core* lane = core_->writer_lane()) {
                // Waits for the writer in the job itself; the writer goes back
                // on the worker (rolled back, if fn left it inside).
                std::optional<detail::op_state> state;
                co_return co_await detail::retry_busy(*lane, [&] {
                    state.emplace();
                    state->may_pin = false;
                    return detail::async_run_on_lane<R>(
                        lane, &*state, detail::by_ref<R>(in_transaction), detail::frameless);
                });
            }
            co_return co_await detail::retry_busy(*core_,
                                                  [&] { return on_connection<R>(in_transaction); });
        } catch (const boost::system::system_error& e) {
            detail::rethrow_if_aborted(e);
            throw;
        }
    }

  public:
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
    bool in_transaction() const noexcept { return open_tx() != nullptr || holds_sql_transaction(); }

  private:
    friend class transaction;

    void check_usable() const;
    void release() noexcept;
    asio::awaitable<transaction> begin_op();
    detail::tx_link* open_tx() const noexcept { return tx_ && tx_->open ? tx_.get() : nullptr; }

    /// fn once inside the open transaction `tx`. A BEGIN still pending runs
    /// first in the same job; when it fails with BUSY (another process holds
    /// the lock), fn has not run and the attempt is repeated on a timer, as
    /// long as the transaction is still open.
    template <class R, class Fn>
    static asio::awaitable<R> in_transaction_op(const std::shared_ptr<detail::tx_link>& tx,
                                                Fn& fn) {
        detail::engine_core* lane = tx->core;
        detail::pooled_connection* pc = tx->pc;
        if (pc == nullptr) {
            return first_on_writer<R>(tx, fn);
        }
        if (tx->ready_writer()) {
            return detail::session_op<R>(lane, pc, detail::by_ref<R>(fn), asio::use_awaitable,
                                         true);
        }
        // fn lives in the caller's frame; the link is kept for the retries.
        auto attempt = [link = tx, &fn] {
            if (!link->open) {
                throw_error(errc::transaction_state, "the transaction has ended");
            }
            return detail::session_op<R>(link->core, link->pc, detail::by_ref<R>(fn),
                                         detail::frameless, true);
        };
        return detail::retry_busy(*lane, attempt, nullptr, [pc] { return pc->begin_pending; });
    }
    /// The first statement of a begin() transaction that found the writer
    /// busy: it waits for the writer in turn in its own job (pool_timeout,
    /// cancellation), which runs BEGIN IMMEDIATE and fn, so the writer's
    /// previous holder hands it over on the worker with no hop between.
    /// BUSY on BEGIN (another process) is retried on a timer as above.
    template <class R, class Fn>
    static asio::awaitable<R> first_on_writer(std::shared_ptr<detail::tx_link> tx, Fn& fn) {
        if (tx->connection_gone) {
            detail::throw_transaction_ended();
        }
        std::optional<detail::op_state> state;
        struct adopt {
            detail::tx_link* tx;
            std::optional<detail::op_state>* state;
            ~adopt() {
                if (*state) {
                    adopt_writer(*tx, **state);
                }
            }
        } guard{tx.get(), &state};
        auto job = [&fn, &state](connection& c) -> R {
            c.exec("BEGIN IMMEDIATE");
            state->hold = true;  // the transaction is the session's now
            return fn(c);
        };
        auto attempt = [&] {
            if (!tx->open) {
                throw_error(errc::transaction_state, "the transaction has ended");
            }
            state.emplace();
            return detail::async_run_on_lane<R>(tx->core, &*state, detail::by_ref<R>(job),
                                                detail::frameless);
        };
        co_return co_await detail::retry_busy(*tx->core, attempt, nullptr,
                                              [&state] { return !state->hold; });
    }
    /// After first_on_writer's job: the writer it kept becomes the
    /// transaction's (or goes back, when the transaction is gone).
    static void adopt_writer(detail::tx_link& tx, detail::op_state& state) noexcept;
    /// fn inside the session's open transaction (open_tx() is not null);
    /// `sql` is fn's statement, if it is one.
    template <class R, class Fn>
    asio::awaitable<R> in_open_transaction(Fn& fn, std::string_view sql) {
        if (tx_->by_sql) {
            return in_sql_transaction<R>(fn, detail::sql_end_of(sql));
        }
        return in_transaction_op<R>(tx_, fn);
    }
    /// fn inside a write transaction begun with SQL, on the writer the
    /// session holds. The writer goes back to the pool when a statement
    /// ends the transaction (`end` says which would). When SQLite ends it
    /// by itself after a failed or cancelled statement, the session keeps
    /// the writer and refuses every statement (errc::transaction_state)
    /// until the user's ROLLBACK (which then succeeds), COMMIT or END (which
    /// fail): nothing runs in autocommit that the user meant to be inside.
    /// A COMMIT that meets SQLITE_BUSY (a reader's lock, in the rollback
    /// journal modes) is retried: SQLite keeps the transaction open.
    template <class R, class Fn>
    asio::awaitable<R> in_sql_transaction(Fn& fn, detail::sql_end end) {
        struct after_statement {
            session* self;
            detail::sql_end end;
            bool failed = true;
            ~after_statement() { self->after_sql_statement(end, failed); }
        } after{this, end};
        detail::engine_core* lane = tx_->core;
        detail::pooled_connection* pc = tx_->pc;
        auto job = [&fn, end](connection& c) -> R {
            if (!c.in_transaction()) {
                if (end != detail::sql_end::rollback) {
                    detail::throw_transaction_ended();
                }
                c.exec("BEGIN");  // for the user's ROLLBACK of what SQLite rolled back
            }
            return fn(c);
        };
        auto attempt = [&] {
            return detail::async_run<R>(lane, pc, detail::by_ref<R>(job), detail::frameless);
        };
        // Only a COMMIT gets the retry loop's frame.
        const bool commit = end == detail::sql_end::commit;
        auto retry = [&] {
            return detail::retry_busy(*lane, attempt, nullptr, [pc] { return pc->in_transaction; });
        };
        if constexpr (std::is_void_v<R>) {
            if (commit) {
                co_await retry();
            } else {
                detail::value_of(co_await attempt());
            }
            after.failed = false;
        } else {
            std::optional<R> out;
            if (commit) {
                out.emplace(co_await retry());
            } else {
                out.emplace(detail::value_of(co_await attempt()));
            }
            after.failed = false;
            co_return std::move(*out);
        }
    }
    /// After a statement on the writer lane that left the writer `pc` with
    /// the session: inside a transaction (`BEGIN IMMEDIATE`), it becomes the
    /// session's transaction, begun by SQL; otherwise pc goes back to `lane`
    /// (rolled back on the way).
    void keep_sql_transaction(detail::pooled_connection* pc, detail::engine_core* lane) noexcept;
    /// After a statement of a transaction begun with SQL: gives the writer
    /// back when the transaction has ended (see in_sql_transaction).
    void after_sql_statement(detail::sql_end end, bool failed) noexcept;
    /// The session holds a connection inside a transaction begun with SQL
    /// (on a read connection, or on a single-connection lane).
    bool holds_sql_transaction() const noexcept {
        return pc_ != nullptr && pc_->in_transaction && !pc_->pending_rollback;
    }
    /// errc::transaction_state: a write transaction cannot start inside a
    /// read transaction begun with SQL (`BEGIN`, `SAVEPOINT`).
    [[noreturn]] static void throw_in_sql_read_transaction();
    /// Gives the connection back when nothing keeps it here any more (no
    /// transaction open on it, none dropped and still to roll back).
    void unpin_if_idle() noexcept;
    /// Checks out a connection of the session's lane to hold (waiting in
    /// turn, pool_timeout, cancellation).
    asio::awaitable<void> pin();

    /// fn once on this session's connection: the one it holds, or, holding
    /// none, whichever connection a worker finds idle when it runs the job
    /// (detail::op_state). A connection left inside a transaction stays
    /// with the session until the transaction ends. Only when nothing is
    /// idle (the pool is full, or others wait) does the session check one
    /// out here, in turn.
    template <class R, class Fn>
    asio::awaitable<R> on_connection(Fn& fn) {
        if (pc_ == nullptr) {
            detail::op_state state;
            {
                adopt_pinned guard{this, &state};
                auto outcome = co_await detail::async_run_on_idle<R>(
                    core_.get(), &state, detail::by_ref<R>(fn), detail::frameless);
                if constexpr (std::is_void_v<R>) {
                    detail::value_of(std::move(outcome));
                    if (!state.none_idle) {
                        co_return;
                    }
                } else {
                    R value = detail::value_of(std::move(outcome));
                    if (!state.none_idle) {
                        co_return value;
                    }
                }
            }
        }
        co_return co_await on_checked_out<R>(fn);
    }
    /// on_connection() once no connection was idle: fn on the connection
    /// the session holds, or else on one it checks out here in turn (and
    /// gives back afterwards unless fn left it inside a transaction).
    template <class R, class Fn>
    asio::awaitable<R> on_checked_out(Fn& fn) {
        if (pc_ == nullptr) {
            co_await pin();
        }
        struct unpin {
            session* self;
            ~unpin() { self->unpin_if_idle(); }
        } guard{this};
        co_return detail::value_of(co_await op<R>(detail::by_ref<R>(fn), detail::frameless));
    }

    /// A connection that a unbound statement left inside a transaction
    /// (state->pinned) becomes the session's when this goes out of scope, and
    /// state->pinned is cleared: the op_state may be used again.
    struct adopt_pinned {
        session* self;
        detail::op_state* state;
        ~adopt_pinned() {
            if (state->pinned != nullptr) {
                self->pc_ = std::exchange(state->pinned, nullptr);
            }
        }
    };

    template <class R, class Fn, class Token>
    auto op(Fn&& fn, Token&& token) {
        check_usable();
        return detail::session_op<R>(core_.get(), pc_, std::forward<Fn>(fn),
                                     std::forward<Token>(token));
    }

    /// fn's value kept in the function object itself, which routed() keeps
    /// in its frame; the hop carries a pointer to it, and take_in_place
    /// moves it out at the end. So the frame holds one value instead of a
    /// temporary per co_await, which kept the frame of execute() over the
    /// size Asio recycles (see routed()).
    template <class Fn>
    static auto in_place(Fn fn) {
        using T = std::invoke_result_t<Fn&, connection&>;
        return [fn = std::move(fn), slot = std::optional<T>()](connection& c) mutable -> T* {
            slot.emplace(fn(c));  // (again on a retry)
            return &*slot;
        };
    }
    static constexpr auto take_in_place = [](auto* value) { return std::move(*value); };

    /// The job of a statement whose whole result is made on the blocking
    /// pool by call(connection&, sql, params...), made from the parameters.
    template <class Call>
    static auto materialised(std::string_view sql, Call call) {
        return [sql, call](auto params) {
            return in_place([sql, call, params = std::move(params)](connection& c) {
                return std::apply([&](const auto&... p) { return call(c, sql, p...); }, params);
            });
        };
    }

    /// A statement operation giving a T: make_job(params) is its job on the
    /// blocking pool (returning an R), finish(R) makes the T here (see
    /// routed()). args: the parameters, then perhaps a completion token.
    template <class T, class R, class MakeJob, class Finish, class... A>
    auto statement_op(std::string_view sql, MakeJob make_job, Finish finish, A&&... args) {
        return detail::split_token<detail::op_signature<T>>(
            [&](auto params, auto&& token) {
                return start<T>(
                    token, [this, sql, make_job, finish, params = std::move(params)]() mutable {
                        return routed<R>(sql, make_job(std::move(params)), std::move(finish));
                    });
            },
            std::forward<A>(args)...);
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
        return detail::start_operation<T>(std::forward<Token>(token),
                                          core_ ? core_->io_executor() : asio::any_io_executor{},
                                          std::move(make));
    }

    /// A statement's way: detail::statement_router decides each step, this
    /// performs it. fn(connection&) returns an R on the blocking pool;
    /// finish(R) makes the result here once the statement is done (a row
    /// read's snapshot lives in fn, in this frame, until then). The frame
    /// must stay within what Asio's frame cache recycles (1,020 bytes;
    /// test/frames/ checks, docs/architecture.md says why): one value, one
    /// op_state for every step, values travelling as pointers into fn.
    template <class R, class Fn, class Finish = std::identity>
    asio::awaitable<std::remove_cvref_t<std::invoke_result_t<Finish&, R>>> routed(
        std::string_view sql, Fn fn, Finish finish = {}) {
        check_usable();
        using detail::route;
        using detail::step_outcome;
        std::optional<R> value;
        // One unbound operation at a time: a read's, then the writer
        // lane's (one slot in the frame for all).
        std::optional<detail::op_state> state;
        detail::engine_core* lane = core_->writer_lane();
        detail::statement_router router(
            {open_tx() != nullptr, pc_ != nullptr, lane != nullptr, detail::sql_kind_of(sql)},
            core_->busy_budget());
        // A statement whose words do not say whether it writes asks SQLite
        // on the read connection first; when it writes, the job returns
        // without running it.
        bool writes = false;
        auto job = [&fn, &writes, sql, check = router.checks_writes()](connection& c) -> R {
            static_assert(std::is_pointer_v<R>, "a job's value travels as a pointer");
            if (check && c.writes(sql)) {
                writes = true;
                return nullptr;
            }
            return fn(c);
        };
        // The writer left inside a transaction by the last attempt on it
        // (BEGIN IMMEDIATE) becomes the session's transaction, begun by SQL.
        struct keep_if_begun {
            session* self;
            std::optional<detail::op_state>* state;
            detail::engine_core* lane;
            ~keep_if_begun() {
                if (*state && (*state)->pinned != nullptr) {
                    self->keep_sql_transaction(std::exchange((*state)->pinned, nullptr), lane);
                }
            }
        } keep{this, &state, lane};
        std::exception_ptr failure;
        try {
            for (route step = router.start(); step != route::done;) {
                step_outcome outcome = step_outcome::ok;
                try {
                    switch (step) {
                        case route::transaction:
                            // By reference: fn lives in this frame (a row read's
                            // snapshot is in it, and must outlive the job).
                            value.emplace(co_await in_open_transaction<R>(fn, sql));
                            break;
                        case route::held:
                        case route::checked_out:
                            value.emplace(co_await on_checked_out<R>(job));
                            break;
                        case route::idle_read: {
                            // A connection the job leaves inside a transaction
                            // (BEGIN) becomes the session's.
                            adopt_pinned guard{this, &state.emplace()};
                            state->shares = router.shares_reads();
                            R v = detail::value_of(co_await detail::async_run_on_idle<R>(
                                core_.get(), &*state, detail::by_ref<R>(job), detail::frameless));
                            if (state->none_idle) {
                                outcome = step_outcome::no_idle_connection;
                            } else {
                                value.emplace(v);
                            }
                            break;
                        }
                        case route::writer:
                            // The statement waits for the writer in its job, and
                            // the writer goes back on the worker: the next
                            // writer's job can follow at once.
                            if (state && state->pinned != nullptr) {  // a failed attempt's
                                lane->release(std::exchange(state->pinned, nullptr));
                            }
                            state.emplace();
                            value.emplace(detail::value_of(co_await detail::async_run_on_lane<R>(
                                lane, &*state, detail::by_ref<R>(fn), detail::frameless)));
                            break;
                        case route::wait:
                            core_->count_busy_retry();
                            co_await detail::wait_for(router.wait());
                            break;
                        case route::done:
                            break;
                        case route::fail:
                            std::rethrow_exception(failure);
                    }
                } catch (const error& e) {
                    if (step == route::fail) {
                        throw;
                    }
                    outcome = primary_code(e.code()) == errc::busy ? step_outcome::busy
                                                                   : step_outcome::failed;
                    failure = std::current_exception();
                }
                if (std::exchange(writes, false)) {
                    value.reset();
                    outcome = step_outcome::writes;
                }
                step = router.next(outcome, detail::route_clock::now());
            }
        } catch (const boost::system::system_error& e) {
            detail::rethrow_if_aborted(e);
            throw;
        }
        // finish() may throw too (a row that does not map).
        co_return finish(std::move(*value));
    }

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
        asio::any_io_executor fallback;
        if (link_ != nullptr) {
            fallback = link_->core->io_executor();
        } else if constexpr (!detail::is_use_awaitable<Token>) {
            throw_error(errc::transaction_state, "the transaction is already finished");
        }
        return detail::start_operation<void>(std::forward<Token>(token), std::move(fallback),
                                             std::move(make));
    }

    /// Closes the transaction for its session; returns where it ran. Throws
    /// errc::transaction_state when finished or orphaned.
    detail::tx_link finish();

    std::shared_ptr<detail::tx_link> link_;
    session writer_;  // empty when the transaction runs on the session's own connection
};

}  // namespace asqlite
