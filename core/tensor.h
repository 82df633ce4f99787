// Tensor: a typed, shaped view into reference-counted device memory.
// Parameters, gradients and optimizer moments are views into a few flat buffers
// (see param_store.h) so data parallelism can reduce them in contiguous buckets.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace gpt {

enum class DType : uint8_t { F32, BF16, I32 };
enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);

// Raw allocation owned by one backend; freed through that backend's table.
struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// Bytes held in Storage per device, now and at the peak since the last reset, and the
// largest single allocation since then (a probe: tests assert that no tensor of some
// size, e.g. [B, T, V] logits under tensor parallelism, was ever made). The counters are
// process-wide on purpose: they describe the process's memory, which is what the
// start-up memory plan is checked against.
struct MemoryStats {
  size_t current = 0;
  size_t peak = 0;
  size_t largest = 0;
};
MemoryStats memory_stats(Device device);
void reset_peak_memory(Device device);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);

struct Tensor {
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // in bytes from storage->ptr
  Shape shape;
  DType dtype = DType::F32;
  Device device = Device::CPU;

  bool defined() const { return storage != nullptr; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  int ndim() const { return int(shape.size()); }
  void* raw() const { return static_cast<char*>(storage->ptr) + offset; }
  template <typename T> T* data() const { return static_cast<T*>(raw()); }
  float* f32() const { return data<float>(); }
  int32_t* i32() const { return data<int32_t>(); }

  // A view of `count` elements starting at element `start`, reshaped to `shape`.
  Tensor slice(int64_t start, Shape shape) const;
  Tensor view(Shape shape) const;  // same elements, new shape (numel must match)
};

Tensor empty(Shape shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor zeros(Shape shape, DType dtype = DType::F32, Device device = Device::CPU);
// Reallocate `t` only when its shape/dtype/device differ: activation buffers are
// sized on first use and reused every step.
void ensure(Tensor& t, const Shape& shape, DType dtype, Device device);

void zero_(Tensor& t);
void copy_(Tensor& dst, const Tensor& src);  // same numel and dtype, any devices
Tensor to_device(const Tensor& t, Device device);
std::vector<float> to_host_f32(const Tensor& t);  // F32 or BF16 tensor, any device
void from_host_f32(Tensor& dst, const float* src);  // dst F32 or BF16, any device

}  // namespace gpt
