#pragma once
// A single-row result captured on a blocking-pool thread and turned into the
// caller's type on the io thread.
//
// The snapshot copies the row into buffers that keep their capacity (a
// small cache of snapshots per io thread, see snapshot_lease), so the
// worker allocates nothing once warm, and the row's strings are allocated
// and freed on the io thread (why: docs/architecture.md, "Single-row reads
// are built on the caller's side"). Only single-row reads take this way:
// all() builds its rows on the blocking pool, to keep large results off
// the io thread.
//
// The snapshot is the operation's (not the connection's: a connection goes
// back to the pool when the job ends, before the continuation reads the
// row). It is written by the job and read by the continuation, which the
// completion's hand-over orders.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "asqlite/detail/decode.hpp"
#include "asqlite/statement.hpp"
#include "asqlite/value.hpp"

namespace asqlite::detail {

class row_snapshot {
  public:
    /// Worker side: the column names of `st` and whether it has a row; when
    /// it has, the row's values.
    void capture(const statement& st, bool has_row);

    /// io side: the row as T (nullopt when there is none). The mapping of
    /// columns to T is checked even without a row, as connection::one_or_none
    /// does. Large buffers are let go of afterwards.
    template <class T>
    std::optional<T> read() {
        struct release_large {
            row_snapshot& s;
            ~release_large() { s.trim(); }
        } trim_after{*this};
        // Matching columns to T by name costs more than reading the row: the
        // match is kept per thread and reused while the column names are the
        // same as last time (a statement's names rarely change).
        struct known_layout {
            std::string names;
            std::optional<row_reader<T>> reader;
        };
        thread_local known_layout known;
        const std::string_view names(bytes_.data(), names_size_);
        if (!known.reader || known.names != names) {
            known.reader.reset();
            known.reader.emplace(*this);  // checks the mapping; may throw
            known.names.assign(names);
        }
        std::optional<T> out;  // one object, returned on every path: no move
        if (has_row_) {
            known.reader->read_into(out, *this);
        }
        return out;
    }

    // column_source interface (the captured row)
    int column_count() const noexcept { return static_cast<int>(cells_.size()); }
    std::string_view column_name(int i) const { return slice(names_[index(i)]); }
    value_type column_type(int i) const { return cells_[index(i)].type; }
    // A value of another type reads as 0 or empty (decode checks the type
    // first).
    std::int64_t column_int64(int i) const {
        const cell& c = cells_[index(i)];
        return c.type == value_type::integer ? std::bit_cast<std::int64_t>(c.bits) : 0;
    }
    double column_double(int i) const {
        const cell& c = cells_[index(i)];
        return c.type == value_type::real ? std::bit_cast<double>(c.bits) : 0.0;
    }
    std::string_view column_text(int i) const { return bytes_of(cells_[index(i)]); }
    std::span<const std::byte> column_blob(int i) const {
        const auto text = bytes_of(cells_[index(i)]);
        return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
    }

  private:
    struct range {
        std::size_t offset = 0;
        std::size_t size = 0;
    };
    // A column's value in 16 bytes: the worker writes the cells and the io
    // thread reads them, so the row is kept small (the names, rewritten
    // only for another statement, are apart).
    struct cell {
        value_type type = value_type::null;
        std::uint32_t size = 0;  // text, blob: length (SQLite's limit is below 2^31)
        std::uint64_t bits = 0;  // integer, real: the value's bits; text, blob: offset in bytes_
    };
    static_assert(sizeof(cell) == 16);

    static std::size_t index(int i) noexcept { return static_cast<std::size_t>(i); }
    std::string_view slice(range r) const noexcept { return {bytes_.data() + r.offset, r.size}; }
    std::string_view bytes_of(const cell& c) const noexcept {
        if (c.type != value_type::text && c.type != value_type::blob) {
            return {};
        }
        return {bytes_.data() + c.bits, c.size};
    }
    range append(std::string_view text);
    void trim() noexcept;

    std::vector<cell> cells_;
    std::vector<range> names_;    // per column, in bytes_
    std::string bytes_;           // names (NUL after each), then texts and blobs
    std::size_t names_size_ = 0;  // bytes_ up to the end of the names
    // The statement whose names bytes_ holds: a capture from the same one
    // keeps them (a snapshot is usually reused for the same query).
    statement::layout_key names_of_;
    bool has_row_ = false;
};

/// One operation's snapshot, taken on the io side from a small cache of the
/// current thread and given back to it (or freed, when the cache is full)
/// when the lease ends. Movable, so it can ride in the operation's function.
class snapshot_lease {
  public:
    snapshot_lease();
    snapshot_lease(snapshot_lease&& other) noexcept = default;
    snapshot_lease& operator=(snapshot_lease&&) = delete;
    ~snapshot_lease();

    row_snapshot& get() const noexcept { return *snap_; }

  private:
    std::unique_ptr<row_snapshot> snap_;
};

}  // namespace asqlite::detail
