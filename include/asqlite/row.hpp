#pragma once
// A materialised result row: values plus the shared column names.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "asqlite/detail/decode.hpp"
#include "asqlite/value.hpp"

namespace asqlite {

class row {
  public:
    using column_names = std::shared_ptr<const std::vector<std::string>>;

    row() = default;
    row(column_names names, std::vector<value> values)
        : names_(std::move(names)), values_(std::move(values)) {}

    int size() const noexcept { return static_cast<int>(values_.size()); }
    /// Throws errc::column_not_found for an index out of range.
    const value& operator[](int i) const {
        check_index(i);
        return values_[static_cast<std::size_t>(i)];
    }
    const std::vector<value>& values() const noexcept { return values_; }

    /// Checked typed access, 0-based; see detail::decode_column for the rules.
    template <class T>
    T get(int i) const {
        check_index(i);
        return detail::decode_column<T>(*this, i);
    }
    template <class T>
    T get(std::string_view name) const {
        return detail::decode_column<T>(*this, index_of(name));
    }
    /// The whole row as a described struct, a tuple or a single value.
    template <class T>
    T as() const {
        return detail::row_reader<T>(*this).read(*this);
    }

    int index_of(std::string_view name) const;

    // column_source interface
    int column_count() const noexcept { return size(); }
    std::string_view column_name(int i) const { return (*names_)[static_cast<std::size_t>(i)]; }
    value_type column_type(int i) const { return (*this)[i].type(); }
    std::int64_t column_int64(int i) const { return (*this)[i].integer(); }
    double column_double(int i) const { return (*this)[i].real(); }
    std::string_view column_text(int i) const { return (*this)[i].text(); }
    std::span<const std::byte> column_blob(int i) const { return (*this)[i].bytes(); }

  private:
    void check_index(int i) const;

    column_names names_;
    std::vector<value> values_;
};

}  // namespace asqlite
