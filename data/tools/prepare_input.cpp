#include "data/tools/prepare_input.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace gpt::data::prepare {
namespace fs = std::filesystem;

std::vector<std::string> list_input_files(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      for (auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path().string());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    } else {
      throw std::runtime_error("prepare: input " + p + " does not exist");
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::vector<std::string>> make_partitions(const std::vector<std::string>& files,
                                                      int64_t target_bytes) {
  std::vector<std::vector<std::string>> parts;
  int64_t bytes = target_bytes;  // forces a new partition for the first file
  for (const auto& f : files) {
    if (bytes >= target_bytes) parts.emplace_back(), bytes = 0;
    parts.back().push_back(f);
    bytes += int64_t(fs::file_size(f));
  }
  return parts;
}

namespace {

struct JsonCursor {
  const std::string& s;
  size_t i = 0;
  void ws() { while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i; }
  [[noreturn]] void bad(const char* what) const {
    throw std::runtime_error(std::string(what) + " at column " + std::to_string(i + 1));
  }
  void expect(char c) {
    ws();
    if (i >= s.size() || s[i] != c) bad((std::string("expected '") + c + "'").c_str());
    ++i;
  }
  static void put_utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) out += char(cp);
    else if (cp < 0x800) out += char(0xC0 | (cp >> 6)), out += char(0x80 | (cp & 0x3F));
    else if (cp < 0x10000)
      out += char(0xE0 | (cp >> 12)), out += char(0x80 | ((cp >> 6) & 0x3F)), out += char(0x80 | (cp & 0x3F));
    else
      out += char(0xF0 | (cp >> 18)), out += char(0x80 | ((cp >> 12) & 0x3F)),
          out += char(0x80 | ((cp >> 6) & 0x3F)), out += char(0x80 | (cp & 0x3F));
  }
  uint32_t hex4() {
    if (i + 4 > s.size()) bad("short \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s[i++];
      v = v * 16 + uint32_t(c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : (bad("bad \\u escape"), 0));
    }
    return v;
  }
  void string(std::string* out) {  // out == nullptr: skip
    expect('"');
    while (true) {
      if (i >= s.size()) bad("unterminated string");
      char c = s[i++];
      if (c == '"') return;
      if (c != '\\') {
        if (out) *out += c;
        continue;
      }
      if (i >= s.size()) bad("unterminated escape");
      char e = s[i++];
      uint32_t cp = 0;
      switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
          cp = hex4();
          // A high surrogate followed by a low one is one code point; a lone surrogate
          // becomes U+FFFD, as Python's json does with errors="replace".
          if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= s.size() && s[i] == '\\' && s[i + 1] == 'u') {
            size_t save = i;
            i += 2;
            uint32_t lo = hex4();
            if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else i = save, cp = 0xFFFD;
          } else if (cp >= 0xD800 && cp < 0xE000) {
            cp = 0xFFFD;
          }
          break;
        default: bad("bad escape");
      }
      if (out) put_utf8(cp, *out);
    }
  }
  void value() {  // skips any JSON value
    ws();
    if (i >= s.size()) bad("expected a value");
    char c = s[i];
    if (c == '"') return string(nullptr);
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++i;
      ws();
      if (i < s.size() && s[i] == close) return void(++i);
      while (true) {
        if (close == '}') string(nullptr), expect(':');
        value();
        ws();
        if (i < s.size() && s[i] == ',') { ++i; continue; }
        expect(close);
        return;
      }
    }
    size_t start = i;
    while (i < s.size() && std::string(",]} \t\r\n").find(s[i]) == std::string::npos) ++i;
    if (i == start) bad("expected a value");
  }
};

}  // namespace

bool json_string_field(const std::string& line, const std::string& key, std::string& out) {
  JsonCursor c{line};
  c.expect('{');
  c.ws();
  bool found = false;
  if (c.i < line.size() && line[c.i] == '}') return false;
  while (true) {
    std::string k;
    c.string(&k);
    c.expect(':');
    c.ws();
    if (k == key && c.i < line.size() && line[c.i] == '"') {
      out.clear();
      c.string(&out);
      found = true;
    } else {
      c.value();
    }
    c.ws();
    if (c.i < line.size() && line[c.i] == ',') { ++c.i; continue; }
    c.expect('}');
    return found;
  }
}

void read_documents(const std::string& file, bool force_jsonl,
                    const std::function<void(std::string&&)>& on_doc) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("prepare: cannot open " + file);
  std::string ext = fs::path(file).extension().string();
  if (!force_jsonl && ext != ".jsonl" && ext != ".json") {
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    if (!text.empty()) on_doc(std::move(text));
    return;
  }
  std::string line, text;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      if (!json_string_field(line, "text", text))
        throw std::runtime_error("no string field \"text\"");
    } catch (const std::runtime_error& e) {
      throw std::runtime_error("prepare: " + file + ":" + std::to_string(line_no) + ": " + e.what());
    }
    if (!text.empty()) on_doc(std::move(text));
  }
}

}  // namespace gpt::data::prepare
