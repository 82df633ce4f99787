// json_lite: the grammar's edge cases, and one clear error for each kind of bad text.
#include <gtest/gtest.h>

#include <string>

#include "core/checkpoint/json_lite.h"
#include "tests/support/error_of.h"

namespace gpt {
namespace {

json::Value parse(const std::string& s) { return json::parse(s, "test.json"); }

TEST(JsonLite, ParsesEveryKind) {
  const json::Value v = parse(
      " {\"a\": [1, -2.5, 1e-05, 1E+2, -0, true, false, null], \"b\": {\"c\": \"d\"}, \"e\": []}\n");
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.members.size(), 3u);
  EXPECT_EQ(v.members[0].first, "a");  // file order is kept
  const json::Value& a = *v.find("a");
  ASSERT_EQ(a.items.size(), 8u);
  EXPECT_EQ(a.items[0].number, 1.0);
  EXPECT_EQ(a.items[1].number, -2.5);
  EXPECT_EQ(a.items[2].number, 1e-5);
  EXPECT_EQ(a.items[2].text, "1e-05");
  EXPECT_EQ(a.items[3].number, 100.0);
  EXPECT_TRUE(a.items[5].is_bool() && a.items[5].boolean);
  EXPECT_TRUE(a.items[6].is_bool() && !a.items[6].boolean);
  EXPECT_TRUE(a.items[7].is_null());
  EXPECT_EQ(v.find("b")->find("c")->text, "d");
  EXPECT_TRUE(v.find("e")->is_array() && v.find("e")->items.empty());
  EXPECT_EQ(v.find("zz"), nullptr);
  EXPECT_EQ(a.find("x"), nullptr);  // not an object
}

TEST(JsonLite, StringEscapes) {
  const json::Value v = parse(R"(["a\"b\\c\/d\b\f\n\r\t", "\u00e9\u4e2d", "\ud83d\ude00", "\u0000x"])");
  EXPECT_EQ(v.items[0].text, "a\"b\\c/d\b\f\n\r\t");
  EXPECT_EQ(v.items[1].text, "\xC3\xA9\xE4\xB8\xAD");
  EXPECT_EQ(v.items[2].text, "\xF0\x9F\x98\x80");  // surrogate pair -> one 4-byte code point
  EXPECT_EQ(v.items[3].text, std::string("\0x", 2));
  EXPECT_EQ(parse("\"h\xC3\xA9\"").text, "h\xC3\xA9");  // raw UTF-8 passes through
}

TEST(JsonLite, Int64IsExact) {
  int64_t n = 0;
  EXPECT_TRUE(parse("9007199254740993").as_int64(n));  // 2^53 + 1: a double would round it
  EXPECT_EQ(n, 9007199254740993LL);
  EXPECT_TRUE(parse("-7").as_int64(n));
  EXPECT_EQ(n, -7);
  EXPECT_FALSE(parse("1.0").as_int64(n));
  EXPECT_FALSE(parse("1e3").as_int64(n));
  EXPECT_FALSE(parse("99999999999999999999").as_int64(n));  // overflows int64
  EXPECT_FALSE(parse("\"5\"").as_int64(n));
}

TEST(JsonLite, QuoteRoundTrips) {
  const std::string s = "q\"b\\s\n\t\x01 \xC3\xA9";
  EXPECT_EQ(json::quote("ab"), "\"ab\"");
  EXPECT_EQ(parse(json::quote(s)).text, s);
}

TEST(JsonLite, RejectsBadTextWithOneLine) {
  const char* bad[] = {"",        "tru",        "[1,]",       "{\"a\":1,}", "{'a': 1}",
                       "01",      "1.",         ".5",         "-",          "+1",
                       "\"abc",   "\"a\nb\"",   "\"\\x\"",    "\"\\u12\"",  "\"\\ud83d\"",
                       "\"\\ude00\"", "{\"a\":1,\"a\":2}", "[1] [2]", "{\"a\" 1}", "[1 2]",
                       "NaN",     "1e999"};
  for (const char* text : bad) {
    const std::string e = error_of([&] { parse(text); });
    EXPECT_NE(e.find("test.json: bad JSON at byte "), std::string::npos) << "text: " << text << " -> " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  EXPECT_NE(error_of([] { parse("{\"a\":1,\"a\":2}"); }).find("duplicate key \"a\""), std::string::npos);
}

TEST(JsonLite, RejectsDeepNesting) {
  EXPECT_NO_THROW(parse(std::string(60, '[') + std::string(60, ']')));
  const std::string e = error_of([] { parse(std::string(100000, '[')); });
  EXPECT_NE(e.find("nested deeper than 64"), std::string::npos) << e;
}

}  // namespace
}  // namespace gpt
