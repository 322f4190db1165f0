#pragma once
// A prepared statement: RAII over sqlite3_stmt.
//
// Indices are 0-based everywhere: bind(0, v) binds the first parameter (SQL's
// ?1 or the first '?'), get<T>(0) reads the first column.
// Thread safety: a statement belongs to its connection; use it from one
// thread at a time, like the connection.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "asqlite/detail/decode.hpp"
#include "asqlite/error.hpp"
#include "asqlite/value.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace asqlite {

/// A type that can be bound as an SQL parameter.
template <class T>
concept bindable =
    std::same_as<T, std::nullptr_t> || std::same_as<T, std::nullopt_t> || std::integral<T> ||
    std::is_enum_v<T> || std::floating_point<T> || std::convertible_to<T, std::string_view> ||
    std::convertible_to<T, std::span<const std::byte>> || std::same_as<T, timestamp> ||
    std::same_as<T, value> || detail::is_optional<T>::value;

class statement {
  public:
    statement() = default;
    /// Prepares the first statement of `sql`; text after it other than
    /// whitespace, ';' or comments is an error (use connection::exec for
    /// scripts). `persistent` hints SQLite that the statement is kept long.
    statement(sqlite3* db, std::string_view sql, bool persistent = false);
    ~statement();
    statement(statement&& other) noexcept;
    statement& operator=(statement&& other) noexcept;
    statement(const statement&) = delete;
    statement& operator=(const statement&) = delete;

    int parameter_count() const noexcept;
    /// 0-based index of a named parameter; `name` may carry its prefix
    /// (":id", "@id", "$id") or not ("id"). Throws errc::unknown_parameter.
    int parameter_index(std::string_view name) const;

    /// Binds v to parameter `index`. Text and blobs are copied by SQLite
    /// (SQLITE_TRANSIENT): v may go away right after the call.
    template <bindable T>
    statement& bind(int index, const T& v) {
        bind_one(index, v, false);
        return *this;
    }

    template <bindable T>
    statement& bind(std::string_view name, const T& v) {
        return bind(parameter_index(name), v);
    }

    /// Binds params to parameters 0..n-1; throws errc::parameter_count_mismatch
    /// unless n equals parameter_count().
    template <bindable... P>
    statement& bind_all(const P&... params) {
        bind_each(false, params...);
        return *this;
    }
    /// As bind_all(), but text and blobs are borrowed, not copied (SQLite's
    /// SQLITE_STATIC): each must stay alive and unchanged until the
    /// statement is reset and its bindings are cleared or replaced. The
    /// connection's own calls bind this way, since their arguments outlive
    /// the statement lease, whose end resets the statement and clears them;
    /// it saves SQLite a copy (an allocation) of every text argument.
    template <bindable... P>
    statement& bind_all_borrowed(const P&... params) {
        bind_each(true, params...);
        return *this;
    }

    void bind_null(int index);
    void bind_int64(int index, std::int64_t v);
    void bind_double(int index, double v);
    void bind_text(int index, std::string_view v);
    void bind_blob(int index, std::span<const std::byte> v);
    void bind_value(int index, const value& v);

    /// Advances to the next row: true when a row is available, false when the
    /// statement is done. Errors throw asqlite::error with the SQL text.
    bool step();
    /// Makes the statement runnable again; bindings are kept.
    void reset() noexcept;
    void clear_bindings() noexcept;

    int column_count() const noexcept;
    std::string_view column_name(int i) const;
    value_type column_type(int i) const;
    std::int64_t column_int64(int i) const;
    double column_double(int i) const;
    std::string_view column_text(int i) const;
    std::span<const std::byte> column_blob(int i) const;
    /// Index of a result column by name; throws errc::column_not_found.
    int column_index(std::string_view name) const;

    /// Reads a column of the current row (after step() returned true).
    template <class T>
    T get(int i) const {
        check_column(i);
        return detail::decode_column<T>(*this, i);
    }
    template <class T>
    T get(std::string_view name) const {
        return detail::decode_column<T>(*this, column_index(name));
    }

    std::string_view sql() const noexcept;
    /// True when the statement makes no direct change to the database.
    bool readonly() const noexcept;
    bool valid() const noexcept { return stmt_ != nullptr; }
    sqlite3_stmt* native_handle() const noexcept { return stmt_; }

    /// Identifies the statement's result columns (names, count): equal keys
    /// mean the same columns. A prepared statement keeps its columns until
    /// SQLite prepares it again after a schema change, which it counts.
    struct layout_key {
        std::uint64_t statement = 0;  // unique per prepared statement in the process
        int reprepares = 0;
        bool operator==(const layout_key&) const = default;
    };
    layout_key layout() const noexcept;

  private:
    template <bindable... P>
    void bind_each([[maybe_unused]] bool borrow, const P&... params) {
        check_parameter_count(static_cast<int>(sizeof...(P)));
        int i = 0;
        (bind_one(i++, params, borrow), ...);
    }
    template <bindable T>
    void bind_one(int index, const T& v, bool borrow) {
        if constexpr (std::same_as<T, std::nullptr_t> || std::same_as<T, std::nullopt_t>) {
            bind_null(index);
        } else if constexpr (detail::is_optional<T>::value) {
            if (v) {
                bind_one(index, *v, borrow);
            } else {
                bind_null(index);
            }
        } else if constexpr (std::same_as<T, bool>) {
            bind_int64(index, v ? 1 : 0);
        } else if constexpr (std::is_enum_v<T>) {
            bind_one(index, static_cast<std::underlying_type_t<T>>(v), borrow);
        } else if constexpr (std::integral<T>) {
            if (!std::in_range<std::int64_t>(v)) {
                range_error(index, std::to_string(v));
            }
            bind_int64(index, static_cast<std::int64_t>(v));
        } else if constexpr (std::floating_point<T>) {
            bind_double(index, static_cast<double>(v));
        } else if constexpr (std::same_as<T, timestamp>) {
            bind_text(index, format_timestamp(v));  // a temporary: always copied
        } else if constexpr (std::same_as<T, value>) {
            bind_value(index, v, borrow);
        } else if constexpr (std::convertible_to<T, std::string_view>) {
            bind_text(index, std::string_view(v), borrow);
        } else {
            bind_blob(index, std::span<const std::byte>(v), borrow);
        }
    }
    void bind_text(int index, std::string_view v, bool borrow);
    void bind_blob(int index, std::span<const std::byte> v, bool borrow);
    void bind_value(int index, const value& v, bool borrow);
    void check_parameter_count(int given) const;
    void check_column(int i) const;
    void check_bind(int rc, int index);
    [[noreturn]] void range_error(int index, const std::string& v) const;

    sqlite3_stmt* stmt_ = nullptr;
    std::uint64_t serial_ = 0;  // layout_key::statement
};

}  // namespace asqlite
