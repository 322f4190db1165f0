#include "sql_text.hpp"

#include <algorithm>
#include <cctype>
#include <cstddef>

namespace asqlite::detail {

namespace {

/// The words of an SQL text in order, with the blanks and comments between
/// them skipped.
class sql_words {
  public:
    /// SQLite reads the text up to its first NUL byte, and so does this.
    explicit sql_words(std::string_view sql) noexcept : sql_(sql.substr(0, sql.find('\0'))) {}
    std::string_view next() noexcept {
        skip_blanks();
        const std::size_t start = at_;
        while (at_ < sql_.size() &&
               (std::isalnum(static_cast<unsigned char>(sql_[at_])) != 0 || sql_[at_] == '_')) {
            ++at_;
        }
        return sql_.substr(start, at_ - start);
    }
    /// The first word of the statement: SQLite skips empty statements (';')
    /// before it, like blanks and comments.
    std::string_view first() noexcept {
        skip_blanks();
        while (at_ < sql_.size() && sql_[at_] == ';') {
            ++at_;
            skip_blanks();
        }
        return next();
    }
    /// The next name as SQLite reads one: a word, where '$' and every byte
    /// from 0x80 on count as letters too, or a quoted name ("x", 'x', `x`
    /// or [x]; quotes included, doubled quotes inside).
    std::string_view name() noexcept {
        skip_blanks();
        const std::size_t start = at_;
        const char open = at_ < sql_.size() ? sql_[at_] : '\0';
        if (open == '"' || open == '\'' || open == '`' || open == '[') {
            const char close = open == '[' ? ']' : open;
            ++at_;
            for (;;) {
                const std::size_t end = sql_.find(close, at_);
                at_ = end == std::string_view::npos ? sql_.size() : end + 1;
                if (end == std::string_view::npos || open == '[' || at_ >= sql_.size() ||
                    sql_[at_] != close) {
                    break;
                }
                ++at_;  // a doubled quote: part of the name
            }
        } else {
            while (at_ < sql_.size() &&
                   (std::isalnum(static_cast<unsigned char>(sql_[at_])) != 0 || sql_[at_] == '_' ||
                    sql_[at_] == '$' || static_cast<unsigned char>(sql_[at_]) >= 0x80)) {
                ++at_;
            }
        }
        return sql_.substr(start, at_ - start);
    }
    /// Nothing follows the words read so far.
    bool at_end() const noexcept { return at_ >= sql_.size(); }

  private:
    void skip_blanks() noexcept {
        for (;;) {
            while (at_ < sql_.size() && std::isspace(static_cast<unsigned char>(sql_[at_])) != 0) {
                ++at_;
            }
            if (sql_.substr(at_, 2) == "--") {
                at_ = std::min(sql_.find('\n', at_), sql_.size());
            } else if (sql_.substr(at_, 2) == "/*") {
                const std::size_t close = sql_.find("*/", at_ + 2);
                at_ = close == std::string_view::npos ? sql_.size() : close + 2;
            } else {
                break;
            }
        }
    }

    std::string_view sql_;
    std::size_t at_ = 0;
};

/// word == keyword, in any case (keyword in capitals).
bool is(std::string_view word, std::string_view keyword) noexcept {
    return word.size() == keyword.size() &&
           std::equal(word.begin(), word.end(), keyword.begin(), [](char a, char b) {
               return std::toupper(static_cast<unsigned char>(a)) == b;
           });
}

}  // namespace

sql_kind sql_kind_of(std::string_view sql) noexcept {
    sql_words words(sql);
    const std::string_view first = words.first();
    if (is(first, "SELECT")) {
        return words.at_end() ? sql_kind::other : sql_kind::query;
    }
    for (std::string_view verb :
         {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"}) {
        if (is(first, verb)) {
            return sql_kind::write;
        }
    }
    if (is(first, "BEGIN")) {
        const std::string_view mode = words.next();
        if (is(mode, "IMMEDIATE") || is(mode, "EXCLUSIVE")) {
            return sql_kind::write;
        }
    }
    return sql_kind::other;
}

bool sql_begins(std::string_view sql) noexcept {
    sql_words words(sql);
    return is(words.first(), "BEGIN");
}

sql_end sql_end_of(std::string_view sql) noexcept {
    sql_words words(sql);
    const std::string_view first = words.first();
    if (is(first, "COMMIT") || is(first, "END")) {
        return sql_end::commit;
    }
    if (!is(first, "ROLLBACK")) {
        return sql_end::none;
    }
    // ROLLBACK [TRANSACTION [name]] [TO [SAVEPOINT] name]
    std::string_view word = words.next();
    if (is(word, "TRANSACTION")) {
        word = words.name();  // quoted, or with '$' or non-ASCII letters: still one name
        if (!word.empty() && !is(word, "TO")) {
            word = words.next();  // the transaction's name
        }
    }
    return is(word, "TO") ? sql_end::none : sql_end::rollback;
}

}  // namespace asqlite::detail
