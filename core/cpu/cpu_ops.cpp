// The CPU ops table. Each entry widens bf16 arguments through F32Args (bf16_args.h) and
// calls the fp32 kernel; reads are `in`, writes `out` (accumulating or not, per ops.h).
#include "core/cpu/bf16_args.h"
#include "core/cpu/cpu_kernels.h"

namespace gpt {
namespace {

using cpu::F32Args;

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  F32Args a;
  gpt::cpu::encoder_forward(a.out(out, false), tokens, a.in(wte), a.in(wpe));
}
void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  F32Args a;
  gpt::cpu::encoder_backward(a.out(dwte, true), a.out(dwpe, true), a.in(dout), tokens);
}
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, const Tensor& bias) {
  F32Args a;
  gpt::cpu::layernorm_forward(a.out(out, false), mean, rstd, a.in(inp), a.in(weight), a.in(bias));
}
void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd) {
  F32Args a;
  gpt::cpu::layernorm_backward(a.out(dinp, true), a.out(dweight, true), a.out(dbias, true), a.in(dout),
                          a.in(inp), a.in(weight), mean, rstd);
}
void residual_layernorm_forward(Tensor& sum, Tensor& out, Tensor& mean, Tensor& rstd,
                                const Tensor& x, const Tensor& y, const Tensor& weight,
                                const Tensor& bias) {
  F32Args a;
  gpt::cpu::residual_layernorm_forward(a.out(sum, false), a.out(out, false), mean, rstd, a.in(x),
                                       a.in(y), a.in(weight), a.in(bias),
                                       sum.dtype == DType::BF16);
}
void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias) {
  F32Args a;
  gpt::cpu::matmul_forward(a.out(out, false), a.in(inp), a.in(weight), a.in(bias));
}
void matmul_backward(Tensor* dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight) {
  F32Args a;
  gpt::cpu::matmul_backward(a.out(dinp, false), dweight.defined() ? &a.out(dweight, true) : nullptr,
                            a.out(dbias, true), a.in(dout),
                       a.in(inp), a.in(weight));
}
void gelu_forward(Tensor& out, const Tensor& inp) {
  F32Args a;
  gpt::cpu::gelu_forward(a.out(out, false), a.in(inp));
}
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  F32Args a;
  gpt::cpu::gelu_backward(a.out(dinp, false), a.in(inp), a.in(dout));
}
// One F32Args scope: in bf16 the product stays fp32 until the GELU gradient is applied,
// rounded once as the fused CUDA epilogue does.
void matmul_gelu_backward(Tensor& dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                          const Tensor& inp, const Tensor& weight, const Tensor& pre) {
  F32Args a;
  Tensor& d = a.out(dinp, false);
  gpt::cpu::matmul_backward(&d, dweight.defined() ? &a.out(dweight, true) : nullptr, a.out(dbias, true),
                            a.in(dout), a.in(inp),
                            a.in(weight));
  gpt::cpu::gelu_backward(d, a.in(pre), d);
}
void attention_gqa_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH, int NKV) {
  F32Args a;
  gpt::cpu::attention_forward(a.out(out, false), lse, a.in(qkv), NH, NKV);
}
void attention_gqa_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out,
                            const Tensor& lse, const Tensor& qkv, int NH, int NKV) {
  F32Args a;
  gpt::cpu::attention_backward(a.out(dqkv, false), a.in(dout), a.in(out), lse, a.in(qkv), NH,
                               NKV);
}
void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH) {
  attention_gqa_forward(out, lse, qkv, NH, NH);
}
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                        const Tensor& qkv, int NH) {
  attention_gqa_backward(dqkv, dout, out, lse, qkv, NH, NH);
}
void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                     float eps) {
  F32Args a;
  gpt::cpu::rmsnorm_forward(a.out(out, false), rstd, a.in(inp), a.in(weight), eps);
}
void residual_rmsnorm_forward(Tensor& sum, Tensor& out, Tensor& rstd, const Tensor& x,
                              const Tensor& y, const Tensor& weight, float eps) {
  F32Args a;
  gpt::cpu::residual_rmsnorm_forward(a.out(sum, false), a.out(out, false), rstd, a.in(x),
                                     a.in(y), a.in(weight), eps, sum.dtype == DType::BF16);
}
void rmsnorm_backward(Tensor& dinp, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                      const Tensor& weight, const Tensor& rstd) {
  F32Args a;
  gpt::cpu::rmsnorm_backward(a.out(dinp, true), a.out(dweight, true), a.in(dout), a.in(inp),
                             a.in(weight), rstd);
}
// In place (out aliasing qkv) in bf16: a.in and a.out make two fp32 copies, the write-back
// then lands on the shared storage, which is what in place means.
void rope_forward(Tensor& out, const Tensor& qkv, const RopeArgs& args) {
  F32Args a;
  gpt::cpu::rope_forward(a.out(out, false), a.in(qkv), args);
}
void rope_backward(Tensor& dqkv, const Tensor& dout, const RopeArgs& args) {
  F32Args a;
  gpt::cpu::rope_backward(a.out(dqkv, false), a.in(dout), args);
}
void swiglu_forward(Tensor& out, const Tensor& inp) {
  F32Args a;
  gpt::cpu::swiglu_forward(a.out(out, false), a.in(inp));
}
void swiglu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  F32Args a;
  gpt::cpu::swiglu_backward(a.out(dinp, false), a.in(inp), a.in(dout));
}
void add(Tensor& out, const Tensor& x, const Tensor& y) {
  F32Args a;
  gpt::cpu::add(a.out(out, false), a.in(x), a.in(y));
}
void accumulate(Tensor& dst, const Tensor& src) {
  F32Args a;
  gpt::cpu::accumulate(a.out(dst, true), a.in(src));
}
void scale(Tensor& x, float s) {
  F32Args a;
  gpt::cpu::scale(a.out(x, true), s);
}
void cross_entropy_forward(Tensor& losses, const Tensor& logits, const Tensor& targets) {
  F32Args a;
  gpt::cpu::cross_entropy_forward(losses, a.in(logits), targets);
}
void cross_entropy_forward_backward(Tensor& losses, Tensor& logits, const Tensor& targets,
                                    float dloss) {
  F32Args a;
  gpt::cpu::cross_entropy_forward_backward(losses, a.out(logits, true), targets, dloss);
}
void encoder_slice_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                           int64_t vocab_begin, int64_t V) {
  F32Args a;
  gpt::cpu::encoder_slice_forward(a.out(out, false), tokens, a.in(wte), a.in(wpe), vocab_begin, V);
}
void encoder_slice_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens,
                            int64_t vocab_begin) {
  F32Args a;
  gpt::cpu::encoder_slice_backward(a.out(dwte, true), a.out(dwpe, true), a.in(dout), tokens, vocab_begin);
}
void cross_entropy_slice_stats(Tensor& stats, const Tensor& logits, const Tensor& targets,
                               int64_t vocab_begin, int64_t V) {
  F32Args a;
  gpt::cpu::cross_entropy_slice_stats(stats, a.in(logits), targets, vocab_begin, V);
}
void cross_entropy_slice_forward_backward(Tensor& losses, Tensor* logits, const Tensor& targets,
                                          const Tensor& stats, int64_t vocab_begin, int64_t V,
                                          float dloss) {
  F32Args a;
  gpt::cpu::cross_entropy_slice_forward_backward(losses, a.out(logits, true), targets, stats,
                                                 vocab_begin, V, dloss);
}
double sum_squares(const Tensor& x) {
  F32Args a;
  return cpu::sum_squares(a.in(x));
}


}  // namespace

const Ops& cpu_ops() {
  static const Ops table = [] {
    Ops t{};
    t.name = "cpu";
    t.alloc = cpu::host_alloc;
    t.free = cpu::host_free;
    t.memset_zero = cpu::host_zero;
    t.copy_to_host = cpu::host_copy;
    t.copy_from_host = cpu::host_copy;
    t.copy_device = cpu::host_copy;
    t.synchronize = cpu::host_sync;
    t.compute_stream = cpu::no_stream;
    t.select_device = cpu::no_device;
    t.memory_info = cpu::host_memory;
    t.encoder_forward = encoder_forward;
    t.encoder_backward = encoder_backward;
    t.layernorm_forward = layernorm_forward;
    t.layernorm_backward = layernorm_backward;
    t.residual_layernorm_forward = residual_layernorm_forward;
    t.matmul_forward = matmul_forward;
    t.matmul_backward = matmul_backward;
    t.gelu_forward = gelu_forward;
    t.gelu_backward = gelu_backward;
    t.matmul_gelu_backward = matmul_gelu_backward;
    t.attention_forward = attention_forward;
    t.attention_backward = attention_backward;
    t.attention_gqa_forward = attention_gqa_forward;
    t.attention_gqa_backward = attention_gqa_backward;
    t.rmsnorm_forward = rmsnorm_forward;
    t.rmsnorm_backward = rmsnorm_backward;
    t.residual_rmsnorm_forward = residual_rmsnorm_forward;
    t.rope_forward = rope_forward;
    t.rope_backward = rope_backward;
    t.swiglu_forward = swiglu_forward;
    t.swiglu_backward = swiglu_backward;
    t.add = add;
    t.accumulate = accumulate;
    t.scale = scale;
    t.convert = gpt::cpu::convert;
    t.cross_entropy_forward = cross_entropy_forward;
    t.cross_entropy_forward_backward = cross_entropy_forward_backward;
    t.encoder_slice_forward = encoder_slice_forward;
    t.encoder_slice_backward = encoder_slice_backward;
    t.cross_entropy_slice_stats = cross_entropy_slice_stats;
    t.cross_entropy_slice_forward_backward = cross_entropy_slice_forward_backward;
    // f32 only (the MoE layer is fp32): no F32Args widening, straight to the kernels.
    t.moe_gather_rows = gpt::cpu::moe_gather_rows;
    t.moe_combine = gpt::cpu::moe_combine;
    t.moe_combine_backward = gpt::cpu::moe_combine_backward;
    t.moe_scatter_add_rows = gpt::cpu::moe_scatter_add_rows;
    t.adamw_update = gpt::cpu::adamw_update;
    t.sum_squares = sum_squares;
    return t;
  }();
  return table;
}

}  // namespace gpt
