// safetensors: exact round trips, deterministic bytes, 16-bit dtypes widened exactly,
// and one error line naming the file (and tensor) for each malformed file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/checkpoint/safetensors.h"
#include "tests/support/error_of.h"

namespace gpt {
namespace {

namespace fs = std::filesystem;

class Safetensors : public ::testing::Test {
 protected:
  fs::path dir_;
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("safetensors_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A file from a header and data bytes; `length` overrides the header length field.
  std::string raw(const std::string& header, const std::string& data, int64_t length = -1) {
    const std::string p = path("raw.safetensors");
    std::ofstream out(p, std::ios::binary);
    const uint64_t n = length < 0 ? header.size() : uint64_t(length);
    for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xFF));
    out << header << data;
    return p;
  }
};

std::string bytes_of(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TensorMap sample() {
  TensorMap m;
  m["b.matrix"] = {{2, 3}, {1.f, -2.f, 3.5f, 1e-30f, -0.f, 65504.f}};
  m["a.vector"] = {{5}, {0.1f, 0.2f, 0.3f, INFINITY, 7.f}};
  m["scalar"] = {{}, {42.f}};
  m["empty"] = {{0, 4}, {}};
  m["odd \"name\"\\"] = {{1, 1, 1}, {-1.f}};
  return m;
}

TEST_F(Safetensors, RoundTripIsExactAndDeterministic) {
  const TensorMap m = sample();
  safetensors_write(path("a.safetensors"), m);
  safetensors_write(path("b.safetensors"), m);
  const std::string bytes = bytes_of(path("a.safetensors"));
  EXPECT_EQ(bytes, bytes_of(path("b.safetensors")));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "header is padded to 8 bytes";
  EXPECT_EQ(bytes.substr(8, 31), "{\"__metadata__\":{\"format\":\"pt\"}");

  const TensorMap back = safetensors_read(path("a.safetensors"));
  ASSERT_EQ(back.size(), m.size());
  for (const auto& [name, t] : m) {
    ASSERT_TRUE(back.count(name)) << name;
    EXPECT_EQ(back.at(name).shape, t.shape) << name;
    ASSERT_EQ(back.at(name).data.size(), t.data.size()) << name;
    // memcmp needs valid pointers even for 0 bytes; an empty vector's data() may be null.
    if (!t.data.empty()) {
      EXPECT_EQ(std::memcmp(back.at(name).data.data(), t.data.data(), t.data.size() * 4), 0) << name;
    }
  }
}

TEST_F(Safetensors, WidensBf16AndF16Exactly) {
  // F16: 1, -2, 2^-24 (smallest subnormal), 65504, inf; BF16: 1, -0.5
  const uint16_t f16[] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00};
  const uint16_t bf16[] = {0x3F80, 0xBF00};
  std::string data(reinterpret_cast<const char*>(f16), sizeof f16);
  data += std::string(reinterpret_cast<const char*>(bf16), sizeof bf16);
  const TensorMap m = safetensors_read(
      raw("{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
          "\"b\":{\"shape\":[2],\"dtype\":\"BF16\",\"data_offsets\":[10,14]}}   ",
          data));
  EXPECT_EQ(m.at("h").data, (std::vector<float>{1.f, -2.f, std::ldexp(1.f, -24), 65504.f, INFINITY}));
  EXPECT_EQ(m.at("b").data, (std::vector<float>{1.f, -0.5f}));
}

TEST_F(Safetensors, EachMalformedFileGivesOneLineNamingTheFile) {
  const std::string four(4, '\0'), eight(8, '\0');
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  int b, int e) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
           ",\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(e) + "]}";
  };
  struct Case {
    const char* what;
    std::string header, data;
    int64_t length;
    std::string expect;  // a fragment of the message
  };
  const Case cases[] = {
      {"length past the end", "{}", "", 1000, "runs past the end of the file"},
      {"bad JSON", "{\"t\":{\"dtype\":\"F32\",}", four, -1, "bad JSON at byte"},
      {"not an object", "[1]     ", "", -1, "does not start with '{'"},
      {"unknown dtype", "{" + entry("t", "F33", "[1]", 0, 4) + "}", four, -1, "tensor 't': unknown dtype \"F33\""},
      {"unsupported dtype", "{" + entry("t", "I64", "[1]", 0, 8) + "}", eight, -1, "tensor 't': dtype I64 is not supported"},
      {"out of range", "{" + entry("t", "F32", "[3]", 0, 12) + "}", eight, -1, "tensor 't': data_offsets [0, 12] run past"},
      {"size mismatch", "{" + entry("t", "F32", "[3]", 0, 8) + "}", eight, -1, "tensor 't': shape [3] of F32 needs 12 bytes"},
      {"overlap", "{" + entry("t", "F32", "[2]", 0, 8) + "," + entry("u", "F32", "[1]", 4, 8) + "}", eight, -1, "tensor 'u': data_offsets overlap"},
      {"gap", "{" + entry("t", "F32", "[1]", 4, 8) + "}", eight, -1, "tensor 't': data_offsets leave a gap"},
      {"trailing bytes", "{" + entry("t", "F32", "[1]", 0, 4) + "}", eight, -1, "4 bytes after the last tensor"},
      {"duplicate name", "{" + entry("t", "F32", "[1]", 0, 4) + "," + entry("t", "F32", "[1]", 4, 8) + "}", eight, -1, "duplicate key \"t\""},
      {"negative shape", "{" + entry("t", "F32", "[-1]", 0, 4) + "}", four, -1, "tensor 't': shape entries must be"},
      {"huge shape", "{" + entry("t", "F32", "[4294967296,4294967296,4294967296]", 0, 4) + "}", four, -1, "tensor 't': shape has more than 2^50 elements"},
      {"reversed offsets", "{" + entry("t", "F32", "[1]", 4, 0) + "}", four, -1, "tensor 't': \"data_offsets\" must be"},
      {"extra key", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", four, -1, "tensor 't': unexpected key \"x\""},
      {"bad metadata", "{\"__metadata__\":{\"format\":1}}", "", -1, "\"__metadata__\" value of \"format\" must be a string"},
  };
  for (const Case& c : cases) {
    const std::string p = raw(c.header, c.data, c.length);
    const std::string e = error_of([&] { safetensors_read(p); });
    EXPECT_EQ(e.rfind(p + ":", 0), 0u) << c.what << ": " << e;
    EXPECT_NE(e.find(c.expect), std::string::npos) << c.what << ": " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << c.what << ": " << e;
  }
  const std::string tiny = path("tiny.safetensors");
  std::ofstream(tiny) << "abc";
  EXPECT_NE(error_of([&] { safetensors_read(tiny); }).find(tiny + ": 3 bytes is too short"), std::string::npos);
  EXPECT_NE(error_of([&] { safetensors_read(path("none")); }).find("cannot open"), std::string::npos);
}

TEST_F(Safetensors, WriterRejectsDataThatDisagreesWithShape) {
  TensorMap m;
  m["t"] = {{2, 2}, {1.f, 2.f, 3.f}};
  const std::string e = error_of([&] { safetensors_write(path("w.safetensors"), m); });
  EXPECT_NE(e.find("tensor 't' has 3 values for shape [2, 2]"), std::string::npos) << e;
}

}  // namespace
}  // namespace gpt
