#include "asqlite/row.hpp"

#include "asqlite/result.hpp"

namespace asqlite {

int row::index_of(std::string_view name) const {
    for (int i = 0; i < size(); ++i) {
        if (column_name(i) == name) {
            return i;
        }
    }
    throw_error(errc::column_not_found, fmt::format("row has no column named '{}'", name));
}

void row::check_index(int i) const {
    if (i < 0 || i >= size()) {
        throw_error(
            errc::column_not_found,
            fmt::format("column index {} is out of range: the row has {} columns", i, size()));
    }
}

const std::vector<std::string>& result::columns() const {
    static const std::vector<std::string> none;
    return columns_ ? *columns_ : none;
}

}  // namespace asqlite
