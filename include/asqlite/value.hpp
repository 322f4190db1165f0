#pragma once
// A dynamically typed SQLite value (one of SQLite's five storage classes), the
// blob type, and the timestamp text format shared with CURRENT_TIMESTAMP.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace asqlite {

using blob = std::vector<std::byte>;
using timestamp = std::chrono::system_clock::time_point;

enum class value_type { null, integer, real, text, blob };

std::string_view to_string(value_type type) noexcept;

class value {
  public:
    value() = default;
    value(std::nullptr_t) {}
    value(std::int64_t v) : data_(v) {}
    value(double v) : data_(v) {}
    value(std::string v) : data_(std::move(v)) {}
    value(blob v) : data_(std::move(v)) {}

    value_type type() const noexcept { return static_cast<value_type>(data_.index()); }
    bool is_null() const noexcept { return type() == value_type::null; }

    // Unchecked accessors: the caller has looked at type() first.
    std::int64_t integer() const { return std::get<std::int64_t>(data_); }
    double real() const { return std::get<double>(data_); }
    const std::string& text() const { return std::get<std::string>(data_); }
    std::string& text() { return std::get<std::string>(data_); }
    const blob& bytes() const { return std::get<blob>(data_); }
    blob& bytes() { return std::get<blob>(data_); }

    friend bool operator==(const value&, const value&) = default;

  private:
    std::variant<std::monostate, std::int64_t, double, std::string, blob> data_;
};

/// "YYYY-MM-DD HH:MM:SS" in UTC, the format CURRENT_TIMESTAMP writes, with
/// ".ffffff" appended only when the time has a sub-second part.
std::string format_timestamp(timestamp t);

/// Parses the forms SQLite's date functions produce: "YYYY-MM-DD HH:MM:SS",
/// optional ".f…" fraction, 'T' instead of the space, an optional trailing
/// "Z" or "+HH:MM"/"-HH:MM" offset. Throws asqlite::error(errc::bad_timestamp).
timestamp parse_timestamp(std::string_view text);

}  // namespace asqlite
