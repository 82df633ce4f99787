// Conversion between our GPT-2 parameters and the Hugging Face GPT2LMHeadModel layout
// (config.json + model.safetensors), so published GPT-2 weights can seed pretraining
// and our models load in `transformers`.
//
// Our names -> Hugging Face names (L layers, C = n_embd):
//   wte [V, C], wpe [block_size, C]            transformer.wte.weight, transformer.wpe.weight
//   blocks.l.ln1.*, ln2.*, lnf.*               transformer.h.l.ln_1.*, ln_2.*, transformer.ln_f.*
//   blocks.l.attn.qkv.weight [3C, C]           transformer.h.l.attn.c_attn.weight [C, 3C]
//   blocks.l.attn.proj.weight [C, C]           transformer.h.l.attn.c_proj.weight [C, C]
//   blocks.l.mlp.fc.weight [4C, C]             transformer.h.l.mlp.c_fc.weight [C, 4C]
//   blocks.l.mlp.proj.weight [C, 4C]           transformer.h.l.mlp.c_proj.weight [4C, C]
// Our linear weights are [out, in] (y = x W^T + b); Hugging Face's Conv1D stores [in, out]
// (y = x W + b), so the four matmul weights are transposed; biases are the same. The LM
// head is tied to wte on both sides, so no lm_head.weight is written.
#pragma once
#include <string>
#include <utility>

#include "core/checkpoint/tensor_map.h"
#include "core/model/gpt_config.h"

namespace gpt {

// Every parameter of a GPT-2 of shape `cfg`, by our global name, with its global shape.
std::map<std::string, Shape> gpt2_param_shapes(const GPTConfig& cfg);

// Writes dir/config.json and dir/model.safetensors (dir is created if needed), each
// under a temporary name and renamed when complete. `params` must hold exactly the
// tensors gpt2_param_shapes(cfg) names. Deterministic: the same input gives the same bytes.
void export_hf_gpt2(const TensorMap& params, const GPTConfig& cfg, const std::string& dir);

// Reads dir/config.json and dir/model.safetensors into our config and parameter names.
// Accepts names with or without the "transformer." prefix (the published
// openai-community/gpt2 file has none), F32/BF16/F16 data, ignores the attn.bias and
// attn.masked_bias buffers, and accepts lm_head.weight only when it equals wte. Rejects,
// naming the file and key or tensor: model_type other than gpt2, an activation other than
// gelu_new / gelu_pytorch_tanh, a computation we do not implement (layer_norm_epsilon
// other than 1e-5, untied head, n_inner other than 4*n_embd, attention scaling variants),
// missing, unknown or wrongly shaped tensors.
std::pair<GPTConfig, TensorMap> import_hf_gpt2(const std::string& dir);

}  // namespace gpt
