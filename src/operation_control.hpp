#pragma once
// The async engine's hold on a connection's statements, from other threads:
// the worker marks the operation it runs, a cancellation names that
// operation, and close() refuses every operation from then on. SQLite's
// progress handler (src/connection.cpp) interrupts a statement of a
// cancelled or refused operation.

#include <cstdint>

#include "asqlite/connection.hpp"

namespace asqlite::detail {

struct operation_control {
    /// On the worker, around operation `op`'s statements.
    static void begin(connection& c, std::uint64_t op) noexcept;
    static void end(connection& c) noexcept;
    /// From any thread: operation `op`'s statements (and only its) fail
    /// with SQLITE_INTERRUPT.
    static void cancel(connection& c, std::uint64_t op) noexcept;
    /// From any thread, for close(): the running operation and every one
    /// begun later fail so. Statements outside an operation (a rollback
    /// before reuse) are not affected.
    static void refuse_all(connection& c) noexcept;
    static bool refusing(const connection& c) noexcept;
    /// The running operation was cancelled or refused.
    static bool cancelled(const connection& c) noexcept;
};

}  // namespace asqlite::detail
