// Entries of the CPU ops table that accept bf16 tensors (see bf16_args.h).
#pragma once
#include "core/cpu/cpu_kernels.h"

namespace gpt::cpu::any {

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe);
void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens);
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp,
                       const Tensor& weight, const Tensor& bias);
void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                        const Tensor& inp, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd);
void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias);
void matmul_backward(Tensor* dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                     const Tensor& inp, const Tensor& weight);
void gelu_forward(Tensor& out, const Tensor& inp);
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);
void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int NH);
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& out, const Tensor& lse,
                        const Tensor& qkv, int NH);
void add(Tensor& out, const Tensor& a, const Tensor& b);
void accumulate(Tensor& dst, const Tensor& src);
void scale(Tensor& x, float s);
void cross_entropy_forward(Tensor& losses, const Tensor& logits, const Tensor& targets);
void cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                            float dloss);
double sum_squares(const Tensor& x);

}  // namespace gpt::cpu::any
