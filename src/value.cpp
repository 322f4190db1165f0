#include "asqlite/value.hpp"

#include <fmt/format.h>

#include "asqlite/error.hpp"

namespace asqlite {

std::string_view to_string(value_type type) noexcept {
    switch (type) {
        case value_type::null:
            return "NULL";
        case value_type::integer:
            return "INTEGER";
        case value_type::real:
            return "REAL";
        case value_type::text:
            return "TEXT";
        case value_type::blob:
            return "BLOB";
    }
    return "?";
}

std::string format_timestamp(timestamp t) {
    using namespace std::chrono;
    // In microseconds: near timestamp::min() the day's start is not
    // representable in nanoseconds, and t - day would overflow.
    const auto us = floor<microseconds>(t);
    const auto day = floor<days>(us);
    const year_month_day ymd{day};
    const hh_mm_ss hms{us - day};
    auto text = fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                            static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                            hms.hours().count(), hms.minutes().count(), hms.seconds().count());
    if (hms.subseconds().count() != 0) {
        text += fmt::format(".{:06}", hms.subseconds().count());
    }
    return text;
}

namespace {

class timestamp_parser {
  public:
    explicit timestamp_parser(std::string_view text) : text_(text) {}

    timestamp parse() {
        using namespace std::chrono;
        const int y = number(4);
        expect('-');
        const int mo = number(2);
        expect('-');
        const int d = number(2);
        if (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == 'T')) {
            ++pos_;
        } else {
            fail();
        }
        const int h = number(2);
        expect(':');
        const int mi = number(2);
        int s = 0;
        microseconds frac{0};
        if (peek(':')) {
            ++pos_;
            s = number(2);
            if (peek('.')) {
                ++pos_;
                frac = fraction();
            }
        }
        minutes offset{0};
        if (peek('Z')) {
            ++pos_;
        } else if (peek('+') || peek('-')) {
            const int sign = text_[pos_++] == '-' ? -1 : 1;
            const int oh = number(2);
            expect(':');
            const int om = number(2);
            if (oh > 14 || om > 59) {  // SQLite's own limits for an offset
                fail();
            }
            offset = minutes{sign * (oh * 60 + om)};
        }
        if (pos_ != text_.size()) {
            fail();
        }
        const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                                 day{static_cast<unsigned>(d)}};
        // Seconds up to 59, as SQLite's date functions read them: a leap
        // second would otherwise turn into the next minute's first.
        if (!ymd.ok() || h > 23 || mi > 59 || s > 59) {
            fail();
        }
        // Computed in microseconds, then checked: timestamp counts nanoseconds
        // and holds only the years 1678 to 2262.
        const sys_time<microseconds> t =
            sys_days{ymd} + hours{h} + minutes{mi} + seconds{s} + frac - offset;
        if (t < ceil<microseconds>(timestamp::min()) || t > floor<microseconds>(timestamp::max())) {
            throw_error(errc::bad_timestamp,
                        fmt::format("'{}' is out of the range of a timestamp ({} to {})", text_,
                                    format_timestamp(timestamp::min()),
                                    format_timestamp(timestamp::max())));
        }
        return time_point_cast<timestamp::duration>(t);
    }

  private:
    bool peek(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
    void expect(char c) {
        if (!peek(c)) {
            fail();
        }
        ++pos_;
    }
    int number(std::size_t digits) {
        if (pos_ + digits > text_.size()) {
            fail();
        }
        // Digits only: from_chars alone would take a sign ("-1" as an hour).
        int v = 0;
        for (std::size_t i = 0; i < digits; ++i) {
            const char c = text_[pos_ + i];
            if (c < '0' || c > '9') {
                fail();
            }
            v = v * 10 + (c - '0');
        }
        pos_ += digits;
        return v;
    }
    std::chrono::microseconds fraction() {
        std::int64_t micros = 0;
        int digits = 0;
        while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
            if (digits < 6) {
                micros = micros * 10 + (text_[pos_] - '0');
            }
            ++digits;
            ++pos_;
        }
        if (digits == 0) {
            fail();
        }
        for (int i = digits; i < 6; ++i) {
            micros *= 10;
        }
        return std::chrono::microseconds{micros};
    }
    [[noreturn]] void fail() const {
        throw_error(errc::bad_timestamp,
                    fmt::format("'{}' is not a timestamp (expected YYYY-MM-DD HH:MM:SS)", text_));
    }

    std::string_view text_;
    std::size_t pos_ = 0;
};

}  // namespace

timestamp parse_timestamp(std::string_view text) {
    return timestamp_parser{text}.parse();
}

}  // namespace asqlite
