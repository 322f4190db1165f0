#pragma once
// Assertions for asqlite errors: every error test checks the code and that
// the message names the cause.

#include <gtest/gtest.h>

#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "asqlite/error.hpp"

namespace asqlite::test {

inline ::testing::AssertionResult contains(std::string_view text, std::string_view needle) {
    if (text.find(needle) != std::string_view::npos) {
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << needle << "'";
}

/// Runs `f` and returns the asqlite::error it threw, or nothing.
template <class F>
std::optional<error> catch_error(F&& f) {
    try {
        f();
    } catch (const error& e) {
        return e;
    }
    return std::nullopt;
}

/// `e` is an asqlite::error with exactly `code` and a message containing
/// every one of `needles`.
inline ::testing::AssertionResult error_matches(const std::optional<error>& e, std::error_code code,
                                                std::initializer_list<std::string_view> needles) {
    if (!e) {
        return ::testing::AssertionFailure() << "did not throw (expected " << code.message() << ")";
    }
    if (e->code() != code) {
        return ::testing::AssertionFailure()
               << "code " << e->code().value() << " (" << e->code().message() << ") instead of "
               << code.value() << " (" << code.message() << "); message: " << e->message();
    }
    for (auto needle : needles) {
        if (e->message().find(needle) == std::string::npos) {
            return ::testing::AssertionFailure()
                   << "message '" << e->message() << "' does not contain '" << needle << "'";
        }
    }
    return ::testing::AssertionSuccess();
}

/// `f` throws asqlite::error with exactly `code` and a message containing
/// every one of `needles`.
template <class F>
::testing::AssertionResult fails_with(F&& f, std::error_code code,
                                      std::initializer_list<std::string_view> needles) {
    std::optional<error> e;
    try {
        f();
    } catch (const error& caught) {
        e = caught;
    } catch (const std::exception& other) {
        return ::testing::AssertionFailure() << "threw a non-asqlite exception: " << other.what();
    }
    return error_matches(e, code, needles);
}

/// Sets or unsets environment variables for one scope and restores the old
/// values afterwards.
class scoped_env {
  public:
    scoped_env() = default;
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;
    ~scoped_env() {
        for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
            if (it->second) {
                ::setenv(it->first.c_str(), it->second->c_str(), 1);
            } else {
                ::unsetenv(it->first.c_str());
            }
        }
    }

    void set(const std::string& name, const std::string& value) {
        save(name);
        ::setenv(name.c_str(), value.c_str(), 1);
    }
    void unset(const std::string& name) {
        save(name);
        ::unsetenv(name.c_str());
    }

  private:
    void save(const std::string& name) {
        const char* old = std::getenv(name.c_str());
        saved_.emplace_back(name, old != nullptr ? std::optional<std::string>(old) : std::nullopt);
    }

    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

/// Every variable engine_options::from_env() reads.
inline const std::vector<std::string>& engine_env_names() {
    static const std::vector<std::string> names = {
        "SQLITE_DB_PATH",       "ASQLITE_POOL_SIZE",       "ASQLITE_MAX_OVERFLOW",
        "ASQLITE_POOL_TIMEOUT", "ASQLITE_POOL_RECYCLE",    "ASQLITE_PRE_PING",
        "ASQLITE_ECHO",         "ASQLITE_JOURNAL_MODE",    "ASQLITE_SYNCHRONOUS",
        "ASQLITE_FOREIGN_KEYS", "ASQLITE_BUSY_TIMEOUT",    "ASQLITE_STATEMENT_CACHE_SIZE",
        "ASQLITE_THREADS",      "ASQLITE_COMPLETION_HOLD", "ASQLITE_SPIN_WAIT"};
    return names;
}

}  // namespace asqlite::test
