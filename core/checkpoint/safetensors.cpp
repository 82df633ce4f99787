#include "core/checkpoint/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>

#include "core/checkpoint/json_lite.h"
#include "core/error.h"

namespace gpt {

// The format is little-endian; on this host floats are copied as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace {

// The reference implementation refuses headers above 100 MB; so do we, before
// allocating for a corrupted length.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_json(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

float bf16_to_float(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// IEEE half -> float, exact for every value (subnormals, infinities, NaN payloads).
float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: shift the mantissa up until its leading 1 becomes implicit
    exp = 113;
    while (!(mant & 0x400)) mant <<= 1, --exp;
    bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Bytes per element of the dtypes we convert; 0 for known dtypes we do not (so the
// error can say "unsupported" rather than "unknown").
int dtype_bytes(const std::string& dtype, bool& known) {
  known = true;
  if (dtype == "F32") return 4;
  if (dtype == "BF16" || dtype == "F16") return 2;
  static const char* other[] = {"F64", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16",
                                "I8",  "U64",     "U32",     "U16", "U8",  "BOOL"};
  known = std::find_if(std::begin(other), std::end(other),
                       [&](const char* d) { return dtype == d; }) != std::end(other);
  return 0;
}

struct Entry {
  std::string name;
  std::string dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& path, const std::string& name, const json::Value& v) {
  const std::string at = path + ": tensor '" + name + "': ";
  GPT_CHECK(v.is_object(), at + "header entry is " + json::kind_name(v.kind) + ", not an object");
  for (const auto& m : v.members)
    GPT_CHECK(m.first == "dtype" || m.first == "shape" || m.first == "data_offsets",
              at + "unexpected key " + json::quote(m.first));
  const json::Value* dtype = v.find("dtype");
  const json::Value* shape = v.find("shape");
  const json::Value* offs = v.find("data_offsets");
  GPT_CHECK(dtype && dtype->is_string(), at + "missing string \"dtype\"");
  GPT_CHECK(shape && shape->is_array(), at + "missing array \"shape\"");
  GPT_CHECK(offs && offs->is_array() && offs->items.size() == 2,
            at + "\"data_offsets\" must be [begin, end]");
  Entry e;
  e.name = name;
  e.dtype = dtype->text;
  // Bounded so numel * 4 cannot overflow before it is compared with the byte range.
  constexpr int64_t kMaxNumel = int64_t(1) << 50;
  int64_t numel = 1;
  for (const json::Value& d : shape->items) {
    int64_t n = 0;
    GPT_CHECK(d.as_int64(n) && n >= 0, at + "shape entries must be non-negative integers");
    GPT_CHECK(n == 0 || numel <= kMaxNumel / n, at + "shape has more than 2^50 elements");
    numel *= n;
    e.shape.push_back(n);
  }
  int64_t b = 0, en = 0;
  GPT_CHECK(offs->items[0].as_int64(b) && offs->items[1].as_int64(en) && b >= 0 && en >= b,
            at + "\"data_offsets\" must be integers with 0 <= begin <= end");
  e.begin = uint64_t(b);
  e.end = uint64_t(en);
  return e;
}

}  // namespace

void safetensors_write(const std::string& path, const TensorMap& tensors) {
  // Header: metadata first, then tensors in the map's (name) order, offsets packed.
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    GPT_CHECK(name != "__metadata__", path + ": '__metadata__' is reserved, not a tensor name");
    GPT_CHECK(int64_t(t.data.size()) == numel_of(t.shape),
              path + ": tensor '" + name + "' has " + std::to_string(t.data.size()) +
                  " values for shape " + shape_str(t.shape));
    const uint64_t bytes = uint64_t(t.data.size()) * 4;
    header += "," + json::quote(name) + ":{\"dtype\":\"F32\",\"shape\":" + shape_json(t.shape) +
              ",\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  // Padding keeps the tensor bytes 8-byte aligned when the file is memory-mapped.
  header.append((8 - header.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  GPT_CHECK(out, path + ": cannot open for writing");
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(header.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), std::streamsize(header.size()));
  for (const auto& kv : tensors)
    out.write(reinterpret_cast<const char*>(kv.second.data.data()),
              std::streamsize(kv.second.data.size() * 4));
  out.flush();
  GPT_CHECK(out, path + ": write failed (disk full?)");
}

TensorMap safetensors_read(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  GPT_CHECK(in, path + ": cannot open (no such file?)");
  const uint64_t file_bytes = uint64_t(in.tellg());
  in.seekg(0);
  GPT_CHECK(file_bytes >= 8, path + ": " + std::to_string(file_bytes) +
                                 " bytes is too short for a safetensors file");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(len[i]) << (8 * i);
  GPT_CHECK(n <= file_bytes - 8, path + ": header length " + std::to_string(n) +
                                     " runs past the end of the file (" +
                                     std::to_string(file_bytes) + " bytes): not safetensors, or truncated");
  GPT_CHECK(n <= kMaxHeaderBytes, path + ": header length " + std::to_string(n) + " exceeds 100 MB");
  std::string header(n, '\0');
  in.read(header.data(), std::streamsize(n));
  GPT_CHECK(in, path + ": cannot read the header");
  GPT_CHECK(!header.empty() && header[0] == '{', path + ": header does not start with '{': not safetensors");
  const json::Value root = json::parse(header, path + ": safetensors header");
  GPT_CHECK(root.is_object(), path + ": header is not a JSON object");

  std::vector<Entry> entries;
  for (const auto& [name, v] : root.members) {
    if (name == "__metadata__") {
      GPT_CHECK(v.is_object(), path + ": \"__metadata__\" must be an object");
      for (const auto& m : v.members)
        GPT_CHECK(m.second.is_string(), path + ": \"__metadata__\" value of " +
                                            json::quote(m.first) + " must be a string");
      continue;
    }
    entries.push_back(parse_entry(path, name, v));
  }

  // Every byte of the data buffer belongs to exactly one tensor, in offset order.
  const uint64_t data_bytes = file_bytes - 8 - n;
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t expected = 0;
  for (const Entry& e : entries) {
    const std::string at = path + ": tensor '" + e.name + "': ";
    bool known = false;
    const int bytes = dtype_bytes(e.dtype, known);
    GPT_CHECK(known, at + "unknown dtype " + json::quote(e.dtype));
    GPT_CHECK(bytes > 0, at + "dtype " + e.dtype + " is not supported (F32, BF16 or F16)");
    GPT_CHECK(e.end <= data_bytes, at + "data_offsets [" + std::to_string(e.begin) + ", " +
                                       std::to_string(e.end) + "] run past the " +
                                       std::to_string(data_bytes) + " data bytes (truncated file?)");
    GPT_CHECK(e.begin >= expected, at + "data_offsets overlap another tensor's");
    GPT_CHECK(e.begin == expected, at + "data_offsets leave a gap before it");
    GPT_CHECK(e.end - e.begin == uint64_t(numel_of(e.shape)) * uint64_t(bytes),
              at + "shape " + shape_str(e.shape) + " of " + e.dtype + " needs " +
                  std::to_string(uint64_t(numel_of(e.shape)) * uint64_t(bytes)) + " bytes, data_offsets give " +
                  std::to_string(e.end - e.begin));
    expected = e.end;
  }
  GPT_CHECK(expected == data_bytes, path + ": " + std::to_string(data_bytes - expected) +
                                        " bytes after the last tensor (corrupt header?)");

  TensorMap out;
  std::vector<uint16_t> half;
  for (const Entry& e : entries) {
    HostTensor t;
    t.shape = e.shape;
    t.data.resize(size_t(numel_of(e.shape)));
    in.seekg(std::streamoff(8 + n + e.begin));
    if (e.dtype == "F32") {
      in.read(reinterpret_cast<char*>(t.data.data()), std::streamsize(e.end - e.begin));
    } else {
      half.resize(t.data.size());
      in.read(reinterpret_cast<char*>(half.data()), std::streamsize(e.end - e.begin));
      const bool bf16 = e.dtype == "BF16";
      for (size_t i = 0; i < half.size(); ++i)
        t.data[i] = bf16 ? bf16_to_float(half[i]) : f16_to_float(half[i]);
    }
    GPT_CHECK(in, path + ": tensor '" + e.name + "': read failed");
    out.emplace(e.name, std::move(t));
  }
  return out;
}

}  // namespace gpt
