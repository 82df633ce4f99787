// Linear layer: out = inp @ W^T + b. Virtual so parallel/ can substitute column- or
// row-parallel versions from outside without the model knowing: the model asks a
// LinearFactory for each of its linears, naming the role it plays.
#pragma once
#include <memory>
#include <string>

#include "core/layers/token_embedding.h"
#include "core/param_store.h"

namespace gpt {

class ExpertExchange;

class Linear {
 public:
  Linear(ParamStore& store, const std::string& name, int64_t in, int64_t out, bool bias,
         float init_std);
  // A slice of the global [out, in] layer: the weight's and the bias's shard specs say
  // which (parallel/tensor builds these); in_features/out_features are the local sizes.
  Linear(ParamStore& store, const std::string& name, int64_t in, int64_t out, bool bias,
         float init_std, ShardSpec weight_shard, ShardSpec bias_shard);
  virtual ~Linear() = default;
  virtual void forward(Tensor& out, const Tensor& inp);
  // Writes dinp (if given); accumulates into the parameter gradients.
  virtual void backward(Tensor* dinp, const Tensor& dout, const Tensor& inp);
  // The same for a layer whose input was inp = gelu(pre): dpre is the gradient with
  // respect to pre, the GELU's backward fused into the product (ops matmul_gelu_backward).
  virtual void backward_through_gelu(Tensor& dpre, const Tensor& dout, const Tensor& inp,
                                     const Tensor& pre);
  // Backward split in two for zero-bubble pipelines: the input gradient now (no weight
  // or bias gradient), then weight_grad later from the same dout and inp, which the
  // caller keeps until then. Together they equal backward().
  virtual void input_grad(Tensor& dinp, const Tensor& dout, const Tensor& inp);
  virtual void input_grad_through_gelu(Tensor& dpre, const Tensor& dout, const Tensor& inp,
                                       const Tensor& pre);
  virtual void weight_grad(const Tensor& dout, const Tensor& inp);

  int64_t in_features, out_features;
  Param* weight;
  Param* bias;  // null when built without bias
};

// What a linear is for in the model, so a parallelisation plan can choose its split.
enum class LinearRole {
  attn_qkv,   // packed q|k|v projection, [3C, C] (LLaMA's [(NH + 2 NKV) HS, C])
  attn_proj,  // attention output projection, [C, C]
  mlp_fc,     // MLP up projection, [4C, C]
  mlp_proj,   // MLP down projection, [C, 4C]
  // The LLaMA family's SwiGLU (core/layers/llama_block.h).
  mlp_gate_up,  // packed gate|up projection, [2F, C]
  mlp_down,     // down projection, [C, F]
};

// A linear's output dimension as tensors packed end to end, by their sizes: {C, C, C}
// for GPT-2's q|k|v, {NH HS, NKV HS, NKV HS} for grouped-query q|k|v, {F, F} for
// gate|up. A split of the outputs cuts every block alike (each rank its heads of q, of k
// and of v). Empty: one tensor.
using OutBlocks = std::vector<int64_t>;

// Makes the model's linears. The default makes plain (whole) ones; tensor parallelism
// supplies one that makes column- and row-parallel linears (parallel/tensor).
// It makes the tied token embedding / LM head too: that is the other matrix a
// parallelisation plan splits (by vocabulary rows), and one factory keeps the model's
// one seam for "how my layers are split" (GPT's constructor takes just this).
class LinearFactory {
 public:
  virtual ~LinearFactory() = default;
  virtual std::unique_ptr<Linear> make(ParamStore& store, const std::string& name, int64_t in,
                                       int64_t out, bool bias, float init_std, LinearRole role,
                                       const OutBlocks& out_blocks) const;
  // wte [V, C] and the head tied to it (core/layers/token_embedding.h), registered as
  // `name` ("lm_head" for an untied head); default whole.
  virtual std::unique_ptr<TokenEmbedding> make_token_embedding(ParamStore& store, int64_t V, int64_t C,
                                                               const std::string& name = "wte") const;
  // The rows of the residual stream ([N, C] for N = B*T positions) this model holds: all
  // of them, or under sequence parallelism this rank's N / tp (parallel/tensor/tp_regions.h).
  // The layers between the linears (norms, residual adds) then run on those rows only.
  virtual int64_t sequence_rows(int64_t N) const { return N; }
  // The model names each norm's parameters here: replicated, with gradients that sum
  // over the rows of the residual stream, so a plan that shards those rows must sum them
  // over its ranks. Nothing to do by default.
  virtual void add_norm_params(Param* weight, Param* bias) const {
    (void)weight;
    (void)bias;
  }
  // Expert parallelism: where MoE layers find the experts they do not hold
  // (core/layers/expert_exchange.h); null, the default, holds every expert locally. Set
  // by whoever builds the layout, on whichever factory the model gets.
  void set_expert_exchange(ExpertExchange* exchange) { experts_ = exchange; }
  ExpertExchange* expert_exchange() const { return experts_; }

 private:
  ExpertExchange* experts_ = nullptr;
};

// Per-row statistics a LayerNorm's forward saves for its backward. They belong to one
// micro-batch's activations, not to the layer, so several micro-batches can be in flight.
struct LayerNormStats {
  Tensor mean, rstd;  // [N]
};

class LayerNorm {
 public:
  LayerNorm(ParamStore& store, const std::string& name, int64_t C);
  void forward(Tensor& out, LayerNormStats& stats, const Tensor& inp);
  // sum = a + b (a residual add), then out = layernorm(sum), in one pass; backward is
  // backward(dinp, dout, sum, stats). sum may alias a or b.
  void forward_residual(Tensor& sum, Tensor& out, LayerNormStats& stats, const Tensor& a,
                        const Tensor& b);
  void backward(Tensor& dinp, const Tensor& dout, const Tensor& inp, const LayerNormStats& stats);

  Param* weight;
  Param* bias;
};

}  // namespace gpt
