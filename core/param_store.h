// ParamStore: every trainable tensor of a model, registered by name, materialised as
// views into ONE flat value buffer and ONE flat gradient buffer (F32, registration
// order). Flat buffers let data parallelism reduce gradients in contiguous buckets and
// ZeRO-1 shard the optimizer by element range, without the model knowing either.
//
// Every parameter has a global identity: a name and a shape that are the same under
// every parallel layout, plus the slice of that global tensor this store holds (a
// ShardSpec; the whole tensor by default). Initial values are a function of the seed,
// the global name and the global element index only, so any sharding of a tensor starts
// from exactly the numbers the unsharded tensor has, and checkpoints can be read back
// under any other layout.
#pragma once
#include <deque>
#include <string>

#include "core/shard.h"
#include "core/tensor.h"

namespace gpt {

struct Param {
  std::string name;         // global: the same on every rank and layout
  Shape global_shape;       // the whole tensor's shape
  ShardSpec shard;          // which slice of it this store holds
  Shape shape;              // the local shape (global_shape unless sharded)
  bool decay = true;        // weight decay applies (matmul weights only, as GPT-2)
  float init_std = 0.02f;   // N(0, init_std); 0 means constant init_value
  float init_value = 0.f;
  int64_t offset = 0;       // element offset in the flat buffers
  Tensor value, grad;       // F32 master value and gradient: views, valid after materialize()
  Tensor compute;           // what layers compute with: `value` itself, or its bf16 copy
  bool expert = false;      // an MoE expert's: in the experts' region (see add_expert)
  int64_t numel() const;
};

class ParamStore {
 public:
  // Registration happens while layers are built; the returned pointer is stable.
  // `global_shape` is the whole tensor's; `shard` picks the slice this store holds.
  Param* add(std::string name, Shape global_shape, bool decay, float init_std,
             float init_value = 0.f, ShardSpec shard = {});
  // An MoE expert's parameter. Experts are split over the expert-parallel ranks, so the
  // ranks holding the same values of them (the expert-data-parallel group) differ from
  // those of every other parameter (the data-parallel group): materialize() places them
  // all after the others, as one contiguous region (expert_range()), so data parallelism
  // reduces and shards each region over its own group. Until then their offsets count
  // within that region, and total() counts the other parameters only.
  Param* add_expert(std::string name, Shape global_shape, bool decay, float init_std, float init_value = 0.f,
                    ShardSpec shard = {});
  // compute_dtype BF16 (mixed precision) adds one flat bf16 copy of the values that
  // layers compute with; gradients, master values and the optimizer stay F32.
  void materialize(Device device, DType compute_dtype = DType::F32);
  // Refreshes the compute copy from the master values (after init, load, each update).
  void sync_compute();
  DType compute_dtype() const { return compute_dtype_; }
  // N(0, init_std) per element from a counter-based generator keyed by (seed, global
  // name, global element index): values depend neither on registration order nor on how
  // parallelism splits the model (see init_value_at).
  void init(uint64_t seed);
  void zero_grads();

  int size() const { return int(params_.size()); }
  Param& at(int i) { return params_[size_t(i)]; }
  const Param& at(int i) const { return params_[size_t(i)]; }
  Param* find(const std::string& name);
  int64_t total() const { return total_; }
  // After materialize(): the experts' parameters, [begin, total()) of the flat buffers
  // (empty for a dense model). Before it: the experts' elements registered so far, from 0.
  int64_t expert_begin() const { return materialized_ ? total_ - expert_total_ : 0; }
  int64_t expert_total() const { return expert_total_; }
  Tensor& flat_values() { return values_; }
  Tensor& flat_grads() { return grads_; }
  Device device() const { return device_; }

 private:
  std::deque<Param> params_;
  int64_t total_ = 0, expert_total_ = 0;
  Tensor values_, grads_, compute_;
  DType compute_dtype_ = DType::F32;
  Device device_ = Device::CPU;
  bool materialized_ = false;
};

// The initial value of element `global_index` (row-major in the global shape) of
// parameter `name`: init_value, or init_std times a standard normal drawn from
// (seed, name, global_index) alone.
float init_value_at(uint64_t seed, const std::string& name, float init_std, float init_value,
                    int64_t global_index);

}  // namespace gpt
