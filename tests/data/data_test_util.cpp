#include "tests/data/data_test_util.h"

#include <hdf5.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace gpt::data::testing {

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/gpt_data_test_XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

ShardMeta test_meta(const std::string& source, int64_t vocab, const std::string& tokenizer) {
  ShardMeta m;
  m.tokenizer = tokenizer;
  m.vocab_size = vocab;
  m.eot_token = vocab - 1;  // like GPT-2: the last id
  m.source = source;
  return m;
}

int64_t write_synthetic_shard(const std::string& path, const ShardMeta& meta, int64_t tokens,
                              uint64_t seed, int max_doc) {
  ShardWriter w(path, meta);
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  auto rnd = [&] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return x;
  };
  std::vector<int32_t> doc;
  while (w.token_count() < tokens) {
    doc.resize(1 + rnd() % uint64_t(max_doc));
    for (auto& t : doc) t = int32_t(rnd() % uint64_t(meta.vocab_size - 1));  // never EOS
    w.add_document(doc.data(), doc.size());
  }
  w.close();
  return w.token_count();
}

void write_config(const std::string& path, const std::vector<ConfigSource>& sources) {
  std::ofstream out(path);
  out << "# written by the data tests\n[mixture]\nshuffle_shards = 2\n";
  for (auto& s : sources) {
    out << "\n[source." << s.name << "]\nglob = " << s.glob << "\n";
    if (!s.valid_glob.empty()) out << "valid_glob = " << s.valid_glob << "\n";
    if (!s.weight.empty()) out << "weight = " << s.weight << "\n";
  }
}

void set_shard_attr(const std::string& path, const char* name, int64_t value) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &value);
  H5Aclose(a);
  H5Fclose(f);
}

void replace_shard_attr(const std::string& path, const char* name, int64_t type, uint64_t count,
                        const void* values) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Adelete(f, name);
  const hsize_t n = count;
  hid_t s = H5Screate_simple(1, &n, nullptr);
  hid_t a = H5Acreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, type, values);
  H5Aclose(a);
  H5Sclose(s);
  H5Fclose(f);
}

namespace {
void set_element(const std::string& path, const char* dataset, int64_t offset, hid_t type,
                 const void* value) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
  hid_t fs = H5Dget_space(d);
  hsize_t start = hsize_t(offset), one = 1;
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, nullptr, &one, nullptr);
  hid_t ms = H5Screate_simple(1, &one, nullptr);
  H5Dwrite(d, type, ms, fs, H5P_DEFAULT, value);
  H5Sclose(ms), H5Sclose(fs), H5Dclose(d), H5Fclose(f);
}
}  // namespace

void set_shard_token(const std::string& path, int64_t offset, uint32_t value) {
  set_element(path, "tokens", offset, H5T_NATIVE_UINT32, &value);
}

void set_shard_offset(const std::string& path, int64_t doc, int64_t value) {
  set_element(path, "doc_offsets", doc, H5T_NATIVE_INT64, &value);
}

}  // namespace gpt::data::testing
