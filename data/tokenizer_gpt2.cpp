// Loading GPT-2's own files: encoder.json (token string -> id) and vocab.bpe (the
// merge list). Both spell bytes through GPT-2's byte-to-unicode table, which maps each
// byte to a printable code point so the files stay readable text.
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "data/tokenizer.h"
#include "data/tokenizer_bpe.h"

namespace gpt::data {
namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100 onwards in byte order. We need the inverse: code point -> byte.
std::vector<int> unicode_to_byte_table() {
  std::vector<int> inverse(512, -1);
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  int n = 0;
  for (int b = 0; b < 256; ++b) inverse[printable(b) ? b : 256 + n++] = b;
  return inverse;
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw std::runtime_error(std::string("tokenizer: cannot open GPT-2 ") + what + " file '" + path +
                             "' (run scripts/fetch_assets.sh to fetch it)");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// A parser for exactly what encoder.json is: one flat object of string -> integer.
class FlatJsonParser {
 public:
  FlatJsonParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  std::vector<std::pair<std::string, long long>> parse() {
    std::vector<std::pair<std::string, long long>> out;
    expect('{');
    if (peek() == '}') {
      ++i_;
    } else {
      for (;;) {
        std::string key = string_value();
        expect(':');
        out.emplace_back(std::move(key), int_value());
        char c = peek();
        ++i_;
        if (c == '}') break;
        if (c != ',') fail("expected ',' or '}'");
      }
    }
    if (peek() != '\0') fail("trailing data after the object");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("tokenizer: malformed GPT-2 encoder file '" + path_ + "' at byte " +
                             std::to_string(i_) + ": " + what);
  }
  char peek() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
    return i_ < s_.size() ? s_[i_] : '\0';
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (d < 0) fail("bad \\u escape");
      v = v * 16 + d;
    }
    return v;
  }
  std::string string_value() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF && i_ + 1 < s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
            i_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("unknown escape");
      }
    }
  }
  long long int_value() {
    peek();
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    const size_t digits = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    // A sign alone is no number (std::stoll would throw std::invalid_argument at it).
    if (i_ == digits || i_ - start > 12) fail("expected an integer token id");
    return std::stoll(s_.substr(start, i_ - start));
  }

  const std::string& s_;
  const std::string& path_;
  size_t i_ = 0;
};

// Decodes a UTF-8 token spelling to raw bytes through the byte-to-unicode inverse.
bool unspell(const std::string& spelled, const std::vector<int>& inverse, std::string& out) {
  out.clear();
  for (size_t i = 0; i < spelled.size();) {
    auto c = uint8_t(spelled[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < spelled.size()) {
      cp = (uint32_t(c & 0x1F) << 6) | (uint8_t(spelled[i + 1]) & 0x3F);
      i += 2;
    } else {
      return false;  // every code point of the table is below U+0800
    }
    if (cp >= inverse.size() || inverse[cp] < 0) return false;
    out += char(inverse[cp]);
  }
  return !out.empty();
}

}  // namespace

Tokenizer Tokenizer::load_gpt2(const std::string& encoder_json_path,
                               const std::string& vocab_bpe_path) {
  const std::vector<int> inverse = unicode_to_byte_table();
  auto v = std::make_shared<Vocab>();
  v->name = "gpt2-bpe";

  std::string json = read_file(encoder_json_path, "encoder.json");
  auto entries = FlatJsonParser(json, encoder_json_path).parse();
  auto bad_json = [&](const std::string& what) {
    return std::runtime_error("tokenizer: malformed GPT-2 encoder file '" + encoder_json_path + "': " + what);
  };
  if (entries.size() < 257) throw bad_json("only " + std::to_string(entries.size()) + " tokens");
  v->tokens.resize(entries.size());
  std::vector<bool> seen(entries.size(), false);
  std::unordered_map<std::string, int32_t> id_of;
  for (const auto& [spelled, id] : entries) {
    if (id < 0 || id >= (long long)entries.size() || seen[id])
      throw bad_json("token ids must be 0.." + std::to_string(entries.size() - 1) +
                     ", each once (bad id " + std::to_string(id) + ")");
    seen[id] = true;
    if (spelled == "<|endoftext|>") {
      v->eot = int32_t(id);
      v->tokens[id] = spelled;
      continue;
    }
    if (!unspell(spelled, inverse, v->tokens[id]))
      throw bad_json("token " + std::to_string(id) + " is not spelled in GPT-2's byte alphabet");
    id_of[v->tokens[id]] = int32_t(id);
  }
  if (v->eot < 0) throw bad_json("no <|endoftext|> token");

  std::istringstream bpe(read_file(vocab_bpe_path, "vocab.bpe"));
  std::string line, a, b;
  size_t line_no = 0;
  while (std::getline(bpe, line)) {
    ++line_no;
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t space = line.find(' ');
    auto bad = [&](const std::string& what) {
      return std::runtime_error("tokenizer: malformed GPT-2 merges file '" + vocab_bpe_path + "' line " +
                                std::to_string(line_no) + ": " + what);
    };
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
      throw bad("expected two tokens separated by one space");
    if (!unspell(line.substr(0, space), inverse, a) || !unspell(line.substr(space + 1), inverse, b))
      throw bad("not spelled in GPT-2's byte alphabet");
    auto ia = id_of.find(a), ib = id_of.find(b);
    if (ia == id_of.end() || ib == id_of.end() || !id_of.count(a + b))
      throw bad("merge of tokens that are not in " + encoder_json_path);
    v->merges.push_back({ia->second, ib->second});
  }
  // Every token except the 256 bytes and <|endoftext|> comes from one merge; fewer
  // merges means a truncated file.
  if (v->merges.size() != v->tokens.size() - 257)
    throw std::runtime_error("tokenizer: GPT-2 merges file '" + vocab_bpe_path + "' has " +
                             std::to_string(v->merges.size()) + " merges but '" + encoder_json_path +
                             "' needs " + std::to_string(v->tokens.size() - 257) + " (truncated?)");
  try {
    v->build_tables();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + " (in " + encoder_json_path + ")");
  }
  return Tokenizer(std::move(v));
}

}  // namespace gpt::data
