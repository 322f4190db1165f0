// fuzz_options: database URLs (path_from_url) and engine_options::from_env().
//
// The input is up to 15 lines: the first is a database URL, the others are
// the values of SQLITE_DB_PATH and the ASQLITE_* variables in the order of
// `variables` below (a missing line leaves its variable unset; a value ends
// at its first NUL byte, as the environment has it). Properties:
// 1. path_from_url(url) either returns a path or throws errc::invalid_url,
//    and a path it returns round-trips: path_from_url("sqlite:///" + path)
//    gives it back (":memory:" comes back from "sqlite://"). A URL with an
//    sqlite scheme gives the text after "sqlite:///", a plain path itself.
// 2. from_env() either throws errc::invalid_option naming the variable
//    that is wrong, or returns options where every variable that is set is
//    read as an independent reading of the README's table says: counts are
//    plain decimal digits (no sign, no blanks) in range, seconds a finite
//    decimal number from 0 to 1e9 rounded to the unit, booleans one of the
//    listed words, choices one of the listed names in any case.
//    validate() on its result throws nothing but errc::invalid_option.

#include <cerrno>
#include <chrono>
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
#include <vector>

#include "asqlite/error.hpp"
#include "asqlite/options.hpp"

namespace {

using asqlite::errc;

[[noreturn]] void fail(const char* what, std::string_view detail) {
    std::fprintf(stderr, "fuzz_options: %s: %.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

bool is_code(const asqlite::error& e, errc code) {
    return e.code() == asqlite::make_error_code(code);
}

enum class kind { path, count, count0, seconds, micros, boolean, journal, synchronous };

struct variable {
    const char* name;
    kind type;
};

constexpr variable variables[] = {
    {"SQLITE_DB_PATH", kind::path},
    {"ASQLITE_POOL_SIZE", kind::count},
    {"ASQLITE_MAX_OVERFLOW", kind::count0},
    {"ASQLITE_POOL_TIMEOUT", kind::seconds},
    {"ASQLITE_POOL_RECYCLE", kind::seconds},
    {"ASQLITE_PRE_PING", kind::boolean},
    {"ASQLITE_ECHO", kind::boolean},
    {"ASQLITE_JOURNAL_MODE", kind::journal},
    {"ASQLITE_SYNCHRONOUS", kind::synchronous},
    {"ASQLITE_FOREIGN_KEYS", kind::boolean},
    {"ASQLITE_BUSY_TIMEOUT", kind::seconds},
    {"ASQLITE_STATEMENT_CACHE_SIZE", kind::count0},
    {"ASQLITE_THREADS", kind::count0},
    {"ASQLITE_COMPLETION_HOLD", kind::micros},
    {"ASQLITE_SPIN_WAIT", kind::micros},
    {"ASQLITE_GROUP_COMMIT", kind::boolean},
    {"ASQLITE_GROUP_COMMIT_MAX_JOBS", kind::count},
    {"ASQLITE_GROUP_COMMIT_MAX_TIME", kind::micros},
};

void check_url(std::string_view url) {
    std::string path;
    try {
        path = asqlite::path_from_url(url);
    } catch (const asqlite::error& e) {
        if (!is_code(e, errc::invalid_url)) {
            fail("path_from_url threw another code than invalid_url", url);
        }
        return;
    }
    if (path.empty()) {
        fail("path_from_url returned an empty path", url);
    }
    const std::string back =
        asqlite::path_from_url(path == ":memory:" ? std::string("sqlite://") : "sqlite:///" + path);
    if (back != path) {
        fail("a parsed URL does not round-trip", url);
    }
    for (std::string_view scheme : {"sqlite+aiosqlite:///", "sqlite+pysqlite:///", "sqlite:///"}) {
        if (url.starts_with(scheme) && url != std::string(scheme) + ":memory:" &&
            url.size() > scheme.size()) {
            if (path != url.substr(scheme.size())) {
                fail("an sqlite:/// URL did not give the text after the scheme", url);
            }
            return;
        }
    }
    if (!url.empty() && !url.starts_with("sqlite") && url != ":memory:" &&
        url.find("://") == url.npos && path != url) {
        fail("a plain path did not give itself", url);
    }
}

bool ambiguous = false;  // the input holds a value the oracle cannot decide

// The oracles: written from the README's table, not from options.cpp.
std::optional<std::size_t> expect_count(std::string_view text, bool zero_ok) {
    if (text.empty()) {
        return std::nullopt;
    }
    std::size_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        const auto digit = static_cast<std::size_t>(c - '0');
        if (v > (std::numeric_limits<std::size_t>::max() - digit) / 10) {
            return std::nullopt;
        }
        v = v * 10 + digit;
    }
    if (v == 0 && !zero_ok) {
        return std::nullopt;
    }
    return v;
}

std::optional<double> expect_seconds(const std::string& text) {
    // A decimal number: digits, an optional fraction and exponent; no '+',
    // no blanks, no hex, no inf/nan (strtod takes all of those). A '-' is
    // read (from_chars takes it), so "-0" is zero and "-1" is refused below.
    std::size_t i = text.starts_with('-') ? 1 : 0;
    auto digits = [&] {
        const std::size_t from = i;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            ++i;
        }
        return i - from;
    };
    std::size_t mantissa = digits();
    if (i < text.size() && text[i] == '.') {
        ++i;
        mantissa += digits();
    }
    if (mantissa == 0) {
        return std::nullopt;
    }
    if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
        ++i;
        if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
            ++i;
        }
        if (digits() == 0) {
            return std::nullopt;
        }
    }
    if (i != text.size()) {
        return std::nullopt;
    }
    errno = 0;
    const double v = std::strtod(text.c_str(), nullptr);
    if (errno == ERANGE && std::isfinite(v) && std::fabs(v) < 1.0) {
        ambiguous = true;  // underflow: from_chars may take it as 0 or refuse it
    }
    if (!std::isfinite(v) || v < 0 || v > 1e9 || (errno == ERANGE && !ambiguous)) {
        return std::nullopt;
    }
    return v;
}

std::optional<bool> expect_bool(std::string_view text) {
    for (std::string_view t : {"1", "true", "yes", "on", "TRUE", "True", "YES", "ON"}) {
        if (text == t) {
            return true;
        }
    }
    for (std::string_view f : {"0", "false", "no", "off", "FALSE", "False", "NO", "OFF"}) {
        if (text == f) {
            return false;
        }
    }
    return std::nullopt;
}

std::optional<std::string> expect_choice(std::string_view text,
                                         std::initializer_list<std::string_view> names) {
    for (std::string_view n : names) {
        if (text.size() == n.size()) {
            bool same = true;
            for (std::size_t i = 0; i < n.size(); ++i) {
                const char c = text[i];
                same =
                    same && (c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) == n[i];
            }
            if (same) {
                return std::string(n);
            }
        }
    }
    return std::nullopt;
}

/// Whether `text` is a valid value for v, and if so that `o` holds it.
bool valid_and_read(const variable& v, const std::string& text, const asqlite::engine_options& o,
                    bool check) {
    using std::chrono::duration;
    using std::chrono::microseconds;
    using std::chrono::milliseconds;
    const std::string_view name(v.name);
    switch (v.type) {
        case kind::path: {
            if (text.empty()) {
                return false;
            }
            try {
                const std::string p = asqlite::path_from_url(text);
                return !check || o.path == p;
            } catch (const asqlite::error&) {
                return false;
            }
        }
        case kind::count:
        case kind::count0: {
            const auto n = expect_count(text, v.type == kind::count0);
            if (!n || !check) {
                return n.has_value();
            }
            const std::size_t got = name == "ASQLITE_POOL_SIZE"      ? o.pool_size
                                    : name == "ASQLITE_MAX_OVERFLOW" ? o.max_overflow
                                    : name == "ASQLITE_THREADS"      ? o.threads
                                    : name == "ASQLITE_GROUP_COMMIT_MAX_JOBS"
                                        ? o.group_commit_max_jobs
                                        : o.statement_cache_size;
            return got == *n;
        }
        case kind::seconds:
        case kind::micros: {
            const auto s = expect_seconds(text);
            if (!s || !check) {
                return s.has_value();
            }
            if (v.type == kind::micros) {
                const microseconds want = std::chrono::round<microseconds>(duration<double>(*s));
                const microseconds got = name == "ASQLITE_SPIN_WAIT" ? o.spin_wait
                                         : name == "ASQLITE_GROUP_COMMIT_MAX_TIME"
                                             ? o.group_commit_max_time
                                             : o.completion_hold;
                return got == want;
            }
            const milliseconds want = std::chrono::round<milliseconds>(duration<double>(*s));
            const milliseconds got = name == "ASQLITE_POOL_TIMEOUT"   ? o.pool_timeout
                                     : name == "ASQLITE_POOL_RECYCLE" ? o.pool_recycle
                                                                      : o.busy_timeout;
            return got == want;
        }
        case kind::boolean: {
            const auto b = expect_bool(text);
            if (!b || !check) {
                return b.has_value();
            }
            return name == "ASQLITE_PRE_PING"       ? o.pre_ping == *b
                   : name == "ASQLITE_ECHO"         ? o.echo == b
                   : name == "ASQLITE_GROUP_COMMIT" ? o.group_commit == *b
                                                    : o.foreign_keys == *b;
        }
        case kind::journal:
        case kind::synchronous: {
            const auto c =
                v.type == kind::journal
                    ? expect_choice(text, {"delete", "truncate", "persist", "memory", "wal", "off"})
                    : expect_choice(text, {"off", "normal", "full", "extra"});
            if (!c || !check) {
                return c.has_value();
            }
            return (v.type == kind::journal ? o.journal_mode : o.synchronous) == *c;
        }
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> lines;
    for (std::size_t at = 0; at <= input.size() && lines.size() < 15;) {
        const std::size_t nl = std::min(input.find('\n', at), input.size());
        lines.push_back(input.substr(at, nl - at));
        at = nl + 1;
    }

    check_url(lines[0]);

    // putenv with buffers of our own: setenv keeps every value it was ever
    // given (glibc cannot free them), over a gigabyte in ten minutes.
    static char buffers[std::size(variables)][600];
    std::vector<std::optional<std::string>> values;
    for (std::size_t i = 0; i < std::size(variables); ++i) {
        if (i + 1 < lines.size()) {
            // The value as the environment holds it: cut at a NUL, and to
            // what fits the buffer after "NAME=".
            const std::string_view line = lines[i + 1];
            const std::size_t room = sizeof buffers[i] - std::strlen(variables[i].name) - 2;
            values.emplace_back(std::string(line.substr(0, std::min(line.find('\0'), room))));
            std::snprintf(buffers[i], sizeof buffers[i], "%s=%s", variables[i].name,
                          values.back()->c_str());
            putenv(buffers[i]);
        } else {
            values.emplace_back();
            unsetenv(variables[i].name);
        }
    }

    // from_env reads the variables in this order and reports the first bad
    // one, naming it and its value: an invalid_option, or for SQLITE_DB_PATH
    // the invalid_url of path_from_url.
    ambiguous = false;
    std::optional<std::size_t> first_bad;
    for (std::size_t i = 0; i < std::size(variables) && !first_bad; ++i) {
        if (values[i] && !valid_and_read(variables[i], *values[i], {}, false)) {
            first_bad = i;
        }
    }
    std::optional<asqlite::engine_options> options;
    try {
        options = asqlite::engine_options::from_env();
    } catch (const asqlite::error& e) {
        if (ambiguous) {
            return 0;  // a number that underflows: refusing it is fine too
        }
        if (!first_bad) {
            fail("from_env refused valid values", e.what());
        }
        const std::string message = e.what();
        const bool url = *first_bad == 0 && !values[0]->empty();
        if (!is_code(e, url ? errc::invalid_url : errc::invalid_option) ||
            message.find(variables[*first_bad].name) == std::string::npos ||
            message.find(*values[*first_bad]) == std::string::npos) {
            fail("from_env's error is not about the first bad variable", message);
        }
        return 0;
    }
    if (first_bad) {
        fail("from_env accepted a malformed value", variables[*first_bad].name);
    }
    if (options) {
        for (std::size_t i = 0; i < std::size(variables); ++i) {
            if (values[i] && !valid_and_read(variables[i], *values[i], *options, true)) {
                fail("from_env read a value wrongly", variables[i].name);
            }
        }
        try {
            options->validate();
        } catch (const asqlite::error& e) {
            if (!is_code(e, errc::invalid_option)) {
                fail("validate threw another code than invalid_option", e.what());
            }
        }
    }
    return 0;
}
