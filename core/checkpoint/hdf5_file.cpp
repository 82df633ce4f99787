#include "core/checkpoint/hdf5_file.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace gpt {

namespace fs = std::filesystem;

namespace {
// Silence HDF5's own stack dumps: every failure becomes one gpt::Error naming the file.
struct QuietHdf5 {
  QuietHdf5() {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
};
const QuietHdf5 quiet_hdf5;

void h5check(herr_t status, const std::string& what, const std::string& path) {
  if (status < 0) fail("checkpoint " + path + ": " + what + " failed (disk full or file damaged?)");
}

// Names like "blocks.0.attn.qkv.weight" stay flat: '/' would create HDF5 groups.
std::string dataset_name(const std::string& name) {
  std::string s = name;
  for (char& c : s)
    if (c == '/') c = '|';
  return s;
}

// The file itself, or one of its datasets, as an HDF5 object to hang attributes on.
hid_t open_object(hid_t file, const std::string& dataset, const std::string& path) {
  if (dataset.empty()) return file;
  hid_t o = H5Oopen(file, dataset_name(dataset).c_str(), H5P_DEFAULT);
  if (o < 0) fail("checkpoint " + path + ": missing dataset '" + dataset + "'");
  return o;
}
void close_object(hid_t o, hid_t file) {
  if (o != file) H5Oclose(o);
}
}  // namespace

void hdf5_warm_up() {
  const std::string path = (fs::temp_directory_path() / ("gptrain-warm-up-" + std::to_string(::getpid()) + ".h5")).string();
  try {
    CheckpointWriter w(path);  // the same calls a save makes, on a throwaway file
    std::vector<float> x(256, 0.f);
    for (const char* name : {"a", "b", "c"}) {
      w.create_1d(name, 256);
      w.write_range(name, 0, x.data(), 256);
      w.attr("range", std::vector<int64_t>{0, 256}, name);
    }
  } catch (const Error&) {
    // only an optimisation of the measurement; a real save reports real problems
  }
  std::remove((path + ".tmp").c_str());
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("checkpoint " + path + ": cannot open to fsync: " + std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  if (::close(fd) != 0 || !ok)
    fail("checkpoint " + path + ": fsync failed: " + std::strerror(ok ? errno : err) +
         " (the data may not be on disk; check the file system)");
}

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

int64_t CheckpointWriter::open_target(const std::string& dataset) const {
  return open_object(hid_t(file_), dataset, tmp_);
}

void CheckpointWriter::write(const std::string& name, const Shape& shape, const float* host) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  hid_t ds = H5Dcreate2(hid_t(file_), dataset_name(name).c_str(), H5T_IEEE_F32LE, space,
                        H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(space);
  if (ds < 0) fail("checkpoint " + tmp_ + ": cannot create dataset '" + name + "'");
  const herr_t st = H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host);
  h5check(H5Dclose(ds), "closing '" + name + "'", tmp_);
  h5check(st, "writing '" + name + "'", tmp_);
}

void CheckpointWriter::write(const std::string& name, const Tensor& t) {
  std::vector<float> host = to_host_f32(t);
  write(name, t.shape, host.data());
}

void CheckpointWriter::create_1d(const std::string& name, int64_t n) {
  hsize_t dim = hsize_t(n);
  hid_t space = H5Screate_simple(1, &dim, nullptr);
  hid_t ds = H5Dcreate2(hid_t(file_), dataset_name(name).c_str(), H5T_IEEE_F32LE, space,
                        H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(space);
  if (ds < 0) fail("checkpoint " + tmp_ + ": cannot create dataset '" + name + "'");
  h5check(H5Dclose(ds), "closing '" + name + "'", tmp_);
}

void CheckpointWriter::write_range(const std::string& name, int64_t offset, const float* host,
                                   int64_t count) {
  if (count <= 0) return;
  hid_t ds = H5Dopen2(hid_t(file_), dataset_name(name).c_str(), H5P_DEFAULT);
  if (ds < 0) fail("checkpoint " + tmp_ + ": missing dataset '" + name + "'");
  hid_t file_space = H5Dget_space(ds);
  hsize_t start = hsize_t(offset), n = hsize_t(count);
  herr_t st = H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &n, nullptr);
  hid_t mem_space = H5Screate_simple(1, &n, nullptr);
  if (st >= 0) st = H5Dwrite(ds, H5T_NATIVE_FLOAT, mem_space, file_space, H5P_DEFAULT, host);
  H5Sclose(mem_space);
  H5Sclose(file_space);
  h5check(H5Dclose(ds), "closing '" + name + "'", tmp_);
  h5check(st, "writing '" + name + "'", tmp_);
}

void CheckpointWriter::attr(const std::string& name, int64_t value, const std::string& dataset) {
  attr(name, std::vector<int64_t>{value}, dataset);
}

void CheckpointWriter::attr(const std::string& name, const std::vector<int64_t>& values,
                            const std::string& dataset) {
  hsize_t n = values.size();
  hid_t obj = hid_t(open_target(dataset));
  hid_t space = n ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_NULL);
  hid_t a = H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(space);
  if (a < 0) {
    close_object(obj, hid_t(file_));
    fail("checkpoint " + tmp_ + ": cannot create attribute '" + name + "'");
  }
  herr_t st = n ? H5Awrite(a, H5T_NATIVE_INT64, values.data()) : 0;
  if (H5Aclose(a) < 0) st = -1;
  close_object(obj, hid_t(file_));
  h5check(st, "writing attribute '" + name + "'", tmp_);
}

void CheckpointWriter::attr(const std::string& name, const std::string& value,
                            const std::string& dataset) {
  hid_t obj = hid_t(open_target(dataset));
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, value.size() + 1);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(space);
  herr_t st = a < 0 ? -1 : H5Awrite(a, type, value.c_str());
  if (a >= 0 && H5Aclose(a) < 0) st = -1;
  H5Tclose(type);
  close_object(obj, hid_t(file_));
  h5check(st, "writing attribute '" + name + "'", tmp_);
}

void CheckpointWriter::commit() {
  h5check(H5Fflush(hid_t(file_), H5F_SCOPE_GLOBAL), "flush", tmp_);
  const herr_t st = H5Fclose(hid_t(file_));
  file_ = -1;
  h5check(st, "close", tmp_);
  // Data on disk before the name: after a power loss the file is complete or absent.
  fsync_path(tmp_);
  std::error_code ec;
  fs::rename(tmp_, path_, ec);  // atomic on POSIX within one file system
  if (ec) fail("checkpoint " + path_ + ": rename from .tmp failed: " + ec.message());
  fs::path dir = fs::path(path_).parent_path();
  fsync_path(dir.empty() ? "." : dir.string());
}

CheckpointReader::CheckpointReader(std::string path) : path_(std::move(path)) {
  if (!fs::exists(path_)) fail("checkpoint " + path_ + ": no such file");
  file_ = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file_ < 0)
    fail("checkpoint " + path_ + ": not a readable HDF5 file (truncated or corrupt); resume from an "
         "earlier checkpoint");
  try {
    if (H5Aexists(hid_t(file_), "format_version") <= 0 || H5Aexists(hid_t(file_), "magic") <= 0 ||
        attr_str("magic") != "gptrain-checkpoint")
      fail("checkpoint " + path_ + ": not a gptrain checkpoint (no format_version/magic)");
    int64_t v = attr_int("format_version");
    if (v != kCheckpointFormatVersion)
      fail("checkpoint " + path_ + ": format version " + std::to_string(v) + ", this build reads " +
           std::to_string(kCheckpointFormatVersion) + "; resume with the build that wrote it");
  } catch (...) {
    // No destructor runs for a constructor that throws: without this close, every file
    // refused here stayed open, and HDF5 refused to create a file by that name again.
    H5Fclose(hid_t(file_));
    throw;
  }
}

CheckpointReader::~CheckpointReader() {
  if (file_ >= 0) H5Fclose(hid_t(file_));
}

int64_t CheckpointReader::open_target(const std::string& dataset) const {
  return open_object(hid_t(file_), dataset, path_);
}

bool CheckpointReader::has(const std::string& name) const {
  return H5Lexists(hid_t(file_), dataset_name(name).c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> CheckpointReader::datasets() const {
  std::vector<std::string> names;
  auto visit = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  };
  hsize_t idx = 0;
  h5check(H5Literate(hid_t(file_), H5_INDEX_NAME, H5_ITER_INC, &idx, visit, &names),
          "listing datasets", path_);
  return names;
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
  const herr_t st = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host);
  H5Dclose(ds);
  h5check(st, "reading '" + name + "'", path_);
}

void CheckpointReader::read(const std::string& name, Tensor& t) const {
  std::vector<float> host(size_t(t.numel()));
  read(name, t.shape, host.data());
  from_host_f32(t, host.data());
}

void CheckpointReader::read_range(const std::string& name, int64_t offset, int64_t count,
                                  float* host) const {
  if (count <= 0) return;
  hid_t ds = H5Dopen2(hid_t(file_), dataset_name(name).c_str(), H5P_DEFAULT);
  if (ds < 0) fail("checkpoint " + path_ + ": missing tensor '" + name + "'");
  hid_t file_space = H5Dget_space(ds);
  hsize_t start = hsize_t(offset), n = hsize_t(count);
  herr_t st = H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &n, nullptr);
  hid_t mem_space = H5Screate_simple(1, &n, nullptr);
  if (st >= 0) st = H5Dread(ds, H5T_NATIVE_FLOAT, mem_space, file_space, H5P_DEFAULT, host);
  H5Sclose(mem_space);
  H5Sclose(file_space);
  H5Dclose(ds);
  h5check(st, "reading elements [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                  ") of '" + name + "'", path_);
}

bool CheckpointReader::has_attr(const std::string& name, const std::string& dataset) const {
  hid_t obj = hid_t(open_target(dataset));
  const bool yes = H5Aexists(obj, name.c_str()) > 0;
  close_object(obj, hid_t(file_));
  return yes;
}

std::vector<int64_t> CheckpointReader::attr_ints(const std::string& name, const std::string& dataset) const {
  hid_t obj = hid_t(open_target(dataset));
  hid_t a = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  if (a < 0) {
    close_object(obj, hid_t(file_));
    fail("checkpoint " + path_ + ": missing attribute '" + name + "'" +
         (dataset.empty() ? "" : " of '" + dataset + "'"));
  }
  hid_t space = H5Aget_space(a);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  std::vector<int64_t> v(size_t(n > 0 ? n : 0));
  herr_t st = v.empty() ? 0 : H5Aread(a, H5T_NATIVE_INT64, v.data());
  H5Sclose(space);
  H5Aclose(a);
  close_object(obj, hid_t(file_));
  h5check(st, "reading attribute '" + name + "'", path_);
  return v;
}

int64_t CheckpointReader::attr_int(const std::string& name, const std::string& dataset) const {
  auto v = attr_ints(name, dataset);
  if (v.size() != 1) fail("checkpoint " + path_ + ": attribute '" + name + "' is not a scalar");
  return v[0];
}

std::string CheckpointReader::attr_str(const std::string& name, const std::string& dataset) const {
  hid_t obj = hid_t(open_target(dataset));
  hid_t a = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  if (a < 0) {
    close_object(obj, hid_t(file_));
    fail("checkpoint " + path_ + ": missing attribute '" + name + "'");
  }
  // H5Aread fills every string the attribute holds; the buffer below has room for one.
  const hid_t space = H5Aget_space(a);
  const hssize_t count = H5Sget_simple_extent_npoints(space);
  H5Sclose(space);
  if (count != 1) {
    H5Aclose(a);
    close_object(obj, hid_t(file_));
    fail("checkpoint " + path_ + ": attribute '" + name + "'" + (dataset.empty() ? "" : " of '" + dataset + "'") +
         " is not one string (file damaged?)");
  }
  hid_t type = H5Aget_type(a);
  // One byte more than stored: h5py writes fixed-length strings without a NUL, and
  // HDF5 needs room for the terminator it adds in memory.
  size_t n = H5Tget_size(type) + 1;
  std::string s(n, '\0');
  hid_t mem = H5Tcopy(H5T_C_S1);
  H5Tset_size(mem, n);
  const herr_t st = H5Aread(a, mem, s.data());
  H5Tclose(mem);
  H5Tclose(type);
  H5Aclose(a);
  close_object(obj, hid_t(file_));
  h5check(st, "reading attribute '" + name + "'", path_);
  s.resize(s.find('\0') == std::string::npos ? s.size() : s.find('\0'));
  return s;
}

}  // namespace gpt
