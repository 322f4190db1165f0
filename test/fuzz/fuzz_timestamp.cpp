// fuzz_timestamp: parse_timestamp() and format_timestamp() (src/value.cpp),
// against SQLite's date functions.
//
// The input is the text of a timestamp column. Properties:
// 1. parse_timestamp() returns a time or throws asqlite::error with
//    errc::bad_timestamp, nothing else.
// 2. A time it returns is the one SQLite's date functions read from the same
//    text (julianday(), to SQLite's millisecond, within its rounding).
// 3. Round trip: format_timestamp() of it parses back to the same time, and
//    formats again to the same text.
// 4. It parses the forms SQLite's date functions produce: datetime() and
//    strftime('%Y-%m-%d %H:%M:%f') of the time SQLite reads from the input
//    (through julianday(), so that the day is normalised), whenever SQLite reads the
//    input as a date in the years a timestamp holds (1678 to 2261), parse
//    to SQLite's time.

#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "asqlite/error.hpp"
#include "asqlite/value.hpp"

namespace {

using namespace std::chrono;

[[noreturn]] void fail(const char* what, std::string_view text) {
    std::fprintf(stderr, "fuzz_timestamp: %s\ntext (%zu bytes): %.*s\n", what, text.size(),
                 static_cast<int>(text.size()), text.data());
    std::abort();
}

sqlite3* open_db() {
    sqlite3* db = nullptr;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        std::abort();
    }
    return db;
}

struct sqlite_reading {
    std::optional<std::int64_t> unix_ms;  // what julianday() reads, in Unix milliseconds
    // Through julianday(): datetime('2024-02-30') echoes the day it was given.
    std::optional<std::string> datetime;  // datetime(julianday(text))
    std::optional<std::string> with_ms;   // strftime('%Y-%m-%d %H:%M:%f', julianday(text))
};

sqlite_reading read_with_sqlite(sqlite3* db, std::string_view text) {
    static sqlite3_stmt* const stmt = [db] {
        sqlite3_stmt* s = nullptr;
        // julianday() is the exact millisecond count over 86400000.0; the
        // product rounds back to it (about 2^48, well inside a double).
        if (sqlite3_prepare_v2(db,
                               "SELECT CAST(round(julianday(?1) * 86400000.0) AS INTEGER) - "
                               "210866760000000, datetime(julianday(?1)), "
                               "strftime('%Y-%m-%d %H:%M:%f', julianday(?1))",
                               -1, &s, nullptr) != SQLITE_OK) {
            std::abort();
        }
        return s;
    }();
    sqlite3_bind_text(stmt, 1, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    sqlite_reading out;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        if (sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
            out.unix_ms = sqlite3_column_int64(stmt, 0);
        }
        if (sqlite3_column_type(stmt, 1) != SQLITE_NULL) {
            out.datetime = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1));
        }
        if (sqlite3_column_type(stmt, 2) != SQLITE_NULL) {
            out.with_ms = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2));
        }
    }
    sqlite3_reset(stmt);
    return out;
}

std::optional<asqlite::timestamp> parse(std::string_view text) {
    try {
        return asqlite::parse_timestamp(text);
    } catch (const asqlite::error& e) {
        if (e.code() != asqlite::make_error_code(asqlite::errc::bad_timestamp)) {
            fail("parse_timestamp threw another code than bad_timestamp", text);
        }
        return std::nullopt;
    }
}

std::int64_t micros_of(asqlite::timestamp t) {
    return duration_cast<microseconds>(t.time_since_epoch()).count();
}

/// SQLite's millisecond and our microsecond agree (SQLite rounds to the
/// nearest millisecond from a double).
bool same_time(std::int64_t unix_ms, asqlite::timestamp t) {
    const std::int64_t diff = micros_of(t) - unix_ms * 1000;
    return diff >= -1000 && diff <= 1000;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static sqlite3* const db = open_db();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const sqlite_reading sqlite = read_with_sqlite(db, text);

    if (const auto t = parse(text)) {
        // 2. SQLite reads the same time.
        if (!sqlite.unix_ms) {
            fail("parse_timestamp accepted a text SQLite cannot read as a date", text);
        }
        if (!same_time(*sqlite.unix_ms, *t)) {
            fail("parse_timestamp and SQLite read different times", text);
        }
        // 3. Round trip.
        const std::string formatted = asqlite::format_timestamp(*t);
        const auto back = parse(formatted);
        if (!back || micros_of(*back) != micros_of(*t)) {
            fail("format_timestamp's text does not parse back to the same time", formatted);
        }
        if (asqlite::format_timestamp(*back) != formatted) {
            fail("formatting twice gives two texts", formatted);
        }
    }

    // 4. SQLite's own forms, in our range.
    if (sqlite.unix_ms && sqlite.datetime) {
        const int year = std::atoi(sqlite.datetime->c_str());
        if (year >= 1678 && year <= 2261 && sqlite.datetime->size() == 19) {
            // datetime() drops the milliseconds; strftime's %f keeps them.
            const std::int64_t whole_seconds =
                *sqlite.unix_ms - ((*sqlite.unix_ms % 1000) + 1000) % 1000;
            const auto t = parse(*sqlite.datetime);
            if (!t || micros_of(*t) != whole_seconds * 1000) {
                fail("datetime()'s text does not parse to SQLite's time", *sqlite.datetime);
            }
            const auto t_ms = sqlite.with_ms ? parse(*sqlite.with_ms) : std::nullopt;
            if (!t_ms || !same_time(*sqlite.unix_ms, *t_ms)) {
                fail("strftime()'s text does not parse to SQLite's time",
                     sqlite.with_ms.value_or("(NULL)"));
            }
        }
    }
    return 0;
}
