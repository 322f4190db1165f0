#pragma once
// Streaming rows: `auto rows = co_await session.stream<T>(sql, params...)`,
// then `while (auto row = co_await rows.next()) { ... }`. The rows come in
// batches of stream_batch_rows, stepped on the blocking pool only when the
// consumer has taken the batch before: memory stays bounded by one batch
// however large the result, the first row arrives before the last is
// stepped, and a consumer that stops early stops the stepping.
//
// Outside a transaction, a stream reads on a session of its own, which
// holds one read connection in a read transaction (a consistent snapshot)
// from the first batch to the end. The connection goes back when next() has
// returned std::nullopt, or when the stream is destroyed (an early break, an
// exception, a cancellation): the statement is finalized and the read
// transaction rolled back on the blocking pool, so nothing is leaked and a
// checkpoint can complete once that is done.
//
// Inside a transaction (begin(), or one begun with SQL) the stream reads on
// the transaction's connection through the session that made it, and sees
// the transaction's own writes. The session must outlive the stream, and
// runs no other operation while a next() is in flight. A stream dropped
// early leaves its statement to the transaction's connection, which
// finalizes it before its next operation or when the transaction ends.
// See docs/async.md, "Streaming rows".
//
// Thread safety and lifetimes as for a session: one coroutine uses a
// stream, one next() at a time; the stream must not outlive its engine's
// io_context running.

#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/detail/completion.hpp"
#include "asqlite/detail/decode.hpp"
#include "asqlite/session.hpp"
#include "asqlite/statement.hpp"

namespace asqlite {

/// Rows a stream steps per hop to the blocking pool, at most.
inline constexpr std::size_t stream_batch_rows = 256;

namespace detail {

/// What a stream keeps between batches. `own` and the flags belong to the
/// consumer's side; `stmt`, `reader`, `rows` are filled on a worker inside
/// one of own's operations (which orders them with the consumer).
template <class T>
struct stream_state {
    explicit stream_state(session s) : own(std::move(s)) {}
    explicit stream_state(session* in_transaction) : user(in_transaction) {}

    session own;              // outside a transaction: the stream's own session
    session* user = nullptr;  // inside one: the session whose transaction it is
    session& runner() noexcept { return user != nullptr ? *user : own; }
    std::optional<statement> stmt;
    std::optional<row_reader<T>> reader;
    std::vector<T> rows;  // the batch being consumed
    std::size_t next = 0;
    std::size_t stepped = 0;    // rows stepped so far
    bool done = false;          // the statement has no more rows (finalized)
    bool in_read_tx = false;    // own holds a read connection (BEGIN ran)
    std::exception_ptr failed;  // what ended the stream, if it failed

    /// On a worker: the next batch into `rows`.
    void fill() {
        rows.clear();
        next = 0;
        while (rows.size() < stream_batch_rows) {
            const bool has_row = stmt->step();
            if (!reader) {
                // After the first step, also when no row comes back, so a
                // target that cannot map always fails (as connection::query).
                reader.emplace(*stmt);
            }
            if (!has_row) {
                stmt.reset();  // finalized: the statement's read lock ends
                done = true;
                return;
            }
            rows.push_back(reader->read(*stmt));
            ++stepped;
        }
    }
};

/// run(fn) jobs of a stream (named types: GCC 12 must not see a capturing
/// lambda inside a co_await expression, see docs/async.md).
template <class T, class Params>
struct stream_first_batch {
    stream_state<T>* st;
    const std::string* sql;
    const Params* params;
    void operator()(connection& c) const {
        st->stmt.emplace(c.prepare(*sql));
        std::apply([this](const auto&... p) { st->stmt->bind_all(p...); }, *params);
        st->fill();
    }
};
template <class T>
struct stream_next_batch {
    stream_state<T>* st;
    void operator()(connection&) const { st->fill(); }
};
template <class T>
struct stream_finalize {
    stream_state<T>* st;
    void operator()(connection&) const { st->stmt.reset(); }
};

}  // namespace detail

template <class T>
class row_stream {
  public:
    row_stream() = default;
    row_stream(row_stream&& other) noexcept = default;
    row_stream& operator=(row_stream&& other) noexcept {
        if (this != &other) {
            close_soon();
            st_ = std::move(other.st_);
        }
        return *this;
    }
    row_stream(const row_stream&) = delete;
    row_stream& operator=(const row_stream&) = delete;
    ~row_stream() { close_soon(); }

    /// The next row, or std::nullopt after the last (then the connection
    /// has gone back). Takes any completion token, completing with
    /// void(std::exception_ptr, std::optional<T>). After an error every
    /// next() fails with it again.
    template <class Token = asio::use_awaitable_t<>>
    auto next(Token&& token = {}) {
        return detail::start_checked<std::optional<T>>(
            std::forward<Token>(token), [this] { check_usable(); }, executor(),
            [this] { return next_op(st_); });
    }

    /// Rows stepped from SQLite so far (those handed out, and the rest of
    /// the current batch).
    std::size_t rows_stepped() const noexcept { return st_ ? st_->stepped : 0; }
    /// Whether the stream belongs to a session (not default-made or moved
    /// from).
    bool valid() const noexcept { return st_ != nullptr; }

  private:
    friend class session;
    explicit row_stream(std::shared_ptr<detail::stream_state<T>> st) : st_(std::move(st)) {}

    template <class Params>
    static asio::awaitable<row_stream> open(session& from, std::string sql, Params params) {
        row_stream out;
        if (from.in_transaction()) {
            out.st_ = std::make_shared<detail::stream_state<T>>(&from);
        } else {
            out.st_ = std::make_shared<detail::stream_state<T>>(session(from.core_, nullptr));
            co_await out.st_->own.execute("BEGIN");
            out.st_->in_read_tx = true;
        }
        detail::stream_state<T>& st = *out.st_;
        const detail::stream_first_batch<T, Params> first{&st, &sql, &params};
        co_await st.runner().run(first);
        co_return out;
    }

    static asio::awaitable<std::optional<T>> next_op(std::shared_ptr<detail::stream_state<T>> st) {
        if (!st) {
            throw_error(errc::transaction_state, "the stream was moved from");
        }
        if (st->failed) {
            std::rethrow_exception(st->failed);
        }
        if (st->next == st->rows.size() && !st->done) {
            const detail::stream_next_batch<T> more{st.get()};
            try {
                co_await st->runner().run(more);
            } catch (...) {
                st->failed = std::current_exception();
                throw;
            }
        }
        if (st->next < st->rows.size()) {
            co_return std::move(st->rows[st->next++]);
        }
        if (st->in_read_tx) {
            st->in_read_tx = false;
            co_await st->own.execute("COMMIT");  // the read connection goes back
        }
        co_return std::nullopt;
    }

    void check_usable() const {
        if (!st_) {
            throw_error(errc::transaction_state, "the stream was moved from");
        }
    }
    asio::any_io_executor executor() const {
        return st_ ? st_->runner().io_executor() : asio::any_io_executor{};
    }

    /// Destroyed before its end: the statement is finalized on the worker
    /// holding its connection, then the session (in the handler, the last
    /// owner) rolls the read transaction back and gives the connection back.
    void close_soon() noexcept {
        auto st = std::move(st_);
        if (st && st->user != nullptr) {
            if (st->stmt) {
                // Inside a transaction: its connection finalizes it. (Out of
                // memory, it is finalized here: no job runs on it now.)
                try {
                    st->user->hand_over_orphan(std::make_shared<statement>(std::move(*st->stmt)));
                } catch (...) {
                }
                st->stmt.reset();
            }
            return;
        }
        if (!st || !st->in_read_tx) {
            return;  // nothing held, or the session's own end suffices
        }
        try {
            detail::stream_state<T>* raw = st.get();
            const detail::stream_finalize<T> finalize{raw};
            raw->own.run(finalize,
                         [keep = std::move(st)](std::exception_ptr) mutable { keep.reset(); });
        } catch (...) {
            // No engine left: destroying the session rolls back what is left.
        }
    }

    std::shared_ptr<detail::stream_state<T>> st_;
};

template <class T, class... A>
auto session::stream(std::string_view sql, A&&... args) {
    return detail::split_token<detail::op_signature<row_stream<T>>>(
        [&](auto params, auto&& token) {
            return start<row_stream<T>>(
                token, [this, sql = std::string(sql), params = std::move(params)]() mutable {
                    return row_stream<T>::open(*this, std::move(sql), std::move(params));
                });
        },
        std::forward<A>(args)...);
}

}  // namespace asqlite
