#pragma once
// A scoped session: one pooled connection, checked out by
// `co_await engine.session()` or `co_await asqlite::get_async_session()`,
// returned to the pool when the session is destroyed.
//
// Every operation runs on the engine's blocking pool in one hop and
// completes on the awaiting coroutine's executor. Operations take any Asio
// completion token; the coroutine forms (execute, one, all, ...) return
// asio::awaitable. Completion signature: void(std::exception_ptr, T) — the
// exception is an asqlite::error carrying the code, SQLite's message and the
// SQL text, or asqlite::error with asio::error::operation_aborted when the
// operation was cancelled.
//
// Thread safety: a session is used by one coroutine at a time and runs one
// operation at a time (like an Asio socket). With several io threads, run
// coroutines that use cancellation on a strand, as Asio requires.
// Lifetimes: SQL text and parameters passed as views (std::string_view,
// const char*, spans) must stay valid until the operation completes; with
// `co_await` on the call itself that is always so.
// Cancellation: per-operation cancellation (asio::cancellation_signal,
// awaitable operators `||`, asqlite::cancel_after) stops a running statement
// through SQLite's progress handler; the operation completes with
// operation_aborted only after the worker has let go of the connection.
// Transactions: a transaction destroyed without commit(), or a session
// destroyed inside a transaction, rolls back on the blocking pool before the
// connection is reused; a connection whose state is unknown is closed.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/detail/engine_core.hpp"
#include "asqlite/result.hpp"

namespace asqlite {

namespace asio = boost::asio;

/// A write transaction (BEGIN IMMEDIATE) on a session. Move-only. Without
/// commit() it rolls back when destroyed (before the session's next
/// operation, or before its connection returns to the pool). It must not
/// outlive its session: operations on it then throw errc::transaction_state.
class transaction {
public:
    transaction() = default;
    transaction(transaction&& other) noexcept;
    transaction& operator=(transaction&& other) noexcept;
    ~transaction();

    /// COMMIT. A failed commit rolls the transaction back and throws.
    template <class Token = asio::use_awaitable_t<>>
    auto commit(Token&& token = {}) {
        auto* pc = finish();
        return detail::session_op<void>(
            core_, pc,
            [](connection& c) {
                try {
                    c.exec("COMMIT");
                } catch (...) {
                    if (c.in_transaction()) {
                        c.exec("ROLLBACK");
                    }
                    throw;
                }
            },
            std::forward<Token>(token));
    }

    /// ROLLBACK.
    template <class Token = asio::use_awaitable_t<>>
    auto rollback(Token&& token = {}) {
        auto* pc = finish();
        return detail::session_op<void>(
            core_, pc,
            [](connection& c) {
                if (c.in_transaction()) {
                    c.exec("ROLLBACK");
                }
            },
            std::forward<Token>(token));
    }

    bool active() const noexcept { return pc_ != nullptr; }

private:
    friend class session;
    transaction(detail::engine_core* core, detail::pooled_connection* pc) noexcept
        : core_(core), pc_(pc), lease_(pc->lease) {}
    /// Ends the transaction object's claim; throws when it is not active or
    /// its session has already returned the connection.
    detail::pooled_connection* finish();

    detail::engine_core* core_ = nullptr;
    detail::pooled_connection* pc_ = nullptr;
    std::uint64_t lease_ = 0;
};

class session {
public:
    session() = default;
    session(std::shared_ptr<detail::engine_core> core, detail::pooled_connection* pc) noexcept
        : core_(std::move(core)), pc_(pc) {}
    session(session&& other) noexcept;
    session& operator=(session&& other) noexcept;
    ~session();

    /// Runs one statement; all rows are materialised.
    template <class... P>
    asio::awaitable<result> execute(std::string_view sql, P... params) {
        return async_execute(sql, std::make_tuple(std::move(params)...), asio::use_awaitable);
    }
    /// Token form: params as a tuple, e.g. async_execute(sql, std::tuple{id}, callback).
    template <class... P, class Token>
    auto async_execute(std::string_view sql, std::tuple<P...> params, Token&& token) {
        return op<result>(
            [sql, params = std::move(params)](connection& c) {
                return std::apply([&](const auto&... p) { return c.execute(sql, p...); }, params);
            },
            std::forward<Token>(token));
    }

    /// First column of the first row (see connection::scalar).
    template <class T, class... P>
    asio::awaitable<T> scalar(std::string_view sql, P... params) {
        return op<T>(
            [sql, params = std::make_tuple(std::move(params)...)](connection& c) {
                return std::apply([&](const auto&... p) { return c.scalar<T>(sql, p...); }, params);
            },
            asio::use_awaitable);
    }

    /// Exactly one row as T (described struct, tuple or scalar).
    template <class T, class... P>
    asio::awaitable<T> one(std::string_view sql, P... params) {
        return op<T>(
            [sql, params = std::make_tuple(std::move(params)...)](connection& c) {
                return std::apply([&](const auto&... p) { return c.one<T>(sql, p...); }, params);
            },
            asio::use_awaitable);
    }

    /// Zero or one row as T.
    template <class T, class... P>
    asio::awaitable<std::optional<T>> one_or_none(std::string_view sql, P... params) {
        return op<std::optional<T>>(
            [sql, params = std::make_tuple(std::move(params)...)](connection& c) {
                return std::apply([&](const auto&... p) { return c.one_or_none<T>(sql, p...); },
                                  params);
            },
            asio::use_awaitable);
    }

    /// Every row as T.
    template <class T, class... P>
    asio::awaitable<std::vector<T>> all(std::string_view sql, P... params) {
        return op<std::vector<T>>(
            [sql, params = std::make_tuple(std::move(params)...)](connection& c) {
                return std::apply([&](const auto&... p) { return c.query<T>(sql, p...); }, params);
            },
            asio::use_awaitable);
    }

    /// Runs fn(connection&) on the blocking pool in one hop; its value (or
    /// exception) comes back to the caller. For hot paths and multi-statement
    /// units of work. fn must not keep the connection reference.
    template <class Fn, class Token = asio::use_awaitable_t<>>
    auto run(Fn fn, Token&& token = {}) {
        using R = std::invoke_result_t<Fn&, connection&>;
        return op<R>(std::move(fn), std::forward<Token>(token));
    }

    /// BEGIN IMMEDIATE: a write transaction. Throws errc::transaction_state
    /// when one is already open on this session.
    template <class Token = asio::use_awaitable_t<>>
    auto begin(Token&& token = {}) {
        check_usable();
        if (pc_->tx_open) {
            throw_error(errc::transaction_state, "a transaction is already open on this session");
        }
        pc_->tx_open = true;
        return op<transaction>(
            [core = core_.get(), pc = pc_](connection& c) {
                try {
                    c.exec("BEGIN IMMEDIATE");
                } catch (...) {
                    pc->tx_open = false;
                    throw;
                }
                return transaction(core, pc);
            },
            std::forward<Token>(token));
    }

    bool valid() const noexcept { return pc_ != nullptr; }
    /// The connection is inside a transaction (as of the last operation).
    bool in_transaction() const noexcept { return pc_ != nullptr && pc_->in_transaction; }

private:
    friend class transaction;

    void check_usable() const;
    void release() noexcept;

    template <class R, class Fn, class Token>
    auto op(Fn&& fn, Token&& token) {
        check_usable();
        return detail::session_op<R>(core_.get(), pc_, std::forward<Fn>(fn),
                                     std::forward<Token>(token));
    }

    std::shared_ptr<detail::engine_core> core_;
    detail::pooled_connection* pc_ = nullptr;
};

}  // namespace asqlite
