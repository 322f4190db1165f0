#pragma once
// Checked conversion of result columns into C++ types, written once for every
// column source (a live statement row or a materialised row).

#include <fmt/format.h>
#include <boost/describe/members.hpp>
#include <boost/mp11/algorithm.hpp>

#include <array>
#include <concepts>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "asqlite/error.hpp"
#include "asqlite/value.hpp"

namespace asqlite::detail {

/// What matching columns to a target type needs: their number and names.
template <class S>
concept named_columns = requires(const S& s, int i) {
    { s.column_count() } -> std::convertible_to<int>;
    { s.column_name(i) } -> std::convertible_to<std::string_view>;
};

/// ... and reading a row's values.
template <class S>
concept column_source = named_columns<S> && requires(const S& s, int i) {
    { s.column_type(i) } -> std::same_as<value_type>;
    { s.column_int64(i) } -> std::same_as<std::int64_t>;
    { s.column_double(i) } -> std::same_as<double>;
    { s.column_text(i) } -> std::same_as<std::string_view>;
    { s.column_blob(i) } -> std::same_as<std::span<const std::byte>>;
};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class T>
struct is_tuple : std::false_type {};
template <class... Ts>
struct is_tuple<std::tuple<Ts...>> : std::true_type {};

template <class T>
concept described_struct = std::is_class_v<T> && boost::describe::has_describe_members<T>::value;

/// The public members a described struct's rows fill: those of its
/// described bases first, then its own (BOOST_DESCRIBE_STRUCT(D, (Base),
/// (extra)) reads Base's columns and `extra`).
template <class T>
using described_members = boost::describe::describe_members<T, boost::describe::mod_public |
                                                                   boost::describe::mod_inherited>;

template <class T>
constexpr std::string_view type_label() {
    if constexpr (std::same_as<T, bool>) {
        return "bool";
    } else if constexpr (std::is_enum_v<T>) {
        return "enum";
    } else if constexpr (std::integral<T>) {
        return std::is_signed_v<T> ? "signed integer" : "unsigned integer";
    } else if constexpr (std::floating_point<T>) {
        return "floating point";
    } else if constexpr (std::same_as<T, std::string>) {
        return "string";
    } else if constexpr (std::same_as<T, blob>) {
        return "blob";
    } else if constexpr (std::same_as<T, timestamp>) {
        return "timestamp";
    } else {
        return "value";
    }
}

template <column_source S>
[[noreturn]] void column_error(errc code, const S& s, int i, std::string_view detail) {
    throw_error(code, fmt::format("column '{}' (index {}): {}", s.column_name(i), i, detail));
}

template <class T, column_source S>
T decode_integer(const S& s, int i) {
    const auto type = s.column_type(i);
    if (type != value_type::integer) {
        column_error(
            errc::type_mismatch, s, i,
            fmt::format("holds {}, cannot read it as {}", to_string(type), type_label<T>()));
    }
    const std::int64_t v = s.column_int64(i);
    if constexpr (std::same_as<T, bool>) {
        if (v != 0 && v != 1) {
            column_error(errc::value_out_of_range, s, i,
                         fmt::format("value {} is not a bool (0 or 1)", v));
        }
        return v == 1;
    } else {
        if (!std::in_range<T>(v)) {
            column_error(errc::value_out_of_range, s, i,
                         fmt::format("value {} does not fit in a {}-byte {}", v, sizeof(T),
                                     type_label<T>()));
        }
        return static_cast<T>(v);
    }
}

/// Reads column `i` of `s` as T; every mismatch throws asqlite::error naming
/// the column. NULL becomes std::nullopt only for std::optional targets.
template <class T, column_source S>
T decode_column(const S& s, int i) {
    const auto type = s.column_type(i);
    if constexpr (is_optional<T>::value) {
        if (type == value_type::null) {
            return std::nullopt;
        }
        return decode_column<typename T::value_type>(s, i);
    } else if constexpr (std::same_as<T, value>) {
        switch (type) {
            case value_type::null:
                return value{};
            case value_type::integer:
                return value{s.column_int64(i)};
            case value_type::real:
                return value{s.column_double(i)};
            case value_type::text:
                return value{std::string(s.column_text(i))};
            case value_type::blob: {
                const auto b = s.column_blob(i);
                return value{blob(b.begin(), b.end())};
            }
        }
        return value{};
    } else {
        if (type == value_type::null) {
            column_error(
                errc::null_value, s, i,
                fmt::format("is NULL, cannot read it as a non-optional {}", type_label<T>()));
        }
        if constexpr (std::is_enum_v<T>) {
            return static_cast<T>(decode_integer<std::underlying_type_t<T>>(s, i));
        } else if constexpr (std::integral<T>) {
            return decode_integer<T>(s, i);
        } else if constexpr (std::floating_point<T>) {
            if (type == value_type::integer) {
                return static_cast<T>(s.column_int64(i));
            }
            if (type != value_type::real) {
                column_error(
                    errc::type_mismatch, s, i,
                    fmt::format("holds {}, cannot read it as floating point", to_string(type)));
            }
            return static_cast<T>(s.column_double(i));
        } else if constexpr (std::same_as<T, std::string> || std::same_as<T, timestamp>) {
            if (type != value_type::text) {
                column_error(errc::type_mismatch, s, i,
                             fmt::format("holds {}, cannot read it as {}", to_string(type),
                                         type_label<T>()));
            }
            if constexpr (std::same_as<T, timestamp>) {
                try {
                    return parse_timestamp(s.column_text(i));
                } catch (const error& e) {
                    column_error(errc::bad_timestamp, s, i, e.message());
                }
            } else {
                return std::string(s.column_text(i));
            }
        } else if constexpr (std::same_as<T, blob>) {
            if (type != value_type::blob) {
                column_error(errc::type_mismatch, s, i,
                             fmt::format("holds {}, cannot read it as blob", to_string(type)));
            }
            const auto b = s.column_blob(i);
            return blob(b.begin(), b.end());
        } else {
            static_assert(sizeof(T) == 0, "asqlite: unsupported column target type");
        }
    }
}

/// Maps whole rows to T: a described struct (by column name), a std::tuple
/// (by position) or a single scalar column. Built once per result set from the
/// column names, then applied to each row.
template <class T>
class row_reader {
  public:
    template <named_columns S>
    explicit row_reader(const S& s) {
        const int n = s.column_count();
        if constexpr (described_struct<T>) {
            using members = described_members<T>;
            std::size_t k = 0;
            bool in_order = n == static_cast<int>(width);
            boost::mp11::mp_for_each<members>([&](auto member) {
                // Usual case first: the SELECT lists the members in order.
                const int at = static_cast<int>(k);
                index_[k] = at < n && s.column_name(at) == member.name ? at : find(s, member.name);
                if (index_[k] < 0) {
                    throw_error(errc::column_not_found,
                                fmt::format("member '{}' has no column of that name in the result",
                                            member.name));
                }
                in_order = in_order && index_[k] == at;
                ++k;
            });
            if (in_order) {
                return;  // every column is some member's: no extra column
            }
            for (int i = 0; i < n; ++i) {
                bool mapped = false;
                for (int idx : index_) {
                    mapped = mapped || idx == i;
                }
                if (!mapped) {
                    throw_error(errc::extra_column,
                                fmt::format("column '{}' matches no member of the target struct",
                                            s.column_name(i)));
                }
            }
        } else {
            constexpr int expected = static_cast<int>(width);
            if (n != expected) {
                throw_error(
                    errc::column_count_mismatch,
                    fmt::format("result has {} columns, the target type reads {}", n, expected));
            }
        }
    }

    template <column_source S>
    T read(const S& s) const {
        if constexpr (described_struct<T>) {
            T out{};
            fill(out, s);
            return out;
        } else if constexpr (is_tuple<T>::value) {
            return read_tuple(s, std::make_index_sequence<width>{});
        } else {
            return decode_column<T>(s, 0);
        }
    }

    /// The row into `out` (empty before), built in place: a struct with
    /// strings is not moved once more on its way out.
    template <column_source S>
    void read_into(std::optional<T>& out, const S& s) const {
        if constexpr (described_struct<T>) {
            fill(out.emplace(), s);
        } else {
            out.emplace(read(s));
        }
    }

  private:
    template <column_source S>
    void fill(T& out, const S& s) const {
        using members = described_members<T>;
        std::size_t k = 0;
        boost::mp11::mp_for_each<members>([&](auto member) {
            using field = std::remove_cvref_t<decltype(out.*member.pointer)>;
            out.*member.pointer = decode_column<field>(s, index_[k++]);
        });
    }

    static constexpr std::size_t count_width() {
        if constexpr (described_struct<T>) {
            return boost::mp11::mp_size<described_members<T>>::value;
        } else if constexpr (is_tuple<T>::value) {
            return std::tuple_size_v<T>;
        } else {
            return 1;
        }
    }
    static constexpr std::size_t width = count_width();

    template <named_columns S>
    static int find(const S& s, std::string_view name) {
        for (int i = 0; i < s.column_count(); ++i) {
            if (s.column_name(i) == name) {
                return i;
            }
        }
        return -1;
    }

    template <column_source S, std::size_t... I>
    T read_tuple(const S& s, std::index_sequence<I...>) const {
        return T{decode_column<std::tuple_element_t<I, T>>(s, static_cast<int>(I))...};
    }

    std::array<int, described_struct<T> ? width : 0> index_{};
};

}  // namespace asqlite::detail
