// The ops table: every numeric operation the model and optimizer need, declared once
// with forward and backward, implemented per backend (core/cpu, core/cuda). Layers call
// ops_for(device) and never a backend directly, so layer code is the same on CPU and GPU.
//
// Dimension letters: B batch, T time, C channels, NH heads, HS = C/NH head size,
// N rows (B*T flattened), OC output channels, V vocabulary; for the LLaMA family's ops
// also NKV key/value heads (grouped-query attention) and F the SwiGLU hidden width.
//
// Conventions every backend keeps:
//  * Backward ops ACCUMULATE (+=) into parameter gradients, so micro-batch
//    accumulation needs no copies, and layernorm_backward into its input gradient too:
//    that is the residual stream, which every block adds to.
//    rmsnorm_backward does the same, for the same reason.
//  * matmul_backward, gelu_backward, matmul_gelu_backward, attention_backward (and
//    attention_gqa_backward), rope_backward and swiglu_backward
//    OVERWRITE their input gradient (dinp, dqkv): it lives in a scratch buffer that
//    would otherwise have to be zeroed, then read back as zeros, once per op and step
//    (about 10% of a GPU step at GPT-2 124M goes to that traffic).
//    cross_entropy_forward_backward overwrites the logits with their gradient.
//  * An optional argument is passed as nullptr (a Tensor* that may be null).
//  * Linear weights are [OC, C] (PyTorch's layout); out = inp @ weight^T + bias.
//  * Activations may be F32 or BF16 on backends that support BF16; parameters given
//    to adamw_update are always F32 master copies.
//  * Every op is asynchronous on the backend's compute stream; synchronize() waits.
//  * A token id outside the vocabulary is an error whose message names the id, its
//    position and V. The CPU throws it from the op; CUDA checks on the device
//    without waiting and throws it from the next call that waits for the stream
//    (copy_to_host, copy_from_host, synchronize, sum_squares; never free). Until then
//    the op reads no memory out of bounds: see encoder_forward and the cross-entropy.
#pragma once
#include <cstdint>
#include "core/tensor.h"

namespace gpt {

struct AdamWArgs {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // 1-based, for bias correction
};

// Rotary position embedding over packed qkv (see rope_forward).
struct RopeArgs {
  int n_head, n_kv_head;  // NH query heads, NKV key/value heads (NH for plain attention)
  float theta;            // base: 10,000 (LLaMA 1/2), 500,000 (LLaMA 3)
  int64_t pos_offset;     // position of row t is pos_offset + t (a KV prefix when sampling)
};

struct Ops {
  const char* name;

  // Memory, on this backend's device.
  void* (*alloc)(size_t bytes);
  void (*free)(void* ptr);
  void (*memset_zero)(void* ptr, size_t bytes);
  void (*copy_to_host)(void* host_dst, const void* src, size_t bytes);
  void (*copy_from_host)(void* dst, const void* host_src, size_t bytes);
  void (*copy_device)(void* dst, const void* src, size_t bytes);
  void (*synchronize)();
  // The stream every op of this backend runs on (cudaStream_t on CUDA, null on the CPU):
  // communicators order their collectives after the work queued on it.
  void* (*compute_stream)();
  // Binds this process to device local_rank % device count before first use (one GPU
  // per rank); a no-op on the CPU.
  void (*select_device)(int local_rank);
  // Memory this process can still allocate on the device, and the device's total.
  void (*memory_info)(size_t* free_bytes, size_t* total_bytes);

  // out[B,T,C] = wte[tokens[b,t]] + wpe[t].   tokens: I32 [B,T]; wpe: [maxT, C].
  // A token outside [0, V) is an error (see above); where it is reported late, its row
  // of out is zeros and backward adds nothing to dwte for it.
  void (*encoder_forward)(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe);
  // Deterministic: the same tokens give bit-identical dwte on every run.
  void (*encoder_backward)(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens);

  // out[N,C] = (inp - mean) * rstd * weight + bias; saves mean[N] and rstd[N] (F32).
  void (*layernorm_forward)(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp,
                            const Tensor& weight, const Tensor& bias);
  void (*layernorm_backward)(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout,
                             const Tensor& inp, const Tensor& weight, const Tensor& mean,
                             const Tensor& rstd);
  // The residual add and the LayerNorm after it in one pass: sum = a + b, stored in
  // sum's dtype (the residual stream keeps it and backward reads it), then
  // out = layernorm(sum) saving mean/rstd. Its bits are those of add followed by
  // layernorm_forward, bf16 rounding of sum before the statistics included, so a
  // recomputed layernorm_forward(sum) reproduces out. sum may alias a or b (in place);
  // out aliases none of the others. Backward is layernorm_backward on sum.
  void (*residual_layernorm_forward)(Tensor& sum, Tensor& out, Tensor& mean, Tensor& rstd,
                                     const Tensor& a, const Tensor& b, const Tensor& weight,
                                     const Tensor& bias);

  // out[N,OC] = inp[N,C] @ weight[OC,C]^T (+ bias[OC]).
  void (*matmul_forward)(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor* bias);
  // dinp = dout @ weight (overwritten), dweight += dout^T @ inp, dbias += sum(dout).
  // dinp may be null (first layer needs no input gradient); dbias null when no bias.
  // dweight undefined (a default Tensor, with dbias null): the input gradient only; a
  // zero-bubble pipeline computes the weight gradients later, from the same dout and inp.
  void (*matmul_backward)(Tensor* dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                          const Tensor& inp, const Tensor& weight);

  // GELU, tanh approximation (GPT-2's): elementwise over any shape.
  void (*gelu_forward)(Tensor& out, const Tensor& inp);
  // dinp = gelu'(inp) * dout (overwritten); dinp may alias dout.
  void (*gelu_backward)(Tensor& dinp, const Tensor& inp, const Tensor& dout);
  // The MLP's second linear layer and the GELU before it, backward in one pass:
  // inp = gelu(pre) was the layer's input. dweight, dbias as matmul_backward (dweight
  // undefined: the input gradient only);
  // dinp = (dout @ weight) * gelu'(pre), overwritten. The CPU rounds it once (the
  // product is never stored in the activation dtype), as CUDA's fused path does in bf16
  // (cuBLASLt's DGELU epilogue); CUDA's fallback (fp32, GPT_CUDA_GELU_EPILOGUE=0, no
  // algorithm or a misaligned pre) stores the product first, one bf16 rounding more.
  void (*matmul_gelu_backward)(Tensor& dinp, Tensor& dweight, Tensor* dbias, const Tensor& dout,
                               const Tensor& inp, const Tensor& weight, const Tensor& pre);

  // Causal self-attention over packed qkv[B,T,3C] (q | k | v, heads contiguous in C).
  // out[B,T,C]; lse[B,NH,T] (F32) is the log-sum-exp of each softmax row, saved so
  // backward can rebuild probabilities without storing the T x T matrix. Backward
  // overwrites all of dqkv. (attention_gqa_forward below with NKV = NH: same kernels.)
  void (*attention_forward)(Tensor& out, Tensor& lse, const Tensor& qkv, int NH);
  void (*attention_backward)(Tensor& dqkv, const Tensor& dout, const Tensor& out,
                             const Tensor& lse, const Tensor& qkv, int NH);

  // out = a + b (residual forward); dst += src (residual backward, grad accumulation).
  void (*add)(Tensor& out, const Tensor& a, const Tensor& b);
  void (*accumulate)(Tensor& dst, const Tensor& src);
  void (*scale)(Tensor& x, float s);
  // dst = src converted elementwise to dst's dtype: F32 <-> BF16 either way, or a copy
  // when the dtypes agree; same numel (shapes may differ), no partial overlap. To BF16
  // rounds to nearest even and keeps NaN a (quiet) NaN, exactly as core/bf16.h, so every
  // backend gives the same bits (f32 master weights -> bf16 compute copies and back).
  void (*convert)(Tensor& dst, const Tensor& src);

  // losses[N] (F32) = logsumexp(logits[n]) - logits[n, targets[n]]; targets I32 [N].
  // A target < 0 is ignored (loss 0, no gradient). A target >= V is an error (see
  // above); where it is reported late, its row is treated as ignored meanwhile.
  void (*cross_entropy_forward)(Tensor& losses, const Tensor& logits, const Tensor& targets);
  // The fused classifier: losses as cross_entropy_forward and, from the same read of
  // each row, logits overwritten by dloss * (softmax(logits) - onehot(targets)) (zeros on
  // ignored rows), so no second [N, V] buffer exists and the row is read once more only.
  void (*cross_entropy_forward_backward)(Tensor& losses, Tensor& logits, const Tensor& targets,
                                         float dloss);

  // Vocabulary slices (the vocabulary-parallel embedding and head, parallel/tensor):
  // a rank holds rows [vocab_begin, vocab_begin + Vs) of wte, where the rows at or past
  // the real vocabulary size V are padding. Padding never wins a softmax, gives no
  // embedding and gets no gradient. Token ids are checked against [0, V) as above.
  //
  // out[B,T,C] = (wte_slice[tok - vocab_begin] for a token in the slice, else 0)
  //              + (wpe ? wpe[t] : 0).   Summed over the slices: encoder_forward.
  void (*encoder_slice_forward)(Tensor& out, const Tensor& tokens, const Tensor& wte_slice,
                                const Tensor* wpe, int64_t vocab_begin, int64_t V);
  // dwte_slice += dout rows of the tokens in the slice; dwpe as encoder_backward, or
  // nothing when dwpe is undefined (a model without learned positions: LLaMA).
  // Deterministic as encoder_backward.
  void (*encoder_slice_backward)(Tensor& dwte_slice, Tensor& dwpe, const Tensor& dout,
                                 const Tensor& tokens, int64_t vocab_begin);
  // One slice's part of the softmax over logits[N, Vs] (column j is id vocab_begin + j):
  // stats F32 [3, N], row 0 the max over the slice's real ids (-inf when it has none),
  // row 1 the sum of exp(logit - that max), row 2 the target's logit when the target is
  // in the slice, else 0. A target < 0 is ignored (its row's numbers are unused).
  void (*cross_entropy_slice_stats)(Tensor& stats, const Tensor& logits, const Tensor& targets,
                                    int64_t vocab_begin, int64_t V);
  // From the stats of S slices that together cover the vocabulary, F32 [S, 3, N]:
  // M = max_s max_s, Z = sum_s sumexp_s * exp(max_s - M), losses[N] = log Z + M -
  // sum_s target_s (0 on ignored rows). With logits given (this slice's, as passed to
  // cross_entropy_slice_stats), they are overwritten by dloss * (exp(logit - M) / Z -
  // onehot(target)), zeros in padding columns and ignored rows: the fused classifier's
  // gradient, sliced.
  void (*cross_entropy_slice_forward_backward)(Tensor& losses, Tensor* logits,
                                               const Tensor& targets, const Tensor& stats,
                                               int64_t vocab_begin, int64_t V, float dloss);

  // ---- the LLaMA family's ops ----

  // RMSNorm over the last dimension: out[N,C] = inp * rstd * weight with
  // rstd = 1 / sqrt(mean(inp^2) + eps) saved as [N] (F32); no bias, no mean subtracted.
  // In bf16, out is rounded once (HF's LlamaRMSNorm also rounds inp * rstd before the
  // weight multiply: one rounding more).
  void (*rmsnorm_forward)(Tensor& out, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                          float eps);
  // dinp += dx and dweight += dw (both accumulate: dinp is the residual stream).
  void (*rmsnorm_backward)(Tensor& dinp, Tensor& dweight, const Tensor& dout, const Tensor& inp,
                           const Tensor& weight, const Tensor& rstd);
  // sum = a + b then out = rmsnorm(sum), with residual_layernorm_forward's contract (sum
  // stored in its dtype and normalised as stored; may alias a or b; out's bits are
  // those of rmsnorm_forward on sum). Backward is rmsnorm_backward on sum.
  void (*residual_rmsnorm_forward)(Tensor& sum, Tensor& out, Tensor& rstd, const Tensor& a,
                                   const Tensor& b, const Tensor& weight, float eps);

  // Rotary position embedding of q and k in packed qkv [B, T, (NH + 2 NKV) HS] (the
  // layout of attention_gqa_forward; HS even). Each q and k head is rotated in pairs
  // (i, i + HS/2), i < HS/2 (Hugging Face's rotate_half convention, not Meta's
  // interleaved (2i, 2i+1); HF's conversion permutes wq/wk rows to it), by the angle
  // (pos_offset + t) * theta^(-2i/HS), computed in double:
  //   out[i] = x[i] cos - x[i + HS/2] sin,  out[i + HS/2] = x[i + HS/2] cos + x[i] sin.
  // v is copied unchanged. out may be qkv itself (in place: backward needs no input, so
  // the model rotates the qkv matmul's output where it is), but not overlap it partly.
  void (*rope_forward)(Tensor& out, const Tensor& qkv, const RopeArgs& args);
  // dqkv = dout rotated by -angle on q and k, dout's v copied; overwritten, may alias dout.
  void (*rope_backward)(Tensor& dqkv, const Tensor& dout, const RopeArgs& args);

  // SwiGLU on the fused gate/up projection inp[N, 2F] (columns [0, F) the gate, x W1^T;
  // [F, 2F) the up projection, x W3^T): out[N, F] = silu(gate) * up, silu(g) = g sigmoid(g).
  void (*swiglu_forward)(Tensor& out, const Tensor& inp);
  // dinp[N, 2F] = (dout * up * silu'(gate) | dout * silu(gate)), overwritten.
  void (*swiglu_backward)(Tensor& dinp, const Tensor& inp, const Tensor& dout);

  // Causal attention with grouped-query heads over packed qkv [B, T, (NH + 2 NKV) HS]:
  // NH query heads, then NKV key heads, then NKV value heads, each HS wide. NKV divides
  // NH; kv head j serves query heads [j NH/NKV, (j+1) NH/NKV) (read by index, never
  // repeated in memory). NKV = 1 is multi-query, NKV = NH is attention_forward exactly.
  // out [B, T, NH HS]; lse [B, NH, T]. Backward overwrites all of dqkv; the dK, dV of a
  // kv head sum over the query heads it serves. CUDA runs NKV < NH on its fp32
  // CUDA-core kernels in either dtype (the bf16 tensor-core kernels read the multi-head
  // layout only).
  void (*attention_gqa_forward)(Tensor& out, Tensor& lse, const Tensor& qkv, int NH, int NKV);
  void (*attention_gqa_backward)(Tensor& dqkv, const Tensor& dout, const Tensor& out,
                                 const Tensor& lse, const Tensor& qkv, int NH, int NKV);

  // ---- mixture of experts (core/layers/moe.h): moving rows between tokens and experts ----
  // C is the row width; N tokens, k choices per token; assignment i = t k + j is token
  // t's j-th choice. row I32 [N k] is the assignment's row in the experts' buffers, -1
  // when capacity dropped it; weight F32 [N k] its combine weight. The experts' buffers
  // are sized for a bound on the rows and may hold more rows than are in use; a row
  // index must lie inside them. F32 only for now (the layer is fp32).
  //
  // out[r] = x[row_token[r]] for r < rows (row_token I32, at least `rows` entries; out
  // [>= rows, C]); rows past `rows` are left as they are.
  void (*moe_gather_rows)(Tensor& out, const Tensor& x, const Tensor& row_token, int64_t rows);
  // out[t] += sum over j with row[t k + j] >= 0 of weight[t k + j] * expert_out[row],
  // added in choice order: one writer per token, so the bits are the same every run.
  // out [N, C] ACCUMULATES (the shared experts' output, or zeros).
  void (*moe_combine)(Tensor& out, const Tensor& expert_out, const Tensor& row,
                      const Tensor& weight, int64_t k);
  // Backward of moe_combine: d_expert_out[row] = weight * dout[t] (overwritten, kept
  // rows only: each kept row belongs to one assignment), dweight[t k + j] = dout[t] .
  // expert_out[row] (0 for a dropped assignment), overwritten.
  void (*moe_combine_backward)(Tensor& d_expert_out, Tensor& dweight, const Tensor& dout,
                               const Tensor& expert_out, const Tensor& row,
                               const Tensor& weight, int64_t k);
  // dx[t] += sum over j with row[t k + j] >= 0 of d_expert_in[row], in choice order
  // (dx [N, C] ACCUMULATES: it already holds the router's and shared experts' parts).
  void (*moe_scatter_add_rows)(Tensor& dx, const Tensor& d_expert_in, const Tensor& row,
                               int64_t k);

  // Decoupled-weight-decay Adam over one flat range (param F32, grad F32, m, v F32).
  void (*adamw_update)(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                       const AdamWArgs& args);
  // sum(x^2) accumulated in double, returned on the host (synchronizes).
  double (*sum_squares)(const Tensor& x);
};

const Ops& ops_for(Device device);
bool device_available(Device device);

// Backends register themselves; the CPU table always exists.
const Ops& cpu_ops();
const Ops* cuda_ops_or_null();  // null when built without CUDA or no GPU is present

}  // namespace gpt
