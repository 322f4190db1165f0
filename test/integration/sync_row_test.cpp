#include <gtest/gtest.h>

#include <boost/describe/class.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "asqlite/connection.hpp"
#include "support/check.hpp"

namespace test_model {

struct person {
    std::int64_t id = 0;
    std::string name;
    std::optional<std::string> email;
    double score = 0;
};
BOOST_DESCRIBE_STRUCT(person, (), (id, name, email, score))

// A row type that extends a described one with a column of its own.
struct ranked_person : person {
    std::int64_t rank = 0;
};
BOOST_DESCRIBE_STRUCT(ranked_person, (person), (rank))

}  // namespace test_model

namespace {

using asqlite::connection;
using asqlite::errc;
using asqlite::test::catch_error;
using asqlite::test::contains;
using asqlite::test::fails_with;
using test_model::person;

class Row : public ::testing::Test {
  protected:
    void SetUp() override {
        c.exec(R"sql(
            CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT,
                                score REAL NOT NULL DEFAULT 0);
            INSERT INTO people(name, email, score) VALUES ('ann', 'ann@x.org', 1.5);
            INSERT INTO people(name, email, score) VALUES ('bob', NULL, 2);
        )sql");
    }
    connection c{":memory:"};
};

TEST_F(Row, GetByIndexAndName) {
    const auto r = c.execute("SELECT id, name, email, score FROM people ORDER BY id");
    ASSERT_EQ(r.size(), 2u);
    const auto& ann = r[0];
    EXPECT_EQ(ann.size(), 4);
    EXPECT_EQ(ann.get<int>(0), 1);
    EXPECT_EQ(ann.get<std::int64_t>("id"), 1);
    EXPECT_EQ(ann.get<std::string>(1), "ann");
    EXPECT_EQ(ann.get<std::string>("email"), "ann@x.org");
    EXPECT_EQ(ann.get<double>("score"), 1.5);
    EXPECT_EQ(r[1].get<std::optional<std::string>>("email"), std::nullopt);
    EXPECT_EQ(r[1].get<std::optional<std::string>>("name"), "bob");
    EXPECT_EQ(r[1].get<double>("score"), 2.0);  // REAL affinity stored 2 as 2.0
    EXPECT_EQ(ann.index_of("score"), 3);
    EXPECT_EQ(ann[1], asqlite::value{std::string("ann")});
    EXPECT_EQ(ann.column_name(2), "email");
}

TEST_F(Row, AStructReadsItsDescribedBasesColumnsThenItsOwn) {
    using test_model::ranked_person;
    const auto rows = c.query<ranked_person>(
        "SELECT id, name, email, score, rank() OVER (ORDER BY score DESC) AS rank FROM people "
        "ORDER BY id");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].name, "ann");
    EXPECT_EQ(rows[0].email, "ann@x.org");
    EXPECT_EQ(rows[0].rank, 2);
    EXPECT_EQ(rows[1].name, "bob");
    EXPECT_EQ(rows[1].score, 2);
    EXPECT_EQ(rows[1].rank, 1);
    // By name, in any order; a missing base column is refused like any other.
    EXPECT_EQ(c.one<ranked_person>("SELECT 7 AS rank, score, email, name, id FROM people "
                                   "WHERE id = 2")
                  .rank,
              7);
    EXPECT_TRUE(
        fails_with([&] { c.query<ranked_person>("SELECT id, name, 1 AS rank FROM people"); },
                   errc::column_not_found, {"email"}));
}

TEST_F(Row, IndexOutOfRangeIsAnAsqliteError) {
    const auto r = c.execute("SELECT id, name FROM people ORDER BY id");
    EXPECT_TRUE(
        fails_with([&] { (void)r[0][2]; }, errc::column_not_found, {"index 2", "2 columns"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0][-1]; }, errc::column_not_found, {"index -1"}));
}

TEST_F(Row, NullIntoNonOptional) {
    const auto r = c.execute("SELECT email FROM people WHERE name = 'bob'");
    auto e = catch_error([&] { (void)r[0].get<std::string>(0); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::null_value);
    EXPECT_TRUE(contains(e->message(), "column 'email'"));
    EXPECT_TRUE(contains(e->message(), "NULL"));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<int>("email"); }, errc::null_value, {"'email'"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<double>(0); }, errc::null_value, {"'email'"}));
    EXPECT_TRUE(
        fails_with([&] { (void)r[0].get<asqlite::blob>(0); }, errc::null_value, {"'email'"}));
    EXPECT_TRUE(
        fails_with([&] { (void)r[0].get<asqlite::timestamp>(0); }, errc::null_value, {"'email'"}));
}

TEST_F(Row, TextIntoIntegerIsAMismatch) {
    const auto r = c.execute("SELECT name, '42' AS numeric_text FROM people WHERE id = 1");
    auto e = catch_error([&] { (void)r[0].get<int>("name"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::type_mismatch);
    EXPECT_TRUE(contains(e->message(), "column 'name'"));
    EXPECT_TRUE(contains(e->message(), "TEXT"));
    // Even text that looks like a number is not silently converted.
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<int>(1); }, errc::type_mismatch,
                           {"'numeric_text'", "TEXT"}));
    EXPECT_TRUE(
        fails_with([&] { (void)r[0].get<double>(1); }, errc::type_mismatch, {"'numeric_text'"}));
}

TEST_F(Row, OtherMismatches) {
    const auto r = c.execute("SELECT 1.5 AS r, 7 AS i, x'01' AS b, 'x' AS t");
    EXPECT_TRUE(
        fails_with([&] { (void)r[0].get<int>("r"); }, errc::type_mismatch, {"'r'", "REAL"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<std::string>("i"); }, errc::type_mismatch,
                           {"'i'", "INTEGER"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<std::string>("b"); }, errc::type_mismatch,
                           {"'b'", "BLOB"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<asqlite::blob>("t"); }, errc::type_mismatch,
                           {"'t'", "TEXT"}));
    EXPECT_TRUE(
        fails_with([&] { (void)r[0].get<asqlite::timestamp>("i"); }, errc::type_mismatch, {"'i'"}));
    EXPECT_TRUE(
        fails_with([&] { (void)r[0].get<std::optional<int>>("t"); }, errc::type_mismatch, {"'t'"}));
    // An integer widens to floating point without loss of meaning.
    EXPECT_EQ(r[0].get<double>("i"), 7.0);
    EXPECT_EQ(r[0].get<asqlite::blob>("b"), asqlite::blob{std::byte{1}});
}

TEST_F(Row, IntegerOverflowIsOutOfRange) {
    const auto r = c.execute(
        "SELECT 300 AS big, -1 AS neg, 2 AS two, 9223372036854775807 AS max, 4294967296 AS wide");
    auto e = catch_error([&] { (void)r[0].get<std::int8_t>("big"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::value_out_of_range);
    EXPECT_TRUE(contains(e->message(), "column 'big'"));
    EXPECT_TRUE(contains(e->message(), "300"));
    EXPECT_TRUE(contains(e->message(), "1-byte"));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<std::uint8_t>("big"); }, errc::value_out_of_range,
                           {"300"}));
    EXPECT_EQ(r[0].get<std::int16_t>("big"), 300);
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<std::uint32_t>("neg"); }, errc::value_out_of_range,
                           {"'neg'", "-1"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<std::uint64_t>("neg"); }, errc::value_out_of_range,
                           {"-1"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<bool>("two"); }, errc::value_out_of_range,
                           {"'two'", "not a bool"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<std::int32_t>("wide"); }, errc::value_out_of_range,
                           {"4294967296"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<std::uint32_t>("wide"); }, errc::value_out_of_range,
                           {"4294967296"}));
    EXPECT_EQ(r[0].get<std::uint64_t>("max"), 9223372036854775807ULL);
    EXPECT_EQ(r[0].get<std::int64_t>("wide"), 4294967296LL);
    EXPECT_EQ(r[0].get<std::int8_t>("neg"), -1);
}

TEST_F(Row, BoolAndTimestamp) {
    const auto r =
        c.execute("SELECT 1 AS t, 0 AS f, '2024-03-05 13:04:05' AS ts, 'yesterday' AS bad");
    EXPECT_TRUE(r[0].get<bool>("t"));
    EXPECT_FALSE(r[0].get<bool>("f"));
    using namespace std::chrono;
    EXPECT_EQ(r[0].get<asqlite::timestamp>("ts"), sys_days{2024y / March / 5} + 13h + 4min + 5s);
    auto e = catch_error([&] { (void)r[0].get<asqlite::timestamp>("bad"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::bad_timestamp);
    EXPECT_TRUE(contains(e->message(), "column 'bad'"));
    EXPECT_TRUE(contains(e->message(), "'yesterday'"));
}

TEST_F(Row, UnknownColumn) {
    const auto r = c.execute("SELECT id FROM people");
    EXPECT_TRUE(
        fails_with([&] { (void)r[0].get<int>("nosuch"); }, errc::column_not_found, {"'nosuch'"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].get<int>(1); }, errc::column_not_found,
                           {"column index 1", "1 columns"}));
    EXPECT_TRUE(
        fails_with([&] { (void)r[0].get<int>(-1); }, errc::column_not_found, {"column index -1"}));
}

TEST_F(Row, DynamicValues) {
    const auto r = c.execute("SELECT NULL, 1, 2.5, 'x', x'0102'");
    const auto& v = r[0].values();
    ASSERT_EQ(v.size(), 5u);
    EXPECT_TRUE(v[0].is_null());
    EXPECT_EQ(v[1].integer(), 1);
    EXPECT_EQ(v[2].real(), 2.5);
    EXPECT_EQ(v[3].text(), "x");
    EXPECT_EQ(v[4].bytes(), (asqlite::blob{std::byte{1}, std::byte{2}}));
    EXPECT_EQ(r[0].get<asqlite::value>(3).type(), asqlite::value_type::text);
}

TEST_F(Row, ResultMetadata) {
    const auto sel = c.execute("SELECT id, name AS who FROM people ORDER BY id");
    EXPECT_EQ(sel.columns(), (std::vector<std::string>{"id", "who"}));
    EXPECT_EQ(sel.size(), 2u);
    EXPECT_FALSE(sel.empty());
    EXPECT_EQ(sel.rows_affected(), 0);
    int n = 0;
    for (const auto& row : sel) {
        EXPECT_EQ(row.get<int>("id"), ++n);
    }
    EXPECT_EQ(n, 2);

    const auto ins = c.execute("INSERT INTO people(name) VALUES (?)", "cy");
    EXPECT_TRUE(ins.empty());
    EXPECT_TRUE(ins.columns().empty());
    EXPECT_EQ(ins.rows_affected(), 1);
    EXPECT_EQ(ins.last_insert_id(), 3);

    const auto upd = c.execute("UPDATE people SET score = score + 1");
    EXPECT_EQ(upd.rows_affected(), 3);

    // A read after a write does not report the write's changes.
    const auto after = c.execute("SELECT count(*) FROM people");
    EXPECT_EQ(after.rows_affected(), 0);

    const auto del = c.execute("DELETE FROM people WHERE name = ?", "nobody");
    EXPECT_EQ(del.rows_affected(), 0);

    const auto none = c.execute("SELECT * FROM people WHERE id < 0");
    EXPECT_TRUE(none.empty());
    EXPECT_EQ(none.columns().size(), 4u);
}

TEST_F(Row, InsertReturning) {
    const auto r = c.execute("INSERT INTO people(name) VALUES ('d'), ('e') RETURNING id, name");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].get<int>("id"), 3);
    EXPECT_EQ(r[1].get<std::string>("name"), "e");
    EXPECT_EQ(r.rows_affected(), 2);
    EXPECT_EQ(r.last_insert_id(), 4);
}

TEST_F(Row, MapsToTuples) {
    using t = std::tuple<int, std::string, std::optional<std::string>>;
    const auto rows = c.query<t>("SELECT id, name, email FROM people ORDER BY id");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0], t(1, "ann", "ann@x.org"));
    EXPECT_EQ(rows[1], t(2, "bob", std::nullopt));
    const auto r = c.execute("SELECT id, name, email FROM people ORDER BY id");
    EXPECT_EQ(r.as<t>(), rows);
    EXPECT_EQ(r[1].as<t>(), rows[1]);
}

TEST_F(Row, TupleWidthMustMatch) {
    using t = std::tuple<int, std::string, std::optional<std::string>>;
    EXPECT_TRUE(fails_with([&] { c.query<t>("SELECT id, name FROM people"); },
                           errc::column_count_mismatch, {"result has 2 columns", "reads 3"}));
    EXPECT_TRUE(fails_with([&] { c.query<int>("SELECT id, name FROM people"); },
                           errc::column_count_mismatch, {"result has 2 columns", "reads 1"}));
}

TEST_F(Row, TupleElementsAreChecked) {
    using t = std::tuple<int, int>;
    EXPECT_TRUE(fails_with([&] { c.query<t>("SELECT id, name FROM people"); }, errc::type_mismatch,
                           {"'name'"}));
    EXPECT_TRUE(fails_with(
        [&] { c.query<std::tuple<int, std::string>>("SELECT id, email FROM people ORDER BY id"); },
        errc::null_value, {"'email'"}));
}

TEST_F(Row, MapsToDescribedStructsByName) {
    const auto rows = c.query<person>("SELECT id, name, email, score FROM people ORDER BY id");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].id, 1);
    EXPECT_EQ(rows[0].name, "ann");
    EXPECT_EQ(rows[0].email, "ann@x.org");
    EXPECT_EQ(rows[0].score, 1.5);
    EXPECT_EQ(rows[1].email, std::nullopt);
    // Column order does not matter.
    const auto p = c.one<person>("SELECT score, email, name, id FROM people WHERE id = ?", 2);
    EXPECT_EQ(p.id, 2);
    EXPECT_EQ(p.name, "bob");
    EXPECT_EQ(p.score, 2.0);
    // Materialised results map the same way.
    const auto r = c.execute("SELECT * FROM people ORDER BY id");
    EXPECT_EQ(r.as<person>().size(), 2u);
    EXPECT_EQ(r[1].as<person>().name, "bob");
}

TEST_F(Row, MissingColumnNamesTheMember) {
    auto e = catch_error([&] { c.query<person>("SELECT id, name, score FROM people"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::column_not_found);
    EXPECT_TRUE(contains(e->message(), "member 'email'"));
    const auto r = c.execute("SELECT id, name, email FROM people");
    EXPECT_TRUE(fails_with([&] { (void)r.as<person>(); }, errc::column_not_found, {"'score'"}));
    EXPECT_TRUE(fails_with([&] { (void)r[0].as<person>(); }, errc::column_not_found, {"'score'"}));
    // Even when no row came back, as query<T> does.
    const auto none = c.execute("SELECT id, name, email FROM people WHERE id < 0");
    ASSERT_TRUE(none.empty());
    EXPECT_EQ(none.column_count(), 3);
    EXPECT_EQ(none.column_name(2), "email");
    EXPECT_TRUE(fails_with([&] { (void)none.as<person>(); }, errc::column_not_found, {"'score'"}));
    EXPECT_TRUE(fails_with([&] { (void)none.as<std::tuple<int, int>>(); },
                           errc::column_count_mismatch, {}));
    EXPECT_TRUE(c.execute("SELECT * FROM people WHERE id < 0").as<person>().empty());
}

TEST_F(Row, ExtraColumnIsNamed) {
    auto e = catch_error(
        [&] { c.query<person>("SELECT id, name, email, score, 42 AS surplus FROM people"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::extra_column);
    EXPECT_TRUE(contains(e->message(), "column 'surplus'"));
    EXPECT_TRUE(fails_with([&] { c.one<person>("SELECT *, 1 AS more FROM people WHERE id = 1"); },
                           errc::extra_column, {"'more'"}));
}

TEST_F(Row, StructFieldsAreChecked) {
    auto e =
        catch_error([&] { c.query<person>("SELECT id, email AS name, email, score FROM people"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::null_value);
    EXPECT_TRUE(contains(e->message(), "'name'"));
    EXPECT_TRUE(
        fails_with([&] { c.query<person>("SELECT id, name, email, 'high' AS score FROM people"); },
                   errc::type_mismatch, {"'score'", "TEXT"}));
}

TEST_F(Row, MappingIsCheckedEvenWithoutRows) {
    // The columns are known before the first row: a query that cannot map
    // fails whether or not the table holds data.
    EXPECT_TRUE(fails_with([&] { c.query<person>("SELECT id FROM people WHERE id < 0"); },
                           errc::column_not_found, {"'name'"}));
    EXPECT_TRUE(
        fails_with([&] { c.one_or_none<person>("SELECT *, 1 AS more FROM people WHERE id < 0"); },
                   errc::extra_column, {"'more'"}));
    EXPECT_TRUE(fails_with([&] { c.query<std::tuple<int, int>>("SELECT id FROM people WHERE 0"); },
                           errc::column_count_mismatch, {"result has 1 columns"}));
    EXPECT_TRUE(c.query<person>("SELECT * FROM people WHERE id < 0").empty());
}

}  // namespace
