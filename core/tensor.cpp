#include "core/tensor.h"

#include <atomic>
#include <cstring>
#include <sstream>

#include "core/bf16.h"
#include "core/error.h"
#include "core/ops.h"

namespace gpt {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I32: return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

namespace {
struct Counters {
  std::atomic<size_t> current{0}, peak{0}, largest{0};
};
Counters& counters(Device d) {
  static Counters per_device[2];
  return per_device[d == Device::CPU ? 0 : 1];
}
}  // namespace

MemoryStats memory_stats(Device device) {
  Counters& c = counters(device);
  return {c.current.load(), c.peak.load(), c.largest.load()};
}

void reset_peak_memory(Device device) {
  Counters& c = counters(device);
  c.peak.store(c.current.load());
  c.largest.store(0);
}

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  ptr = ops_for(dev).alloc(nbytes == 0 ? 1 : nbytes);
  Counters& c = counters(dev);
  size_t now = c.current.fetch_add(bytes) + bytes;
  size_t peak = c.peak.load();
  while (now > peak && !c.peak.compare_exchange_weak(peak, now)) {
  }
  size_t largest = c.largest.load();
  while (bytes > largest && !c.largest.compare_exchange_weak(largest, bytes)) {
  }
}

Storage::~Storage() {
  if (ptr) ops_for(device).free(ptr);
  counters(device).current.fetch_sub(bytes);
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

static int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

int64_t Tensor::numel() const { return shape_numel(shape); }

Tensor Tensor::slice(int64_t start, Shape new_shape) const {
  int64_t count = shape_numel(new_shape);
  GPT_CHECK(start >= 0 && start + count <= numel(),
            "tensor slice [" + std::to_string(start) + ", +" + std::to_string(count) +
                ") out of range for " + shape_str(shape));
  Tensor t = *this;
  t.offset = offset + size_t(start) * dtype_size(dtype);
  t.shape = std::move(new_shape);
  return t;
}

Tensor Tensor::view(Shape new_shape) const {
  GPT_CHECK(shape_numel(new_shape) == numel(),
            "cannot view " + shape_str(shape) + " as " + shape_str(new_shape));
  Tensor t = *this;
  t.shape = std::move(new_shape);
  return t;
}

Tensor empty(Shape shape, DType dtype, Device device) {
  Tensor t;
  t.shape = std::move(shape);
  t.dtype = dtype;
  t.device = device;
  t.storage = std::make_shared<Storage>(size_t(shape_numel(t.shape)) * dtype_size(dtype), device);
  return t;
}

Tensor zeros(Shape shape, DType dtype, Device device) {
  Tensor t = empty(std::move(shape), dtype, device);
  zero_(t);
  return t;
}

void ensure(Tensor& t, const Shape& shape, DType dtype, Device device) {
  if (t.defined() && t.shape == shape && t.dtype == dtype && t.device == device) return;
  t = empty(shape, dtype, device);
}

void zero_(Tensor& t) { ops_for(t.device).memset_zero(t.raw(), t.nbytes()); }

void copy_(Tensor& dst, const Tensor& src) {
  GPT_CHECK(dst.numel() == src.numel() && dst.dtype == src.dtype,
            std::string("copy_: ") + shape_str(src.shape) + " " + dtype_name(src.dtype) + " into " +
                shape_str(dst.shape) + " " + dtype_name(dst.dtype));
  size_t n = src.nbytes();
  if (dst.device == src.device) {
    ops_for(dst.device).copy_device(dst.raw(), src.raw(), n);
  } else if (src.device == Device::CPU) {
    ops_for(dst.device).copy_from_host(dst.raw(), src.raw(), n);
  } else if (dst.device == Device::CPU) {
    ops_for(src.device).copy_to_host(dst.raw(), src.raw(), n);
  } else {
    fail("copy_ between two non-host devices is not supported");
  }
}

Tensor to_device(const Tensor& t, Device device) {
  Tensor out = empty(t.shape, t.dtype, device);
  copy_(out, t);
  return out;
}

std::vector<float> to_host_f32(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  Tensor host = t.device == Device::CPU ? t : to_device(t, Device::CPU);
  if (t.dtype == DType::F32) {
    std::memcpy(out.data(), host.raw(), out.size() * 4);
  } else if (t.dtype == DType::BF16) {
    const uint16_t* p = host.data<uint16_t>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(p[i]);
  } else {
    fail("to_host_f32: tensor is not floating point");
  }
  return out;
}

void from_host_f32(Tensor& dst, const float* src) {
  size_t n = size_t(dst.numel());
  if (dst.dtype == DType::F32) {
    ops_for(dst.device).copy_from_host(dst.raw(), src, n * 4);
    return;
  }
  GPT_CHECK(dst.dtype == DType::BF16, "from_host_f32: destination is not floating point");
  std::vector<uint16_t> tmp(n);
  for (size_t i = 0; i < n; ++i) tmp[i] = float_to_bf16(src[i]);
  ops_for(dst.device).copy_from_host(dst.raw(), tmp.data(), n * 2);
}

}  // namespace gpt
