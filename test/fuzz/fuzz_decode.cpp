// fuzz_decode: row decoding (include/asqlite/detail/decode.hpp) from each of
// the three column sources: a live statement, a materialised asqlite::row and
// the async engine's row_snapshot (its packed buffer, src/row_snapshot.cpp).
//
// The input describes one result row: 1 to 6 columns, each with a name and a
// value of any storage class (NULL, integer, real, text, blob; texts often
// shaped like timestamps), bound into `SELECT ?1 AS "name", ...`. Properties,
// for every column and every target type (bool, every integer width,
// an enum, float, double, string, blob, timestamp, value, optional<...>):
// 1. decoding returns exactly the value an independent oracle expects (the
//    bytes SQLite reports, integer range rules, bool 0/1, integer into
//    floating point, parse_timestamp for timestamps) or throws asqlite::error
//    with the code the oracle expects (null_value, type_mismatch,
//    value_out_of_range, bad_timestamp), nothing else;
// 2. all three sources give the same outcome, by index and by name; an
//    index out of range is errc::column_not_found;
// 3. whole rows: file_info (by column name), a tuple and a scalar map the
//    same way from every source, or fail with the same code, one of
//    column_not_found, extra_column, column_count_mismatch or a column's
//    code; a mapped struct holds exactly the per-column decodes.
// ASan checks that no decode reads outside the snapshot's buffer or the row.

#include <fuzzer/FuzzedDataProvider.h>
#include <sqlite3.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <typeinfo>
#include <utility>
#include <vector>

#include "asqlite/detail/decode.hpp"
#include "asqlite/detail/row_snapshot.hpp"
#include "asqlite/error.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/row.hpp"
#include "asqlite/statement.hpp"
#include "asqlite/value.hpp"

namespace {

using asqlite::errc;
using asqlite::value;
using asqlite::value_type;

enum class small_enum : std::int8_t {};
enum class wide_enum : std::uint64_t {};

[[noreturn]] void fail(const char* what, std::string_view detail) {
    std::fprintf(stderr, "fuzz_decode: %s: %.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

/// A decode's outcome, comparable across sources.
struct outcome {
    bool ok = false;
    std::error_code code;  // when !ok
    std::string bytes;     // when ok: the value, serialised exactly
    bool operator==(const outcome&) const = default;
};

outcome failed(errc code) {
    return {false, asqlite::make_error_code(code), {}};
}

template <class T>
std::string serialise(const T& v);

template <class T>
void append_raw(std::string& out, const T& v) {
    char raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    out.append(raw, sizeof(T));
}

std::string serialise_value(const value& v) {
    std::string out(1, static_cast<char>(v.type()));
    switch (v.type()) {
        case value_type::null:
            break;
        case value_type::integer:
            append_raw(out, v.integer());
            break;
        case value_type::real:
            append_raw(out, v.real());
            break;
        case value_type::text:
            out += v.text();
            break;
        case value_type::blob:
            out.append(reinterpret_cast<const char*>(v.bytes().data()), v.bytes().size());
            break;
    }
    return out;
}

template <class T>
std::string serialise(const T& v) {
    if constexpr (asqlite::detail::is_optional<T>::value) {
        return v ? "+" + serialise(*v) : std::string("-");
    } else if constexpr (std::same_as<T, value>) {
        return serialise_value(v);
    } else if constexpr (std::same_as<T, std::string>) {
        return v;
    } else if constexpr (std::same_as<T, asqlite::blob>) {
        return {reinterpret_cast<const char*>(v.data()), v.size()};
    } else if constexpr (std::same_as<T, asqlite::timestamp>) {
        std::string out;
        append_raw(out, v.time_since_epoch().count());
        return out;
    } else {
        std::string out;
        append_raw(out, v);  // integers, enums, float, double (NaN by its bits)
        return out;
    }
}

/// Decodes column i of s as T, catching asqlite::error.
template <class T, class Read>
outcome attempt(Read read) {
    try {
        return {true, {}, serialise<T>(read())};
    } catch (const asqlite::error& e) {
        return {false, e.code(), {}};
    }
}

/// What SQLite reports for one column of the row, read with its own API.
struct column {
    std::string name;
    value stored;
};

template <class T, bool = std::is_enum_v<T>>
struct underlying {
    using type = T;
};
template <class T>
struct underlying<T, true> {
    using type = std::underlying_type_t<T>;
};

/// The oracle: the outcome decoding `v` as T must have.
template <class T>
outcome expect(const value& v) {
    const value_type type = v.type();
    if constexpr (asqlite::detail::is_optional<T>::value) {
        if (type == value_type::null) {
            return {true, {}, "-"};
        }
        outcome inner = expect<typename T::value_type>(v);
        if (inner.ok) {
            inner.bytes = "+" + inner.bytes;
        }
        return inner;
    } else if constexpr (std::same_as<T, value>) {
        return {true, {}, serialise_value(v)};
    } else {
        if (type == value_type::null) {
            return failed(errc::null_value);
        }
        if constexpr (std::is_enum_v<T> || std::integral<T>) {
            using I = typename underlying<T>::type;
            if (type != value_type::integer) {
                return failed(errc::type_mismatch);
            }
            const std::int64_t n = v.integer();
            if constexpr (std::same_as<I, bool>) {
                if (n != 0 && n != 1) {
                    return failed(errc::value_out_of_range);
                }
                return {true, {}, serialise(n == 1)};
            } else {
                // In range: compared through the widest types, not std::in_range.
                const bool fits =
                    n < 0 ? std::is_signed_v<I> &&
                                static_cast<long double>(n) >=
                                    static_cast<long double>(std::numeric_limits<I>::min())
                          : static_cast<std::uint64_t>(n) <=
                                static_cast<std::uint64_t>(std::numeric_limits<I>::max());
                if (!fits) {
                    return failed(errc::value_out_of_range);
                }
                return {true, {}, serialise(static_cast<T>(static_cast<I>(n)))};
            }
        } else if constexpr (std::floating_point<T>) {
            if (type == value_type::integer) {
                return {true, {}, serialise(static_cast<T>(v.integer()))};
            }
            if (type != value_type::real) {
                return failed(errc::type_mismatch);
            }
            return {true, {}, serialise(static_cast<T>(v.real()))};
        } else if constexpr (std::same_as<T, std::string>) {
            if (type != value_type::text) {
                return failed(errc::type_mismatch);
            }
            return {true, {}, v.text()};
        } else if constexpr (std::same_as<T, asqlite::blob>) {
            if (type != value_type::blob) {
                return failed(errc::type_mismatch);
            }
            return {true, {}, serialise(v.bytes())};
        } else if constexpr (std::same_as<T, asqlite::timestamp>) {
            if (type != value_type::text) {
                return failed(errc::type_mismatch);
            }
            try {
                return {true, {}, serialise(asqlite::parse_timestamp(v.text()))};
            } catch (const asqlite::error&) {
                return failed(errc::bad_timestamp);
            }
        }
    }
}

struct sources {
    const asqlite::statement& st;
    const asqlite::row& r;
    const asqlite::detail::row_snapshot& snap;
    const std::vector<column>& columns;
};

template <class T>
void check_column(const sources& s, int i) {
    const outcome want = i >= 0 && i < static_cast<int>(s.columns.size())
                             ? expect<T>(s.columns[static_cast<std::size_t>(i)].stored)
                             : failed(errc::column_not_found);
    const outcome from_statement = attempt<T>([&] { return s.st.get<T>(i); });
    const outcome from_row = attempt<T>([&] { return s.r.get<T>(i); });
    if (from_statement != want || from_row != want) {
        fail("a column decoded otherwise than expected", typeid(T).name());
    }
    if (i >= 0 && i < static_cast<int>(s.columns.size())) {
        const outcome from_snapshot =
            attempt<T>([&] { return asqlite::detail::decode_column<T>(s.snap, i); });
        if (from_snapshot != want) {
            fail("a snapshot's column decoded otherwise than expected", typeid(T).name());
        }
        // By name: the first column of that name.
        const std::string& name = s.columns[static_cast<std::size_t>(i)].name;
        const outcome by_name_statement = attempt<T>([&] { return s.st.get<T>(name); });
        const outcome by_name_row = attempt<T>([&] { return s.r.get<T>(name); });
        if (by_name_statement != by_name_row) {
            fail("statement and row disagree on a column by name", name);
        }
    }
}

template <class... T>
void check_all(const sources& s, int i) {
    (check_column<T>(s, i), ...);
}

// Whole rows serialise through their members.
std::string serialise_row(const asqlite::file_info& f) {
    return serialise(f.id) + '|' + serialise(f.file_id) + '|' + serialise(f.filename) + '|' +
           serialise(f.file_path) + '|' + serialise(f.description) + '|' + serialise(f.file_size) +
           '|' + serialise(f.status) + '|' + serialise(f.request_id) + '|' +
           serialise(f.create_time);
}
template <class... T>
std::string serialise_row(const std::tuple<T...>& t) {
    return std::apply([](const auto&... v) { return ((serialise(v) + '|') + ...); }, t);
}
std::string serialise_row(const std::optional<std::int64_t>& v) {
    return serialise(v);
}

/// The outcome of a whole-row read (already serialised).
template <class Read>
outcome attempt_row(Read read) {
    try {
        return {true, {}, read()};
    } catch (const asqlite::error& e) {
        return {false, e.code(), {}};
    }
}

/// A whole row as T from every source; they must agree.
template <class T>
void check_row(const sources& s, asqlite::detail::row_snapshot& snap) {
    const outcome from_statement = attempt_row([&] {
        const asqlite::detail::row_reader<T> reader(s.st);
        return serialise_row(reader.read(s.st));
    });
    const outcome from_row = attempt_row([&] { return serialise_row(s.r.as<T>()); });
    const outcome from_snapshot = attempt_row([&] { return serialise_row(*snap.read<T>()); });
    if (from_statement != from_row || from_statement != from_snapshot) {
        fail("a whole row maps differently from different sources", typeid(T).name());
    }
    if (!from_statement.ok) {
        const std::error_code c = from_statement.code;
        for (errc allowed : {errc::column_not_found, errc::extra_column,
                             errc::column_count_mismatch, errc::null_value, errc::type_mismatch,
                             errc::value_out_of_range, errc::bad_timestamp}) {
            if (c == asqlite::make_error_code(allowed)) {
                return;
            }
        }
        fail("a whole row failed with an unexpected code", c.message());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static sqlite3* const db = [] {
        sqlite3* d = nullptr;
        if (sqlite3_open(":memory:", &d) != SQLITE_OK) {
            std::abort();
        }
        return d;
    }();
    static asqlite::detail::row_snapshot snap;  // reused, as the engine reuses them

    FuzzedDataProvider in(data, size);
    static constexpr const char* names[] = {"id",          "file_id",   "filename", "file_path",
                                            "description", "file_size", "status",   "request_id",
                                            "create_time", "a",         "b",        ""};
    const int n = in.ConsumeIntegralInRange<int>(1, 6);
    std::vector<std::string> wanted_names;
    std::vector<value> bound;
    for (int i = 0; i < n; ++i) {
        const auto pick = in.ConsumeIntegralInRange<std::size_t>(0, std::size(names));
        std::string name = pick < std::size(names) ? names[pick] : in.ConsumeRandomLengthString(12);
        std::erase(name, '\0');  // SQLite's names end at a NUL
        wanted_names.push_back(std::move(name));
        switch (in.ConsumeIntegralInRange<int>(0, 6)) {
            case 0:
                bound.emplace_back();
                break;
            case 1:
                bound.emplace_back(in.ConsumeIntegral<std::int64_t>());
                break;
            case 2:
                bound.emplace_back(
                    static_cast<std::int64_t>(in.ConsumeIntegralInRange<int>(-2, 300)));
                break;
            case 3: {
                double d = 0;
                const auto raw = in.ConsumeBytes<std::uint8_t>(sizeof d);
                if (!raw.empty()) {
                    std::memcpy(&d, raw.data(), raw.size());
                }
                bound.emplace_back(d);
                break;
            }
            case 4:
                bound.emplace_back(in.ConsumeRandomLengthString(40));
                break;
            case 5: {
                const auto bytes =
                    in.ConsumeBytes<std::byte>(in.ConsumeIntegralInRange<std::size_t>(0, 40));
                bound.emplace_back(asqlite::blob(bytes.begin(), bytes.end()));
                break;
            }
            default: {
                // Shaped like a timestamp, then bent a little.
                std::string t = "2024-02-29 23:59:59.123456+01:00";
                t.resize(in.ConsumeIntegralInRange<std::size_t>(10, t.size()));
                if (!t.empty()) {
                    t[in.ConsumeIntegralInRange<std::size_t>(0, t.size() - 1)] =
                        in.ConsumeIntegral<char>();
                }
                bound.emplace_back(std::move(t));
                break;
            }
        }
    }

    std::string sql = "SELECT ";
    for (int i = 0; i < n; ++i) {
        std::string quoted;
        for (char c : wanted_names[static_cast<std::size_t>(i)]) {
            quoted += c;
            if (c == '"') {
                quoted += '"';
            }
        }
        sql += (i ? ", ?" : "?") + std::to_string(i + 1) + " AS \"" + quoted + "\"";
    }
    asqlite::statement st(db, sql);
    for (int i = 0; i < n; ++i) {
        st.bind(i, bound[static_cast<std::size_t>(i)]);
    }
    if (!st.step()) {
        fail("no row", sql);
    }

    // What SQLite reports, through its own API (NaN is stored as NULL, names
    // as SQLite spells them).
    sqlite3_stmt* raw = st.native_handle();
    std::vector<column> columns;
    auto names_ptr = std::make_shared<std::vector<std::string>>();
    std::vector<value> values;
    for (int i = 0; i < n; ++i) {
        column c{sqlite3_column_name(raw, i), {}};
        switch (sqlite3_column_type(raw, i)) {
            case SQLITE_INTEGER:
                c.stored = value(static_cast<std::int64_t>(sqlite3_column_int64(raw, i)));
                break;
            case SQLITE_FLOAT:
                c.stored = value(sqlite3_column_double(raw, i));
                break;
            case SQLITE_TEXT: {
                const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(raw, i));
                c.stored =
                    value(std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(raw, i))));
                break;
            }
            case SQLITE_BLOB: {
                const auto* p = static_cast<const std::byte*>(sqlite3_column_blob(raw, i));
                const auto len = static_cast<std::size_t>(sqlite3_column_bytes(raw, i));
                c.stored = value(p == nullptr ? asqlite::blob{} : asqlite::blob(p, p + len));
                break;
            }
            default:
                break;
        }
        names_ptr->push_back(c.name);
        values.push_back(c.stored);
        columns.push_back(std::move(c));
    }
    const asqlite::row r(names_ptr, values);
    // Captured twice: the second reuses the names of the same statement.
    snap.capture(st, false);
    snap.capture(st, true);

    const sources s{st, r, snap, columns};
    for (int i = -1; i <= n; ++i) {
        check_all<bool, std::int8_t, std::uint8_t, std::int16_t, std::uint16_t, std::int32_t,
                  std::uint32_t, std::int64_t, std::uint64_t, small_enum, wide_enum, float, double,
                  std::string, asqlite::blob, asqlite::timestamp, value,
                  std::optional<std::int32_t>, std::optional<std::string>,
                  std::optional<asqlite::timestamp>, std::optional<asqlite::blob>,
                  std::optional<double>>(s, i);
    }
    check_row<asqlite::file_info>(s, snap);
    check_row<std::tuple<std::int64_t, std::optional<std::string>, double>>(s, snap);
    check_row<std::optional<std::int64_t>>(s, snap);
    // file_info's fields are exactly the per-column decodes of the first
    // column of each member's name.
    try {
        const auto f = r.as<asqlite::file_info>();
        if (f.filename != r.get<std::string>("filename") ||
            f.create_time != r.get<asqlite::timestamp>("create_time") ||
            f.id != r.get<std::optional<std::int64_t>>("id")) {
            fail("file_info's fields differ from its columns", sql);
        }
    } catch (const asqlite::error&) {
    }
    return 0;
}
