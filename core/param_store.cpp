#include "core/param_store.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"

namespace gpt {

int64_t Param::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Param* ParamStore::add_expert(std::string name, Shape global_shape, bool decay, float init_std, float init_value,
                              ShardSpec shard) {
  Param* p = add(std::move(name), std::move(global_shape), decay, init_std, init_value, std::move(shard));
  // Moved from the dense count to the experts' region (placed by materialize()).
  total_ -= p->numel();
  p->offset = expert_total_;
  p->expert = true;
  expert_total_ += p->numel();
  return p;
}

Param* ParamStore::add(std::string name, Shape global_shape, bool decay, float init_std,
                       float init_value, ShardSpec shard) {
  GPT_CHECK(!materialized_, "ParamStore::add('" + name + "') after materialize()");
  GPT_CHECK(find(name) == nullptr, "duplicate parameter name '" + name + "'");
  Param p;
  p.shape = shard_shape(global_shape, shard, "parameter '" + name + "'");
  p.name = std::move(name);
  p.global_shape = std::move(global_shape);
  p.shard = shard.sharded() ? shard : ShardSpec{};
  p.decay = decay;
  p.init_std = init_std;
  p.init_value = init_value;
  p.offset = total_;
  total_ += p.numel();
  params_.push_back(std::move(p));
  return &params_.back();
}

Param* ParamStore::find(const std::string& name) {
  for (auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

void ParamStore::materialize(Device device, DType compute_dtype) {
  GPT_CHECK(!materialized_, "ParamStore::materialize() called twice");
  GPT_CHECK(compute_dtype == DType::F32 || compute_dtype == DType::BF16,
            std::string("ParamStore: compute dtype must be f32 or bf16, got ") + dtype_name(compute_dtype));
  device_ = device;
  compute_dtype_ = compute_dtype;
  for (auto& p : params_)
    if (p.expert) p.offset += total_;
  total_ += expert_total_;
  values_ = zeros({total_}, DType::F32, device);
  grads_ = zeros({total_}, DType::F32, device);
  compute_ = compute_dtype == DType::F32 ? values_ : zeros({total_}, compute_dtype, device);
  for (auto& p : params_) {
    p.value = values_.slice(p.offset, p.shape);
    p.grad = grads_.slice(p.offset, p.shape);
    p.compute = compute_.slice(p.offset, p.shape);
  }
  materialized_ = true;
}

void ParamStore::sync_compute() {
  if (compute_dtype_ != DType::F32) ops_for(device_).convert(compute_, values_);
}

float init_value_at(uint64_t seed, const std::string& name, float init_std, float init_value,
                    int64_t global_index) {
  if (init_std <= 0.f) return init_value;
  return init_std * counter_normal(seed ^ hash_string(name), uint64_t(global_index));
}

void ParamStore::init(uint64_t seed) {
  GPT_CHECK(materialized_, "ParamStore::init() before materialize()");
  std::vector<float> host;
  for (auto& p : params_) {
    host.assign(size_t(p.numel()), p.init_value);
    if (p.init_std > 0.f) {
      const uint64_t key = seed ^ hash_string(p.name);
      for_each_global_run(p.global_shape, p.shard, 0, p.numel(), [&](int64_t local, int64_t global, int64_t n) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i)
          host[size_t(local + i)] = p.init_std * counter_normal(key, uint64_t(global + i));
      });
    }
    from_host_f32(p.value, host.data());
  }
  sync_compute();
}

void ParamStore::zero_grads() { zero_(grads_); }

}  // namespace gpt
