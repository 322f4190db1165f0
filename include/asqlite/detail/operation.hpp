#pragma once
// One operation of a session (a statement, run(fn) or write(fn)) as the
// compiled driver sees it: a job to run on a connection, and a completion.
// The templates of session.hpp make one from the caller's parameters, row
// type and completion token; src/session_driver.cpp routes it
// (statement_router) and performs each step. Nothing else of the engine is
// visible here.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "asqlite/connection.hpp"
#include "asqlite/detail/completion.hpp"
#include "asqlite/detail/row_snapshot.hpp"

namespace asqlite {
class session;
}  // namespace asqlite

namespace asqlite::detail {

namespace asio = boost::asio;

enum class operation_kind : std::uint8_t {
    statement,  // execute, scalar, one, one_or_none, all: one SQL statement
    run,        // run(fn): fn on a read connection, or inside the open transaction
    write,      // write(fn): fn inside its own write transaction, or the open one
};

class operation {
  public:
    /// On a worker: the operation's work on `c` (again on a retry). Its
    /// value stays inside the operation; exceptions propagate.
    virtual void run(connection& c) = 0;
    /// On the operation's executor, exactly once: completes the caller with
    /// the value, or with `failure`. Nothing of the operation may be touched
    /// afterwards: it may live in the awaiting coroutine's frame, which the
    /// completion ends. What the caller's handler throws (a coroutine
    /// resumed inline that throws, a callback) propagates, as out of any
    /// Asio completion.
    virtual void complete(std::exception_ptr failure) = 0;
    /// Where the caller resumes, and the slot its cancellation comes through.
    virtual asio::any_io_executor executor() const noexcept = 0;
    virtual asio::cancellation_slot cancellation_slot() const noexcept = 0;

    operation_kind kind() const noexcept { return kind_; }
    std::string_view sql() const noexcept { return sql_; }

    /// Room for the driver's state, which lives exactly as long as the
    /// operation runs (src/session_driver.cpp checks that it fits).
    static constexpr std::size_t driver_size = 384;
    void* driver_storage() noexcept { return driver_; }

  protected:
    operation(operation_kind kind, std::string_view sql) noexcept : kind_(kind), sql_(sql) {}
    operation(operation&& other) noexcept : kind_(other.kind_), sql_(other.sql_) {}
    ~operation() = default;

  private:
    operation_kind kind_;
    std::string_view sql_;
    alignas(std::max_align_t) unsigned char driver_[driver_size];
};

/// Routes `op` for session `s` and completes it, never inline: a failure
/// found before the first step (an unusable session) is posted.
void drive(session& s, operation& op) noexcept;

/// An operation giving a T: job(connection&) makes a V on the blocking
/// pool, finish(V&&) the T on the caller's executor (a row read's snapshot
/// lives in the job until then). Made as an argument of async_initiate with
/// use_awaitable, so it lives in the awaiting frame (Asio keeps the
/// initiation's arguments there until the handler runs) and costs no
/// allocation of its own; other completion tokens reach it through
/// start_operation's coroutine.
/// Known limit: the steps pending for an operation hold it by plain
/// pointers, so a completion that is dropped without running (the
/// io_context destroyed, or no longer run, with the operation in flight)
/// frees neither the operation nor the coroutine awaiting it. Run the
/// io_context until the engine's operations have completed (async_close()
/// waits for that) before destroying it.
template <class T, class Job, class Finish>
class operation_of final : public operation {
  public:
    using handler_type =
        typename asio::async_result<asio::use_awaitable_t<>, op_signature<T>>::handler_type;
    using value_type = std::invoke_result_t<Job&, connection&>;

    operation_of(operation_kind kind, std::string_view sql, Job job, Finish finish)
        : operation(kind, sql), job_(std::move(job)), finish_(std::move(finish)) {}
    operation_of(operation_of&& other) noexcept(std::is_nothrow_move_constructible_v<Job>)
        : operation(std::move(other)),
          job_(std::move(other.job_)),
          finish_(std::move(other.finish_)) {}

    /// The initiation: keeps the handler and hands the operation over.
    void start(handler_type handler, session& s) noexcept {
        handler_.emplace(std::move(handler));
        drive(s, *this);
    }

    void run(connection& c) override {
        if constexpr (std::is_void_v<value_type>) {
            job_(c);
        } else {
            value_.emplace(job_(c));
        }
    }

    void complete(std::exception_ptr failure) override {
        // The handler leaves the frame before it ends the frame.
        handler_type h = std::move(*handler_);
        handler_.reset();
        if constexpr (std::is_void_v<T>) {
            std::move(h)(std::move(failure));
        } else {
            std::optional<T> out;
            if (!failure) {
                try {
                    out.emplace(finish());  // a row that does not map throws
                } catch (...) {
                    failure = std::current_exception();
                }
            }
            // Called once, outside the try: what it throws is the caller's.
            if (out) {
                std::move(h)(nullptr, std::move(*out));
            } else {
                std::move(h)(std::move(failure), T{});
            }
        }
    }

    asio::any_io_executor executor() const noexcept override { return handler_->get_executor(); }
    asio::cancellation_slot cancellation_slot() const noexcept override {
        return asio::get_associated_cancellation_slot(*handler_);
    }

  private:
    T finish() {
        if constexpr (std::is_void_v<value_type>) {
            return finish_();
        } else {
            return finish_(std::move(*value_));
        }
    }

    Job job_;
    Finish finish_;
    std::optional<std::conditional_t<std::is_void_v<value_type>, bool, value_type>> value_;
    std::optional<handler_type> handler_;
};

/// Starts an operation_of<T> for `s` as an awaitable (see operation_of).
template <class T, class Job, class Finish>
asio::awaitable<T> start_on(session& s, operation_kind kind, std::string_view sql, Job job,
                            Finish finish) {
    asio::use_awaitable_t<> token;
    return asio::async_initiate<asio::use_awaitable_t<>, op_signature<T>>(
        [&s](auto handler, operation_of<T, Job, Finish>&& op) { op.start(std::move(handler), s); },
        token, operation_of<T, Job, Finish>(kind, sql, std::move(job), std::move(finish)));
}

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
}  // namespace asqlite::detail
