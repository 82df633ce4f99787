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

Param* ParamStore::add(std::string name, Shape shape, bool decay, float init_std,
                       float init_value) {
  GPT_CHECK(!materialized_, "ParamStore::add('" + name + "') after materialize()");
  GPT_CHECK(find(name) == nullptr, "duplicate parameter name '" + name + "'");
  Param p;
  p.name = std::move(name);
  p.shape = std::move(shape);
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

void ParamStore::init(uint64_t seed) {
  GPT_CHECK(materialized_, "ParamStore::init() before materialize()");
  for (auto& p : params_) {
    std::vector<float> host(size_t(p.numel()), p.init_value);
    if (p.init_std > 0.f) {
      Rng rng(seed ^ hash_string(p.name));
      for (float& x : host) x = p.init_std * rng.normal();
    }
    from_host_f32(p.value, host.data());
  }
  sync_compute();
}

void ParamStore::zero_grads() { zero_(grads_); }

}  // namespace gpt
