// A small JSON reader and the quoting a writer needs: enough for safetensors headers and
// Hugging Face config.json files, so core takes no JSON library dependency.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gpt::json {

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0.0;
  std::string text;  // a string's (unescaped) value, or a number's literal as written
  std::vector<Value> items;                             // Array
  std::vector<std::pair<std::string, Value>> members;  // Object, in file order

  bool is_null() const { return kind == Kind::Null; }
  bool is_bool() const { return kind == Kind::Bool; }
  bool is_number() const { return kind == Kind::Number; }
  bool is_string() const { return kind == Kind::String; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_object() const { return kind == Kind::Object; }
  // The member named `key` of an object, or nullptr (also when this is not an object).
  const Value* find(const std::string& key) const;
  // The number as an exact integer: false when it is not a number, has a fraction or an
  // exponent, or does not fit int64 (offsets beyond 2^53 must not round silently).
  bool as_int64(int64_t& out) const;
};

// Parses a whole document (surrounding whitespace allowed, nothing else after it).
// Duplicate object keys and nesting deeper than 64 are rejected. Throws gpt::Error
// "<what>: bad JSON at byte N: <reason>".
Value parse(const std::string& text, const std::string& what);

// `s` as a JSON string literal, quotes included (", \ and control characters escaped).
std::string quote(const std::string& s);

const char* kind_name(Value::Kind k);

}  // namespace gpt::json
