#include "data/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "data/tokenizer_bpe.h"
#include "data/tokenizer_pretokenize.h"

namespace gpt::data {
namespace {

// Bumped when the file layout changes; load() refuses other versions.
constexpr const char* kMagic = "gptrain-bpe-vocab";
constexpr int kFormatVersion = 1;

const Vocab& need(const std::shared_ptr<const Vocab>& v) {
  if (!v) throw std::runtime_error("tokenizer: no vocabulary loaded (use Tokenizer::load*)");
  return *v;
}

EncodeState& thread_state(const Vocab& v) {
  // One cache per thread, tied to the vocabulary it was filled from.
  thread_local EncodeState state;
  if (state.serial() != v.serial) state.reset(v.serial);
  return state;
}

void encode_with(const Vocab& v, EncodeState& state, std::string_view text,
                 std::vector<int32_t>& out) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  pretokenize(s, text.size(), [&](size_t b, size_t e) { state.encode_piece(v, s + b, e - b, out); });
}

struct Fnv64 {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  void add_int(int64_t x) { add_str(std::to_string(x) + ";"); }
  void add_str(const std::string& s) { add(s.data(), s.size()); }
};

std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

Tokenizer::Tokenizer() = default;
const Vocab& vocab_of(const Tokenizer& tok) { return need(tok.vocab_); }
Tokenizer::Tokenizer(std::shared_ptr<const Vocab> vocab) : vocab_(std::move(vocab)) {}

void Tokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  const Vocab& v = need(vocab_);
  encode_with(v, thread_state(v), text, out);
}

void Tokenizer::encode_batch(const std::vector<std::string_view>& docs,
                             std::vector<std::vector<int32_t>>& out, int threads) const {
  const Vocab& v = need(vocab_);
  out.resize(docs.size());
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<size_t>(threads, std::max<size_t>(1, docs.size())));
  std::atomic<size_t> next{0};
  auto work = [&] {
    EncodeState& state = thread_state(v);
    for (size_t i; (i = next.fetch_add(1)) < docs.size();) {
      out[i].clear();
      encode_with(v, state, docs[i], out[i]);
    }
  };
  if (threads == 1) {
    work();
    return;
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
}

std::string Tokenizer::decode(const int32_t* ids, size_t n) const {
  const Vocab& v = need(vocab_);
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= int32_t(v.tokens.size()))
      throw std::runtime_error("tokenizer: token id " + std::to_string(ids[i]) + " at position " +
                               std::to_string(i) + " is outside the vocabulary [0, " +
                               std::to_string(v.tokens.size()) + ")");
    out += v.tokens[ids[i]];
  }
  return out;
}

int Tokenizer::vocab_size() const { return vocab_ ? int(vocab_->tokens.size()) : 0; }
int32_t Tokenizer::eot_token() const { return need(vocab_).eot; }

const std::string& Tokenizer::token_bytes(int32_t id) const {
  const Vocab& v = need(vocab_);
  if (id < 0 || id >= int32_t(v.tokens.size()))
    throw std::runtime_error("tokenizer: token id " + std::to_string(id) + " is outside the vocabulary");
  return v.tokens[id];
}

std::string Tokenizer::identity() const {
  const Vocab& v = need(vocab_);
  Fnv64 h;
  h.add_int(int64_t(v.tokens.size()));
  for (const auto& t : v.tokens) {
    h.add_int(int64_t(t.size()));
    h.add_str(t);
  }
  h.add_int(v.eot);
  h.add_int(int64_t(v.merges.size()));
  for (const auto& [a, b] : v.merges) {
    h.add_int(a);
    h.add_int(b);
  }
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h.h));
  return v.name + ":" + hex;
}

void Tokenizer::save(const std::string& path) const {
  const Vocab& v = need(vocab_);
  // Written to a temporary name and renamed, so a crash never leaves half a file.
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw std::runtime_error("tokenizer: cannot write " + tmp);
    f << kMagic << ' ' << kFormatVersion << '\n'
      << "name " << v.name << '\n'
      << "vocab_size " << v.tokens.size() << '\n'
      << "eot " << v.eot << '\n'
      << "merges " << v.merges.size() << '\n';
    for (const auto& t : v.tokens) f << to_hex(t) << '\n';  // hex: tokens are raw bytes
    for (const auto& [a, b] : v.merges) f << a << ' ' << b << '\n';
    if (!f.flush()) throw std::runtime_error("tokenizer: failed writing " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("tokenizer: cannot rename " + tmp + " to " + path);
}

Tokenizer Tokenizer::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("tokenizer: cannot open vocabulary file " + path);
  size_t line_no = 0;
  std::string line;
  auto fail = [&](const std::string& what) -> std::runtime_error {
    return std::runtime_error("tokenizer: " + path + ":" + std::to_string(line_no) + ": " + what +
                              " (write it with Tokenizer::save or data/tools/tokenize)");
  };
  auto next_line = [&]() -> std::string& {
    if (!std::getline(f, line)) throw fail("unexpected end of file");
    ++line_no;
    return line;
  };
  auto header = [&](const std::string& key) {
    std::istringstream in(next_line());
    std::string k;
    long long value = -1;
    if (!(in >> k >> value) || k != key || value < 0) throw fail("expected '" + key + " <n>'");
    return value;
  };
  auto v = std::make_shared<Vocab>();
  {
    std::istringstream in(next_line());
    std::string magic;
    int version = 0;
    if (!(in >> magic >> version) || magic != kMagic) throw fail("not a tokenizer vocabulary");
    if (version != kFormatVersion)
      throw fail("format version " + std::to_string(version) + ", this build reads " +
                 std::to_string(kFormatVersion));
  }
  if (next_line().rfind("name ", 0) != 0) throw fail("expected 'name <name>'");
  v->name = line.substr(5);
  const long long n = header("vocab_size");
  const long long eot = header("eot");
  const long long m = header("merges");
  if (n > std::numeric_limits<int32_t>::max()) throw fail("vocab_size does not fit 32-bit token ids");
  if (eot >= n) throw fail("eot id outside the vocabulary");
  v->eot = int32_t(eot);
  // Grown line by line rather than sized from the header, so a damaged count ends in
  // "unexpected end of file" instead of an allocation as large as it claims.
  for (long long k = 0; k < n; ++k) {
    const std::string& hex = next_line();
    if (hex.empty() || hex.size() % 2) throw fail("bad token hex");
    std::string t;
    for (size_t i = 0; i < hex.size(); i += 2) {
      int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
      if (hi < 0 || lo < 0) throw fail("bad token hex");
      t += char(hi * 16 + lo);
    }
    v->tokens.push_back(std::move(t));
  }
  for (long long k = 0; k < m; ++k) {
    std::istringstream in(next_line());
    int32_t a, b;
    if (!(in >> a >> b) || a < 0 || b < 0 || a >= n || b >= n) throw fail("bad merge line");
    v->merges.push_back({a, b});
  }
  try {
    v->build_tables();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + " (in " + path + ")");
  }
  return Tokenizer(std::move(v));
}

}  // namespace gpt::data
