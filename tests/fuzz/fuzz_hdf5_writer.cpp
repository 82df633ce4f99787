#include "tests/fuzz/fuzz_hdf5_writer.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace gpt::fuzz {
namespace {

// A failure of the harness's own writing is no finding in the code under test.
void check(herr_t st, const char* what) {
  if (st < 0) {
    std::fprintf(stderr, "fuzz: HDF5 %s failed\n", what);
    std::abort();
  }
}

void write_attr(hid_t obj, const std::string& name, hid_t type, hid_t space, const void* buf) {
  const hid_t a = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  check(a, "attribute create");
  check(H5Awrite(a, type, buf), "attribute write");
  H5Aclose(a);
}

}  // namespace

Hdf5Builder::Hdf5Builder(const std::string& path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // the readers report failures themselves
  file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  check(file_, "file create");
}

Hdf5Builder::~Hdf5Builder() { H5Fclose(file_); }

void Hdf5Builder::attr(const std::string& name, FuzzedDataProvider& in, hid_t obj, const std::string& usual) {
  if (obj < 0) obj = file_;
  const hid_t scalar = H5Screate(H5S_SCALAR);
  switch (in.ConsumeIntegralInRange(0, 8)) {
    case 0:  // absent
      break;
    case 1: {
      const int64_t v = in.ConsumeIntegral<int64_t>();
      write_attr(obj, name, H5T_NATIVE_INT64, scalar, &v);
      break;
    }
    case 2: {
      const int32_t v = in.ConsumeIntegral<int32_t>();
      write_attr(obj, name, H5T_NATIVE_INT32, scalar, &v);
      break;
    }
    case 3: {
      const uint64_t v = in.ConsumeIntegral<uint64_t>();
      write_attr(obj, name, H5T_NATIVE_UINT64, scalar, &v);
      break;
    }
    case 4: {
      const double v = in.ConsumeFloatingPoint<double>();
      write_attr(obj, name, H5T_NATIVE_DOUBLE, scalar, &v);
      break;
    }
    case 5: {  // int64 vector, possibly empty
      std::vector<int64_t> v(in.ConsumeIntegralInRange<size_t>(0, 6));
      for (auto& x : v) x = in.ConsumeIntegral<int64_t>();
      const hsize_t n = v.size();
      const hid_t space = n ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_NULL);
      if (n) {
        write_attr(obj, name, H5T_NATIVE_INT64, space, v.data());
      } else {  // an attribute with no elements has nothing to write
        const hid_t a = H5Acreate2(obj, name.c_str(), H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT);
        check(a, "attribute create");
        H5Aclose(a);
      }
      H5Sclose(space);
      break;
    }
    case 6: {  // fixed-length string: the usual value or the input's
      std::string s = in.ConsumeBool() ? usual : in.ConsumeRandomLengthString(64);
      const hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, s.empty() ? 1 : s.size());
      H5Tset_strpad(t, in.ConsumeBool() ? H5T_STR_NULLPAD : H5T_STR_NULLTERM);
      s.resize(s.empty() ? 1 : s.size());
      write_attr(obj, name, t, scalar, s.data());
      H5Tclose(t);
      break;
    }
    case 7: {  // variable-length string, as h5py writes str attributes
      const std::string s = in.ConsumeBool() ? usual : in.ConsumeRandomLengthString(64);
      const hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, H5T_VARIABLE);
      const char* p = s.c_str();
      write_attr(obj, name, t, scalar, &p);
      H5Tclose(t);
      break;
    }
    case 8: {  // several fixed-length strings where one is expected
      const hsize_t n = in.ConsumeIntegralInRange<hsize_t>(2, 4);
      std::string s = in.ConsumeBytesAsString(n * 8);
      s.resize(n * 8, 'x');
      const hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, 8);
      const hid_t space = H5Screate_simple(1, &n, nullptr);
      write_attr(obj, name, t, space, s.data());
      H5Sclose(space);
      H5Tclose(t);
      break;
    }
  }
  H5Sclose(scalar);
}

hid_t Hdf5Builder::dataset(const std::string& name, FuzzedDataProvider& in) {
  static const hid_t* const kTypes[] = {&H5T_NATIVE_UINT16_g, &H5T_NATIVE_UINT32_g, &H5T_NATIVE_INT64_g,
                                        &H5T_NATIVE_FLOAT_g,  &H5T_NATIVE_INT32_g,  &H5T_NATIVE_UINT8_g,
                                        &H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_UINT64_g};
  const int kind = in.ConsumeIntegralInRange(0, 8);
  if (kind == 8) return -1;  // absent
  H5open();
  const hid_t type = *kTypes[kind];
  const int rank = in.ConsumeIntegralInRange(0, 2);
  hsize_t dims[2] = {in.ConsumeIntegralInRange<hsize_t>(0, 64), in.ConsumeIntegralInRange<hsize_t>(1, 3)};
  const hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  const hsize_t n = hsize_t(H5Sget_simple_extent_npoints(space));
  if (rank > 0 && n > 0 && in.ConsumeBool()) {  // chunked, as prepare writes, or contiguous
    hsize_t chunk[2] = {dims[0], dims[1]};
    check(H5Pset_chunk(dcpl, rank, chunk), "set chunk");
  }
  const hid_t ds = H5Dcreate2(file_, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds < 0) {  // a name HDF5 refuses or one already taken: no such dataset
    H5Pclose(dcpl);
    H5Sclose(space);
    return -1;
  }
  // Contents: the input's bytes, 8 per element, converted to the element type.
  std::vector<int64_t> values(n);
  for (auto& v : values) v = in.ConsumeBool() ? int64_t(in.ConsumeIntegralInRange(0, 16)) : in.ConsumeIntegral<int64_t>();
  if (n > 0) check(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), "dataset write");
  H5Pclose(dcpl);
  H5Sclose(space);
  return ds;
}

}  // namespace gpt::fuzz
