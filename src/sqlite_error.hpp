#pragma once
// Turns a failed sqlite3 call into asqlite::error with SQLite's message.

#include <sqlite3.h>

#include <string>
#include <string_view>

#include "asqlite/error.hpp"

namespace asqlite::detail {

[[noreturn]] inline void throw_sqlite(sqlite3* db, int rc, std::string_view sql = {}) {
    // sqlite3_extended_errcode is more precise than rc when the call left it.
    const int extended = db != nullptr ? sqlite3_extended_errcode(db) : rc;
    const int code = (extended & 0xff) == (rc & 0xff) ? extended : rc;
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    throw_error(std::error_code(code, category()), std::move(message), std::string(sql));
}

}  // namespace asqlite::detail
