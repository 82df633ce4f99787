#include "data/tokenizer_pretokenize.h"

#include <algorithm>
#include <array>
#include <vector>

#include "data/tokenizer_unicode_tables.h"

namespace gpt::data {
namespace {

// The Basic Multilingual Plane covers nearly all text, so it gets a direct table of
// 2-bit classes (16 KiB); astral code points binary-search the runs.
struct BmpTable {
  std::array<uint8_t, 0x10000 / 4> packed{};
  BmpTable() {
    using namespace unicode_tables;
    for (int r = 0; r < kRunCount; ++r) {
      uint32_t begin = kRuns[r] >> 2;
      uint32_t end = r + 1 < kRunCount ? (kRuns[r + 1] >> 2) : 0x110000;
      uint32_t cls = kRuns[r] & 3;
      for (uint32_t cp = begin; cp < std::min<uint32_t>(end, 0x10000); ++cp)
        packed[cp >> 2] |= uint8_t(cls << ((cp & 3) * 2));
    }
  }
  CharClass get(uint32_t cp) const { return CharClass((packed[cp >> 2] >> ((cp & 3) * 2)) & 3); }
};
const BmpTable& bmp_table() {
  static const BmpTable table;
  return table;
}

// ASCII classes, built from the same generated runs so there is one source of truth.
struct AsciiTable {
  std::array<CharClass, 128> cls{};
  AsciiTable() {
    for (uint32_t c = 0; c < 128; ++c) cls[c] = bmp_table().get(c);
  }
};
const AsciiTable& ascii_table() {
  static const AsciiTable table;
  return table;
}

inline bool is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

inline CharClass class_at(const uint8_t* s, size_t n, size_t i, size_t* len) {
  uint8_t b = s[i];
  if (b < 0x80) {
    *len = 1;
    return ascii_table().cls[b];
  }
  CharClass cls;
  *len = utf8_next(s, n, i, &cls);
  return cls;
}

}  // namespace

CharClass char_class(uint32_t cp) {
  if (cp < 0x10000) return bmp_table().get(cp);
  if (cp >= 0x110000) return CharClass::other;
  using namespace unicode_tables;
  // Last run whose start <= cp.
  const uint32_t* it = std::upper_bound(kRuns, kRuns + kRunCount, (cp << 2) | 3);
  return CharClass(*(it - 1) & 3);
}

size_t utf8_next(const uint8_t* s, size_t n, size_t i, CharClass* cls) {
  uint8_t b0 = s[i];
  if (b0 < 0x80) {
    *cls = ascii_table().cls[b0];
    return 1;
  }
  size_t left = n - i;
  uint32_t cp = 0;
  size_t len = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (left >= 2 && is_cont(s[i + 1])) {
      cp = (uint32_t(b0 & 0x1F) << 6) | (s[i + 1] & 0x3F);
      len = 2;
    }
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    // Second-byte bounds reject overlong forms (E0) and surrogates (ED).
    uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    if (left >= 3 && s[i + 1] >= lo && s[i + 1] <= hi && is_cont(s[i + 2])) {
      cp = (uint32_t(b0 & 0x0F) << 12) | (uint32_t(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
      len = 3;
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    // Bounds reject overlong forms (F0) and values above U+10FFFF (F4).
    uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (left >= 4 && s[i + 1] >= lo && s[i + 1] <= hi && is_cont(s[i + 2]) && is_cont(s[i + 3])) {
      cp = (uint32_t(b0 & 0x07) << 18) | (uint32_t(s[i + 1] & 0x3F) << 12) |
           (uint32_t(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
      len = 4;
    }
  }
  if (len == 0) {
    *cls = CharClass::other;  // an invalid byte stands alone
    return 1;
  }
  *cls = char_class(cp);
  return len;
}

size_t pretokenize_next(const uint8_t* s, size_t n, size_t i) {
  // 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, tried first)
  if (s[i] == '\'' && i + 1 < n) {
    uint8_t c1 = s[i + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    if (i + 2 < n) {
      uint8_t c2 = s[i + 2];
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return i + 3;
    }
  }
  // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+': an optional U+0020, then a run of one class.
  size_t len;
  size_t j = i;
  CharClass cls = class_at(s, n, i, &len);
  if (s[i] == ' ' && i + 1 < n) {
    size_t len1;
    CharClass next = class_at(s, n, i + 1, &len1);
    if (next != CharClass::space) {
      cls = next;
      j = i + 1;
      len = len1;
    }
  }
  if (cls != CharClass::space) {
    j += len;
    while (j < n) {
      if (class_at(s, n, j, &len) != cls) break;
      j += len;
    }
    return j;
  }
  // '\s+(?!\S)|\s+': the whole whitespace run if it reaches the end of the text;
  // otherwise all of it but its last code point (which then leads the next piece),
  // unless that leaves nothing, in which case the single whitespace code point.
  size_t last = i;
  j = i + len;
  while (j < n) {
    if (class_at(s, n, j, &len) != CharClass::space) break;
    last = j;
    j += len;
  }
  if (j == n) return j;
  return last > i ? last : j;
}

}  // namespace gpt::data
