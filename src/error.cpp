#include "asqlite/error.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

namespace asqlite {
namespace {

const char* library_message(errc e) {
    switch (e) {
        case errc::pool_timeout:
            return "timed out waiting for a pooled connection";
        case errc::pool_closed:
            return "the engine is closed";
        case errc::null_value:
            return "NULL read into a non-optional type";
        case errc::type_mismatch:
            return "column type does not match the requested type";
        case errc::value_out_of_range:
            return "value out of range for the target type";
        case errc::column_not_found:
            return "no such column";
        case errc::extra_column:
            return "result has a column the target does not map";
        case errc::column_count_mismatch:
            return "result column count does not match the target";
        case errc::unknown_parameter:
            return "no such SQL parameter name";
        case errc::bind_out_of_range:
            return "bind index out of range";
        case errc::parameter_count_mismatch:
            return "wrong number of SQL parameters";
        case errc::no_rows:
            return "query returned no rows";
        case errc::too_many_rows:
            return "query returned more than one row";
        case errc::bad_timestamp:
            return "text is not an ISO-8601 timestamp";
        case errc::invalid_option:
            return "invalid configuration value";
        case errc::invalid_url:
            return "invalid database URL";
        case errc::directory_missing:
            return "database directory does not exist";
        case errc::transaction_state:
            return "invalid transaction state";
        case errc::needs_writer:
            return "statement writes; it must run on the writer connection";
        default:
            return "unknown asqlite error";
    }
}

class asqlite_category final : public std::error_category {
  public:
    const char* name() const noexcept override { return "asqlite"; }
    std::string message(int value) const override {
        if (value >= 0 && value < static_cast<int>(errc::library_base)) {
            return sqlite3_errstr(value);
        }
        return library_message(static_cast<errc>(value));
    }
};

}  // namespace

const std::error_category& category() noexcept {
    static const asqlite_category instance;
    return instance;
}

errc primary_code(const std::error_code& ec) noexcept {
    if (ec.category() == category() && ec.value() < static_cast<int>(errc::library_base)) {
        return static_cast<errc>(ec.value() & 0xff);
    }
    return static_cast<errc>(ec.value());
}

namespace {
std::string what_text(const std::error_code& code, const std::string& message,
                      const std::string& sql) {
    std::string text = message.empty() ? code.message() : message;
    if (code.category() == category() && code.value() < static_cast<int>(errc::library_base)) {
        text += fmt::format(" [sqlite {}]", code.value());
    }
    if (!sql.empty()) {
        text += fmt::format(" (SQL: {})", sql);
    }
    return text;
}
}  // namespace

error::error(std::error_code code, std::string message, std::string sql)
    : std::system_error(code, what_text(code, message, sql)),
      message_(message.empty() ? code.message() : std::move(message)),
      sql_(std::move(sql)) {}

void throw_error(std::error_code code, std::string message, std::string sql) {
    throw error(code, std::move(message), std::move(sql));
}

std::error_code error_code_of(const std::exception_ptr& ep) noexcept {
    if (!ep) {
        return {};
    }
    try {
        std::rethrow_exception(ep);
    } catch (const std::system_error& e) {
        return e.code();
    } catch (...) {
        return make_error_code(errc::internal);
    }
}

}  // namespace asqlite
