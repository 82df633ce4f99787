#include "core/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <regex>

#include "core/error.h"

namespace gpt {

namespace fs = std::filesystem;

namespace {
// Silence HDF5's own stack dumps: every failure becomes one gpt::Error naming the file.
struct QuietHdf5 {
  QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
const QuietHdf5 quiet_hdf5;

void h5check(herr_t status, const std::string& what, const std::string& path) {
  if (status < 0) fail("checkpoint " + path + ": " + what + " failed");
}

void sync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Names like "blocks.0.attn.qkv.weight" stay flat: '/' would create HDF5 groups.
std::string dataset_name(const std::string& name) {
  std::string s = name;
  for (char& c : s)
    if (c == '/') c = '|';
  return s;
}
}  // namespace

CheckpointWriter::CheckpointWriter(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  fs::path parent = fs::path(path_).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  file_ = H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file_ < 0) fail("checkpoint " + tmp_ + ": cannot create file (directory writable?)");
  attr("format_version", int64_t(kCheckpointFormatVersion));
  attr("magic", std::string("gptrain-checkpoint"));
}

CheckpointWriter::~CheckpointWriter() {
  if (file_ >= 0) {
    H5Fclose(hid_t(file_));
    std::remove(tmp_.c_str());
  }
}

void CheckpointWriter::write(const std::string& name, const Shape& shape, const float* host) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  hid_t ds = H5Dcreate2(hid_t(file_), dataset_name(name).c_str(), H5T_IEEE_F32LE, space,
                        H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (ds < 0) fail("checkpoint " + tmp_ + ": cannot create dataset '" + name + "'");
  h5check(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host),
          "writing '" + name + "'", tmp_);
  H5Dclose(ds);
  H5Sclose(space);
}

void CheckpointWriter::write(const std::string& name, const Tensor& t) {
  std::vector<float> host = to_host_f32(t);
  write(name, t.shape, host.data());
}

void CheckpointWriter::attr(const std::string& name, int64_t value) {
  attr(name, std::vector<int64_t>{value});
}

void CheckpointWriter::attr(const std::string& name, const std::vector<int64_t>& values) {
  hsize_t n = values.size();
  hid_t space = n ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_NULL);
  hid_t a = H5Acreate2(hid_t(file_), name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) fail("checkpoint " + tmp_ + ": cannot create attribute '" + name + "'");
  if (n) h5check(H5Awrite(a, H5T_NATIVE_INT64, values.data()), "writing '" + name + "'", tmp_);
  H5Aclose(a);
  H5Sclose(space);
}

void CheckpointWriter::attr(const std::string& name, const std::string& value) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, value.size() + 1);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(hid_t(file_), name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) fail("checkpoint " + tmp_ + ": cannot create attribute '" + name + "'");
  h5check(H5Awrite(a, type, value.c_str()), "writing '" + name + "'", tmp_);
  H5Aclose(a);
  H5Sclose(space);
  H5Tclose(type);
}

void CheckpointWriter::commit() {
  h5check(H5Fflush(hid_t(file_), H5F_SCOPE_GLOBAL), "flush", tmp_);
  h5check(H5Fclose(hid_t(file_)), "close", tmp_);
  file_ = -1;
  // Data on disk before the name: after a power loss "latest" is complete or absent.
  sync_path(tmp_);
  std::error_code ec;
  fs::rename(tmp_, path_, ec);  // atomic on POSIX within one file system
  if (ec) fail("checkpoint " + path_ + ": rename from .tmp failed: " + ec.message());
  fs::path dir = fs::path(path_).parent_path();
  sync_path(dir.empty() ? "." : dir.string());
}

CheckpointReader::CheckpointReader(std::string path) : path_(std::move(path)) {
  if (!fs::exists(path_)) fail("checkpoint " + path_ + ": no such file");
  file_ = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file_ < 0) fail("checkpoint " + path_ + ": not a readable HDF5 file (truncated or corrupt?)");
  if (H5Aexists(hid_t(file_), "format_version") <= 0 || attr_str("magic") != "gptrain-checkpoint")
    fail("checkpoint " + path_ + ": not a gptrain checkpoint (no format_version/magic)");
  int64_t v = attr_int("format_version");
  if (v != kCheckpointFormatVersion)
    fail("checkpoint " + path_ + ": format version " + std::to_string(v) + ", this build reads " +
         std::to_string(kCheckpointFormatVersion) + "; resume with the build that wrote it");
}

CheckpointReader::~CheckpointReader() {
  if (file_ >= 0) H5Fclose(hid_t(file_));
}

bool CheckpointReader::has(const std::string& name) const {
  return H5Lexists(hid_t(file_), dataset_name(name).c_str(), H5P_DEFAULT) > 0;
}

Shape CheckpointReader::shape(const std::string& name) const {
  hid_t ds = H5Dopen2(hid_t(file_), dataset_name(name).c_str(), H5P_DEFAULT);
  if (ds < 0) fail("checkpoint " + path_ + ": missing tensor '" + name + "'");
  hid_t space = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(size_t(nd > 0 ? nd : 0));
  if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  H5Sclose(space);
  H5Dclose(ds);
  return Shape(dims.begin(), dims.end());
}

void CheckpointReader::read(const std::string& name, const Shape& expect, float* host) const {
  Shape got = shape(name);
  if (got != expect)
    fail("checkpoint " + path_ + ": tensor '" + name + "' has shape " + shape_str(got) +
         ", the model expects " + shape_str(expect) + " (different model config?)");
  hid_t ds = H5Dopen2(hid_t(file_), dataset_name(name).c_str(), H5P_DEFAULT);
  h5check(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host),
          "reading '" + name + "'", path_);
  H5Dclose(ds);
}

void CheckpointReader::read(const std::string& name, Tensor& t) const {
  std::vector<float> host(size_t(t.numel()));
  read(name, t.shape, host.data());
  from_host_f32(t, host.data());
}

std::vector<int64_t> CheckpointReader::attr_ints(const std::string& name) const {
  hid_t a = H5Aopen(hid_t(file_), name.c_str(), H5P_DEFAULT);
  if (a < 0) fail("checkpoint " + path_ + ": missing attribute '" + name + "'");
  hid_t space = H5Aget_space(a);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  std::vector<int64_t> v(size_t(n > 0 ? n : 0));
  if (!v.empty()) h5check(H5Aread(a, H5T_NATIVE_INT64, v.data()), "reading '" + name + "'", path_);
  H5Sclose(space);
  H5Aclose(a);
  return v;
}

int64_t CheckpointReader::attr_int(const std::string& name) const {
  auto v = attr_ints(name);
  if (v.size() != 1) fail("checkpoint " + path_ + ": attribute '" + name + "' is not a scalar");
  return v[0];
}

std::string CheckpointReader::attr_str(const std::string& name) const {
  hid_t a = H5Aopen(hid_t(file_), name.c_str(), H5P_DEFAULT);
  if (a < 0) fail("checkpoint " + path_ + ": missing attribute '" + name + "'");
  hid_t type = H5Aget_type(a);
  // One byte more than stored: h5py writes fixed-length strings without a NUL, and
  // HDF5 needs room for the terminator it adds in memory.
  size_t n = H5Tget_size(type) + 1;
  std::string s(n, '\0');
  hid_t mem = H5Tcopy(H5T_C_S1);
  H5Tset_size(mem, n);
  h5check(H5Aread(a, mem, s.data()), "reading '" + name + "'", path_);
  H5Tclose(mem);
  H5Tclose(type);
  H5Aclose(a);
  s.resize(s.find('\0') == std::string::npos ? s.size() : s.find('\0'));
  return s;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "ckpt_%08lld.h5", static_cast<long long>(step));
  return (fs::path(dir) / buf).string();
}

std::string latest_checkpoint(const std::string& dir) {
  if (!fs::is_directory(dir)) return "";
  static const std::regex pattern(R"(ckpt_(\d{8})\.h5)");
  std::string best;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string f = e.path().filename().string();
    if (std::regex_match(f, pattern) && f > fs::path(best).filename().string()) best = e.path().string();
  }
  return best;
}

}  // namespace gpt
