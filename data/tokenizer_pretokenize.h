// GPT-2's pre-tokenisation, written by hand instead of with a regex library:
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// The text is split into pieces; BPE then runs inside each piece. Classes follow the
// JavaScript regex engine (see tokenizer_unicode_tables.h), which is what js-tiktoken,
// our reference, uses. Bytes that are not valid UTF-8 are taken one at a time as code
// points of class "other", so any byte string splits into pieces that cover it exactly.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gpt::data {

enum class CharClass : uint8_t { letter = 0, number = 1, space = 2, other = 3 };

// Class of a Unicode code point (any value; out-of-range ones are "other").
CharClass char_class(uint32_t cp);

// Decodes the code point at s[i] (i < n), strictly: overlong forms, surrogates and
// values above U+10FFFF are invalid. Returns its byte length (1 for an invalid byte)
// and its class in *cls.
size_t utf8_next(const uint8_t* s, size_t n, size_t i, CharClass* cls);

// End (exclusive) of the pre-tokenisation piece that starts at s[i], i < n.
size_t pretokenize_next(const uint8_t* s, size_t n, size_t i);

// Calls fn(begin, end) for each piece of s[0, n) in order.
template <typename Fn>
void pretokenize(const uint8_t* s, size_t n, Fn&& fn) {
  size_t i = 0;
  while (i < n) {
    size_t e = pretokenize_next(s, n, i);
    fn(i, e);
    i = e;
  }
}

}  // namespace gpt::data
