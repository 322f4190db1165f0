#include "asqlite/file_info.hpp"

namespace asqlite {

const table& file_info_table() {
    static const table instance(
        "fileinfo",
        {
            // A rowid alias, as the original's SQLModel declaration renders;
            // AUTOINCREMENT would add a sqlite_sequence write to every insert.
            {.name = "id", .type = column_type::integer, .primary_key = true},
            {.name = "file_id", .type = column_type::varchar, .unique = true},
            {.name = "filename", .type = column_type::varchar, .not_null = true},
            {.name = "file_path", .type = column_type::varchar, .not_null = true},
            {.name = "description", .type = column_type::varchar},
            {.name = "file_size", .type = column_type::integer},
            {.name = "status", .type = column_type::integer, .not_null = true, .default_sql = "0"},
            {.name = "request_id", .type = column_type::varchar},
            {.name = "create_time",
             .type = column_type::datetime,
             .not_null = true,
             .default_sql = "CURRENT_TIMESTAMP"},
        },
        {{.name = "ix_fileinfo_request_id", .columns = {"request_id"}}});
    return instance;
}

const metadata& file_info_metadata() {
    static const metadata instance = [] {
        metadata m;
        m.add(file_info_table());
        return m;
    }();
    return instance;
}

}  // namespace asqlite
