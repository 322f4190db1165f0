#pragma once
// Declarative schema: tables, columns and indexes that render their DDL, a
// metadata registry, and create_all / drop_all (one transaction each).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "asqlite/connection.hpp"

namespace asqlite {

enum class column_type { integer, real, text, varchar, blob, boolean, datetime, numeric };

std::string_view to_sql(column_type type) noexcept;

struct column_def {
    std::string name;
    column_type type = column_type::text;
    bool primary_key = false;
    bool autoincrement = false;  // only with an INTEGER primary key
    bool not_null = false;
    bool unique = false;
    /// The DEFAULT clause's SQL expression, used verbatim: "0",
    /// "CURRENT_TIMESTAMP", or sql_literal("text") for a quoted string.
    std::optional<std::string> default_sql;
};

struct index_def {
    std::string name;
    std::vector<std::string> columns;
    bool unique = false;
};

/// 'text' with embedded quotes doubled: a safe SQL string literal for DDL.
std::string sql_literal(std::string_view text);
/// "name" with embedded quotes doubled: a safe SQL identifier.
std::string quote_identifier(std::string_view name);

class table {
  public:
    table(std::string name, std::vector<column_def> columns, std::vector<index_def> indexes = {});

    const std::string& name() const noexcept { return name_; }
    const std::vector<column_def>& columns() const noexcept { return columns_; }
    const std::vector<index_def>& indexes() const noexcept { return indexes_; }

    /// CREATE TABLE IF NOT EXISTS ... ; the index statements separately.
    std::string create_sql() const;
    std::vector<std::string> create_index_sql() const;
    std::string drop_sql() const;

  private:
    std::string name_;
    std::vector<column_def> columns_;
    std::vector<index_def> indexes_;
};

enum class table_status { created, already_present, dropped, absent };

std::string_view to_string(table_status status) noexcept;

/// Whether `c`'s database has a table named `name` (sqlite_schema).
bool has_table(connection& c, std::string_view name);

struct table_report {
    std::string table;
    table_status status;
};

struct create_options {
    /// Report what would happen and change nothing.
    bool dry_run = false;
};

class metadata {
  public:
    /// The application's registry, empty until it adds its tables; what
    /// init_db(engine) creates. Not thread-safe: fill it at startup. (The
    /// seed's `fileinfo` is not in it: see file_info_metadata().)
    static metadata& global();

    /// Registers a table; a second table of the same name replaces nothing
    /// and throws errc::invalid_option.
    void add(table t);
    const std::vector<table>& tables() const noexcept { return tables_; }
    const table* find(std::string_view name) const noexcept;

    /// Creates every missing table and index, all or nothing: in one
    /// IMMEDIATE transaction, or inside the transaction open on `c`
    /// (session::write(fn), begin()) as a savepoint of it. Idempotent;
    /// returns, per table, whether it was created or already there.
    std::vector<table_report> create_all(connection& c, create_options options = {}) const;
    /// Drops every registered table (reverse order), all or nothing (as
    /// create_all).
    std::vector<table_report> drop_all(connection& c) const;

  private:
    std::vector<table> tables_;
};

}  // namespace asqlite
