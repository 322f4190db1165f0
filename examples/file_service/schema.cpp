#include "schema.hpp"

#include <fmt/format.h>

#include "asqlite/logger.hpp"
#include "asqlite/schema.hpp"

namespace file_service {

std::string_view stored_file_columns() {
    static const std::string columns = fmt::format("{}, content_type", asqlite::file_info_columns);
    return columns;
}

const std::vector<asqlite::migration>& migrations() {
    static const std::vector<asqlite::migration> all = {
        {1, "fileinfo",
         R"sql(CREATE TABLE IF NOT EXISTS "fileinfo" (
    "id" INTEGER PRIMARY KEY,
    "file_id" VARCHAR UNIQUE,
    "filename" VARCHAR NOT NULL,
    "file_path" VARCHAR NOT NULL,
    "description" VARCHAR,
    "file_size" INTEGER,
    "status" INTEGER NOT NULL DEFAULT (0),
    "request_id" VARCHAR,
    "create_time" DATETIME NOT NULL DEFAULT (CURRENT_TIMESTAMP)
);
CREATE INDEX IF NOT EXISTS "ix_fileinfo_request_id" ON "fileinfo" ("request_id");
)sql"},
        {2, "fileinfo_content_type", R"sql(ALTER TABLE "fileinfo" ADD COLUMN "content_type" VARCHAR;
)sql"},
    };
    return all;
}

std::vector<std::int64_t> prepare_database(const asqlite::engine& e) {
    {
        auto c = e.connect();
        if (asqlite::has_table(c, "fileinfo") &&
            !asqlite::has_table(c, asqlite::migrations_table)) {
            asqlite::baseline(e, migrations(), 1);
            asqlite::logger::global().log(asqlite::log_level::info,
                                          "file service: database made by init_db recorded at "
                                          "migration 1");
        }
    }
    auto applied = asqlite::migrate(e, migrations());
    for (const std::int64_t v : applied) {
        asqlite::logger::global().log(asqlite::log_level::info,
                                      "file service: applied migration {} ({})", v,
                                      migrations()[static_cast<std::size_t>(v - 1)].name);
    }
    return applied;
}

}  // namespace file_service
