// CPU backend (OpenBLAS + OpenMP). The kernels compute in fp32 on fp32 tensors;
// bf16 storage reaches them through the table in cpu_ops.cpp, and convert reads and writes both.
// Each function implements one entry of the ops table in core/ops.h and keeps its
// conventions (which gradients accumulate and which are overwritten).
#pragma once
#include "core/ops.h"

namespace gpt::cpu {

void check_f32(const Tensor& t, const char* op, const char* arg);

// Memory (memory.cpp).
void* host_alloc(size_t bytes);
void host_free(void* p);
void host_zero(void* p, size_t n);
void host_copy(void* d, const void* s, size_t n);
void host_sync();
void* no_stream();
void no_device(int);
void host_memory(size_t* free_bytes, size_t* total_bytes);

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe);
void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens);
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, const Tensor& bias);
void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd);
// round_sum_to_bf16: sum is stored in bf16, so it is rounded before the statistics.
void residual_layernorm_forward(Tensor& sum, Tensor& out, Tensor& mean, Tensor& rstd,
                                const Tensor& a, const Tensor& b, const Tensor& weight,
                                const Tensor& bias, bool round_sum_to_bf16);
void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias);
void matmul_backward(Tensor* dinp, Tensor* dweight, Tensor* dbias, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight);
void gelu_forward(Tensor& out, const Tensor& inp);
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);
// Grouped-query attention; NKV = NH is the multi-head attention of the table's
// attention_forward / attention_backward.
void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH, int NKV);
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                        const Tensor& qkv, int NH, int NKV);
// The LLaMA family (rmsnorm.cpp, rope.cpp, swiglu.cpp).
void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                     float eps);
void residual_rmsnorm_forward(Tensor& sum, Tensor& out, Tensor& rstd, const Tensor& a,
                              const Tensor& b, const Tensor& weight, float eps,
                              bool round_sum_to_bf16);
void rmsnorm_backward(Tensor& dinp, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                      const Tensor& weight, const Tensor& rstd);
void rope_forward(Tensor& out, const Tensor& qkv, const RopeArgs& args);
void rope_backward(Tensor& dqkv, const Tensor& dout, const RopeArgs& args);
void swiglu_forward(Tensor& out, const Tensor& inp);
void swiglu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);
void add(Tensor& out, const Tensor& a, const Tensor& b);
void accumulate(Tensor& dst, const Tensor& src);
void scale(Tensor& x, float s);
void convert(Tensor& dst, const Tensor& src);
double sum_squares(const Tensor& x);
void cross_entropy_forward(Tensor& losses, const Tensor& logits, const Tensor& targets);
void cross_entropy_forward_backward(Tensor& losses, Tensor& logits, const Tensor& targets,
                                    float dloss);
// Vocabulary slices (vocab_slice.cpp).
void encoder_slice_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                           int64_t vocab_begin, int64_t V);
void encoder_slice_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens,
                            int64_t vocab_begin);
void cross_entropy_slice_stats(Tensor& stats, const Tensor& logits, const Tensor& targets,
                               int64_t vocab_begin, int64_t V);
void cross_entropy_slice_forward_backward(Tensor& losses, Tensor* logits, const Tensor& targets,
                                          const Tensor& stats, int64_t vocab_begin, int64_t V,
                                          float dloss);
// Mixture-of-experts row movement (moe_rows.cpp); f32 only.
void moe_gather_rows(Tensor& out, const Tensor& x, const Tensor& row_token, int64_t rows);
void moe_combine(Tensor& out, const Tensor& expert_out, const Tensor& row, const Tensor& weight, int64_t k);
void moe_combine_backward(Tensor& d_expert_out, Tensor& dweight, const Tensor& dout, const Tensor& expert_out,
                          const Tensor& row, const Tensor& weight, int64_t k);
void moe_scatter_add_rows(Tensor& dx, const Tensor& d_expert_in, const Tensor& row, int64_t k);
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWArgs& a);

}  // namespace gpt::cpu
