#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "asqlite/value.hpp"
#include "support/check.hpp"

namespace {

using namespace std::chrono;
using asqlite::errc;
using asqlite::format_timestamp;
using asqlite::parse_timestamp;
using asqlite::test::fails_with;

asqlite::timestamp at(year_month_day d, hours h, minutes m, seconds s,
                      microseconds us = microseconds{0}) {
    return sys_days{d} + h + m + s + us;
}

TEST(Timestamp, FormatsLikeCurrentTimestamp) {
    EXPECT_EQ(format_timestamp(at(2024y / March / 5, 13h, 4min, 5s)), "2024-03-05 13:04:05");
    EXPECT_EQ(format_timestamp(sys_days{1970y / January / 1}), "1970-01-01 00:00:00");
    EXPECT_EQ(format_timestamp(at(1999y / December / 31, 23h, 59min, 59s)), "1999-12-31 23:59:59");
}

TEST(Timestamp, FormatsFractionOnlyWhenPresent) {
    EXPECT_EQ(format_timestamp(at(2024y / March / 5, 13h, 4min, 5s, 123456us)),
              "2024-03-05 13:04:05.123456");
    EXPECT_EQ(format_timestamp(at(2024y / March / 5, 13h, 4min, 5s, 500ms)),
              "2024-03-05 13:04:05.500000");
    // Sub-microsecond parts are truncated, not rounded up into the next second.
    const asqlite::timestamp t = at(2024y / March / 5, 13h, 4min, 5s) + nanoseconds{999'999'999};
    EXPECT_EQ(format_timestamp(t), "2024-03-05 13:04:05.999999");
}

TEST(Timestamp, FormatsTimesBeforeTheEpoch) {
    EXPECT_EQ(format_timestamp(at(1969y / December / 31, 23h, 59min, 59s, 500ms)),
              "1969-12-31 23:59:59.500000");
}

TEST(Timestamp, FormatsTheWholeRange) {
    EXPECT_EQ(format_timestamp(asqlite::timestamp::min()), "1677-09-21 00:12:43.145224");
    EXPECT_EQ(format_timestamp(asqlite::timestamp::max()), "2262-04-11 23:47:16.854775");
}

TEST(Timestamp, ParsesTheCurrentTimestampForm) {
    EXPECT_EQ(parse_timestamp("2024-03-05 13:04:05"), at(2024y / March / 5, 13h, 4min, 5s));
    EXPECT_EQ(parse_timestamp("2000-02-29 00:00:00"), at(2000y / February / 29, 0h, 0min, 0s));
}

TEST(Timestamp, ParsesFractionalSeconds) {
    EXPECT_EQ(parse_timestamp("2024-03-05 13:04:05.5"),
              at(2024y / March / 5, 13h, 4min, 5s, 500000us));
    EXPECT_EQ(parse_timestamp("2024-03-05 13:04:05.123"),
              at(2024y / March / 5, 13h, 4min, 5s, 123000us));
    EXPECT_EQ(parse_timestamp("2024-03-05 13:04:05.123456"),
              at(2024y / March / 5, 13h, 4min, 5s, 123456us));
    // Digits past the microsecond are dropped.
    EXPECT_EQ(parse_timestamp("2024-03-05 13:04:05.123456789"),
              at(2024y / March / 5, 13h, 4min, 5s, 123456us));
}

TEST(Timestamp, ParsesIsoTAndZone) {
    const auto expected = at(2024y / March / 5, 13h, 4min, 5s);
    EXPECT_EQ(parse_timestamp("2024-03-05T13:04:05"), expected);
    EXPECT_EQ(parse_timestamp("2024-03-05T13:04:05Z"), expected);
    EXPECT_EQ(parse_timestamp("2024-03-05 13:04:05Z"), expected);
    EXPECT_EQ(parse_timestamp("2024-03-05T15:04:05+02:00"), expected);
    EXPECT_EQ(parse_timestamp("2024-03-05T07:34:05-05:30"), expected);
    EXPECT_EQ(parse_timestamp("2024-03-05T13:04:05.25Z"), expected + 250ms);
    // An offset can move the instant across midnight.
    EXPECT_EQ(parse_timestamp("2024-03-06 01:00:00+02:00"), at(2024y / March / 5, 23h, 0min, 0s));
}

TEST(Timestamp, SecondsAreOptional) {
    EXPECT_EQ(parse_timestamp("2024-03-05 13:04"), at(2024y / March / 5, 13h, 4min, 0s));
    EXPECT_EQ(parse_timestamp("2024-03-05T13:04Z"), at(2024y / March / 5, 13h, 4min, 0s));
}

TEST(Timestamp, RoundTrips) {
    for (const char* text :
         {"2024-03-05 13:04:05", "2024-03-05 13:04:05.000001", "1970-01-01 00:00:00",
          "2038-01-19 03:14:08.999999", "1900-02-28 12:00:00", "2262-04-11 23:47:16.854775"}) {
        EXPECT_EQ(format_timestamp(parse_timestamp(text)), text);
    }
    const asqlite::timestamp now = system_clock::now();
    EXPECT_EQ(parse_timestamp(format_timestamp(now)), floor<microseconds>(now));
}

TEST(Timestamp, OutOfRangeIsRejected) {
    // timestamp counts nanoseconds since 1970 in 64 bits: 1677-09-21 to 2262-04-11.
    EXPECT_TRUE(fails_with([] { (void)parse_timestamp("9999-12-31 23:59:59"); },
                           errc::bad_timestamp, {"'9999-12-31 23:59:59'", "out of the range"}));
    EXPECT_TRUE(fails_with([] { (void)parse_timestamp("2262-04-11 23:47:17"); },
                           errc::bad_timestamp, {"out of the range"}));
    EXPECT_TRUE(fails_with([] { (void)parse_timestamp("1677-09-21 00:12:43"); },
                           errc::bad_timestamp, {"out of the range"}));
    EXPECT_TRUE(fails_with([] { (void)parse_timestamp("0001-01-01 00:00:00"); },
                           errc::bad_timestamp, {"out of the range"}));
    EXPECT_EQ(parse_timestamp("1677-09-21 00:12:44"), at(1677y / September / 21, 0h, 12min, 44s));
}

class TimestampBadInput : public ::testing::TestWithParam<const char*> {};

TEST_P(TimestampBadInput, IsRejectedNamingTheText) {
    const std::string text = GetParam();
    EXPECT_TRUE(fails_with([&] { (void)parse_timestamp(text); }, errc::bad_timestamp,
                           {"'" + text + "'", "not a timestamp"}));
}

INSTANTIATE_TEST_SUITE_P(
    Timestamp, TimestampBadInput,
    ::testing::Values("", "2024", "2024-03-05", "2024-03-05 ", "2024/03/05 13:04:05",
                      "24-03-05 13:04:05", "2024-3-5 13:04:05", "2024-03-05X13:04:05",
                      "2024-03-05  13:04:05", "2024-13-05 13:04:05", "2024-00-05 13:04:05",
                      "2023-02-29 13:04:05", "2024-04-31 13:04:05", "2024-03-05 24:00:00",
                      "2024-03-05 13:60:00", "2024-03-05 13:04:61", "2024-03-05 23:59:60",
                      "2024-03-05 13:04:05.", "2024-03-05 13:04:05 ", "2024-03-05 13:04:05z",
                      "2024-03-05 13:04:05+0200", "2024-03-05 13:04:05+02",
                      "2024-03-05 13:04:05Zjunk", "abcd-ef-gh ij:kl:mn", "2024-03-05 -1:04:05",
                      "2024-03-05 13:-4:05", "2024-03-05 13:04:-5", "-024-03-05 13:04:05",
                      "+024-03-05 13:04:05", "2024-03-05 1a:04:05", "2024-03-05 13:04:05+-1:00",
                      "2024-03-05 13:04:05+99:00", "2024-03-05 13:04:05+02:75"));

}  // namespace
