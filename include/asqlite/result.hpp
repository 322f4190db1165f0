#pragma once
// The materialised outcome of one statement: column names, rows, rows
// affected and the connection's last insert rowid after it ran.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "asqlite/row.hpp"

namespace asqlite {

class result {
  public:
    result() = default;
    result(row::column_names columns, std::vector<row> rows, std::int64_t rows_affected,
           std::int64_t last_insert_id)
        : columns_(std::move(columns)),
          rows_(std::move(rows)),
          rows_affected_(rows_affected),
          last_insert_id_(last_insert_id) {}

    const std::vector<std::string>& columns() const;
    int column_count() const noexcept { return columns_ ? static_cast<int>(columns_->size()) : 0; }
    std::string_view column_name(int i) const { return columns().at(static_cast<std::size_t>(i)); }
    const std::vector<row>& rows() const noexcept { return rows_; }
    std::size_t size() const noexcept { return rows_.size(); }
    bool empty() const noexcept { return rows_.empty(); }
    const row& operator[](std::size_t i) const { return rows_.at(i); }
    auto begin() const noexcept { return rows_.begin(); }
    auto end() const noexcept { return rows_.end(); }

    /// Rows changed by an INSERT, UPDATE or DELETE; 0 for read-only statements.
    std::int64_t rows_affected() const noexcept { return rows_affected_; }
    std::int64_t last_insert_id() const noexcept { return last_insert_id_; }

    /// Every row mapped to T (described struct, tuple or single value). The
    /// columns are matched to T even when no row came back, as
    /// connection::query<T> does, so a target that cannot map always fails.
    template <class T>
    std::vector<T> as() const {
        const detail::row_reader<T> reader(*this);
        std::vector<T> out;
        out.reserve(rows_.size());
        for (const auto& r : rows_) {
            out.push_back(reader.read(r));
        }
        return out;
    }

  private:
    row::column_names columns_;
    std::vector<row> rows_;
    std::int64_t rows_affected_ = 0;
    std::int64_t last_insert_id_ = 0;
};

}  // namespace asqlite
