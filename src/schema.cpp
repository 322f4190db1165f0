#include "asqlite/schema.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace asqlite {

std::string_view to_sql(column_type type) noexcept {
    switch (type) {
        case column_type::integer:
            return "INTEGER";
        case column_type::real:
            return "REAL";
        case column_type::text:
            return "TEXT";
        case column_type::varchar:
            return "VARCHAR";
        case column_type::blob:
            return "BLOB";
        case column_type::boolean:
            return "BOOLEAN";
        case column_type::datetime:
            return "DATETIME";
        case column_type::numeric:
            return "NUMERIC";
    }
    return "TEXT";
}

std::string_view to_string(table_status status) noexcept {
    switch (status) {
        case table_status::created:
            return "created";
        case table_status::already_present:
            return "already present";
        case table_status::dropped:
            return "dropped";
        case table_status::absent:
            return "absent";
    }
    return "?";
}

namespace {
std::string doubled(std::string_view text, char quote) {
    std::string out(1, quote);
    for (char c : text) {
        out += c;
        if (c == quote) {
            out += quote;
        }
    }
    out += quote;
    return out;
}
}  // namespace

std::string sql_literal(std::string_view text) {
    return doubled(text, '\'');
}
std::string quote_identifier(std::string_view name) {
    return doubled(name, '"');
}

table::table(std::string name, std::vector<column_def> columns, std::vector<index_def> indexes)
    : name_(std::move(name)), columns_(std::move(columns)), indexes_(std::move(indexes)) {
    if (name_.empty()) {
        throw_error(errc::invalid_option, "table name is empty");
    }
    if (columns_.empty()) {
        throw_error(errc::invalid_option, fmt::format("table '{}' has no columns", name_));
    }
    const auto key_columns = std::count_if(columns_.begin(), columns_.end(),
                                           [](const column_def& c) { return c.primary_key; });
    for (const auto& c : columns_) {
        if (c.name.empty()) {
            throw_error(errc::invalid_option,
                        fmt::format("table '{}' has an unnamed column", name_));
        }
        if (std::count_if(columns_.begin(), columns_.end(),
                          [&](const column_def& o) { return o.name == c.name; }) > 1) {
            throw_error(errc::invalid_option,
                        fmt::format("table '{}' declares column '{}' twice", name_, c.name));
        }
        // SQLite allows AUTOINCREMENT only on a single-column INTEGER PRIMARY
        // KEY; a composite key would silently drop it.
        if (c.autoincrement &&
            !(c.primary_key && c.type == column_type::integer && key_columns == 1)) {
            throw_error(errc::invalid_option,
                        fmt::format("column '{}.{}': autoincrement needs a single-column INTEGER "
                                    "primary key",
                                    name_, c.name));
        }
    }
    for (const auto& ix : indexes_) {
        if (ix.name.empty() || ix.columns.empty()) {
            throw_error(errc::invalid_option,
                        fmt::format("table '{}' has an index without a name or columns", name_));
        }
        for (const auto& col : ix.columns) {
            if (std::none_of(columns_.begin(), columns_.end(),
                             [&](const column_def& c) { return c.name == col; })) {
                throw_error(errc::column_not_found,
                            fmt::format("index '{}' names column '{}', which table '{}' lacks",
                                        ix.name, col, name_));
            }
        }
    }
}

std::string table::create_sql() const {
    std::vector<std::string> parts;
    std::vector<std::string> keys;
    for (const auto& c : columns_) {
        if (c.primary_key) {
            keys.push_back(quote_identifier(c.name));
        }
    }
    const bool inline_key = keys.size() == 1;
    for (const auto& c : columns_) {
        std::string col = fmt::format("{} {}", quote_identifier(c.name), to_sql(c.type));
        if (c.primary_key && inline_key) {
            col += " PRIMARY KEY";
            if (c.autoincrement) {
                col += " AUTOINCREMENT";
            }
        }
        if (c.not_null) {
            col += " NOT NULL";
        }
        if (c.unique) {
            col += " UNIQUE";
        }
        if (c.default_sql) {
            col += fmt::format(" DEFAULT ({})", *c.default_sql);
        }
        parts.push_back(std::move(col));
    }
    if (keys.size() > 1) {
        parts.push_back(fmt::format("PRIMARY KEY ({})", fmt::join(keys, ", ")));
    }
    return fmt::format("CREATE TABLE IF NOT EXISTS {} (\n    {}\n)", quote_identifier(name_),
                       fmt::join(parts, ",\n    "));
}

std::vector<std::string> table::create_index_sql() const {
    std::vector<std::string> out;
    for (const auto& ix : indexes_) {
        std::vector<std::string> cols;
        for (const auto& c : ix.columns) {
            cols.push_back(quote_identifier(c));
        }
        out.push_back(fmt::format("CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                                  ix.unique ? "UNIQUE " : "", quote_identifier(ix.name),
                                  quote_identifier(name_), fmt::join(cols, ", ")));
    }
    return out;
}

std::string table::drop_sql() const {
    return fmt::format("DROP TABLE IF EXISTS {}", quote_identifier(name_));
}

metadata& metadata::global() {
    static metadata instance;
    return instance;
}

void metadata::add(table t) {
    if (find(t.name()) != nullptr) {
        throw_error(errc::invalid_option,
                    fmt::format("table '{}' is already registered in this metadata", t.name()));
    }
    tables_.push_back(std::move(t));
}

const table* metadata::find(std::string_view name) const noexcept {
    for (const auto& t : tables_) {
        if (t.name() == name) {
            return &t;
        }
    }
    return nullptr;
}

bool has_table(connection& c, std::string_view name) {
    return c.scalar<std::int64_t>(
               "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", name) > 0;
}

namespace {

/// fn() all or nothing: in a write transaction of its own (BEGIN
/// IMMEDIATE), or, inside a transaction the caller has open (session::
/// write(fn), begin()), in a savepoint of it, so the caller's COMMIT or
/// ROLLBACK decides.
template <class Fn>
auto atomically(connection& c, Fn fn) {
    if (!c.in_transaction()) {
        transaction_guard tx(c, transaction_mode::immediate);
        auto out = fn();
        tx.commit();
        return out;
    }
    c.exec("SAVEPOINT asqlite_schema");
    try {
        auto out = fn();
        c.exec("RELEASE asqlite_schema");
        return out;
    } catch (...) {
        if (c.in_transaction()) {  // (an error may have ended it)
            c.exec("ROLLBACK TO asqlite_schema");
            c.exec("RELEASE asqlite_schema");
        }
        throw;
    }
}
}  // namespace

std::vector<table_report> metadata::create_all(connection& c, create_options options) const {
    std::vector<table_report> report;
    if (options.dry_run) {
        for (const auto& t : tables_) {
            report.push_back({t.name(), has_table(c, t.name()) ? table_status::already_present
                                                               : table_status::created});
        }
        return report;
    }
    return atomically(c, [&] {
        for (const auto& t : tables_) {
            const bool existed = has_table(c, t.name());
            if (!existed) {
                c.exec(t.create_sql());
            }
            for (const auto& ix : t.create_index_sql()) {
                c.exec(ix);
            }
            report.push_back(
                {t.name(), existed ? table_status::already_present : table_status::created});
        }
        return std::move(report);
    });
}

std::vector<table_report> metadata::drop_all(connection& c) const {
    std::vector<table_report> report;
    return atomically(c, [&] {
        for (auto it = tables_.rbegin(); it != tables_.rend(); ++it) {
            const bool existed = has_table(c, it->name());
            c.exec(it->drop_sql());
            report.push_back({it->name(), existed ? table_status::dropped : table_status::absent});
        }
        return std::move(report);
    });
}

}  // namespace asqlite
