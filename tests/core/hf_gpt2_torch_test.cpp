// Our GPT-2 exported to the Hugging Face layout gives the logits of an independent
// GPT-2 written in that layout (tests/torch_ref/hf_gpt2_logits.py, float64 PyTorch,
// reading the files with struct + json only), and import/export round-trips exactly.
//
// Tolerance: max|ours - ref| / max|ref| <= 1e-5 over all logits, as in
// torch_equality_test.cpp: our model computes in fp32, the reference in fp64.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/checkpoint/hf_gpt2.h"
#include "core/model/gpt.h"
#include "core/param_store.h"

namespace gpt {
namespace {

namespace fs = std::filesystem;

constexpr double kRelTol = 1e-5;

// The model's logits [B, T, V] for tokens [B, T], flattened. The only place this test
// touches the forward API, so an API change is a one-line change here.
std::vector<float> logits_of(GPT& model, const Tensor& tokens) {
  std::unique_ptr<Activations> acts = model.make_activations();
  model.forward(*acts, tokens, nullptr);
  return to_host_f32(acts->output);
}

TensorMap params_of(ParamStore& store) {
  TensorMap m;
  for (int i = 0; i < store.size(); ++i) {
    const Param& p = store.at(i);
    m[p.name] = {p.global_shape, to_host_f32(p.value)};
  }
  return m;
}

std::string bytes_of(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<double> read_h5_dataset(const std::string& path, const char* name) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return {};
  const hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  const hid_t s = H5Dget_space(d);
  std::vector<double> out(size_t(H5Sget_simple_extent_npoints(s)));
  H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data());
  H5Sclose(s);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

TEST(HfGpt2Torch, ExportedLogitsMatchPyTorchAndRoundTripIsExact) {
  // Awkward shape: head size 15, V and T not powers of two, unused position rows.
  GPTConfig cfg;
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 60, cfg.vocab_size = 509, cfg.block_size = 23;
  const int64_t B = 3, T = 19;
  ParamStore store;
  GPT model(cfg, store);
  store.materialize(Device::CPU);
  store.init(1234);
  // Init leaves biases 0 and LayerNorm gains 1, which would hide a swapped or
  // mis-transposed bias or gain: perturb every parameter.
  std::mt19937 gen(99);
  std::normal_distribution<float> noise(0.f, 0.05f);
  for (int i = 0; i < store.size(); ++i) {
    std::vector<float> v = to_host_f32(store.at(i).value);
    for (float& x : v) x += noise(gen);
    from_host_f32(store.at(i).value, v.data());
  }
  store.sync_compute();
  const TensorMap params = params_of(store);

  Tensor tokens = empty({B, T}, DType::I32);
  std::uniform_int_distribution<int32_t> token(0, cfg.vocab_size - 1);
  for (int64_t i = 0; i < B * T; ++i) tokens.i32()[i] = token(gen);
  tokens.i32()[0] = 0, tokens.i32()[1] = cfg.vocab_size - 1;  // both ends of wte

  const fs::path dir = fs::temp_directory_path() / ("hf_gpt2_torch_test_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string first = (dir / "first").string(), second = (dir / "second").string();
  export_hf_gpt2(params, cfg, first);

  // 1. Logits against the PyTorch GPT-2 in the Hugging Face layout.
  const std::string tokens_file = (dir / "tokens.txt").string(), out = (dir / "logits.h5").string();
  {
    std::ofstream f(tokens_file);
    f << B << " " << T << "\n";
    for (int64_t i = 0; i < B * T; ++i) f << tokens.i32()[i] << (i % T == T - 1 ? "\n" : " ");
  }
  const std::string cmd = std::string("'") + TORCH_PYTHON + "' '" + HF_LOGITS_SCRIPT + "' --model '" +
                          first + "' --tokens '" + tokens_file + "' --out '" + out + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "failed: " << cmd;
  const std::vector<double> ref = read_h5_dataset(out, "logits");
  const std::vector<float> ours = logits_of(model, tokens);
  ASSERT_EQ(ref.size(), size_t(B * T * cfg.vocab_size)) << out << ": no logits [B, T, V]";
  ASSERT_EQ(ours.size(), ref.size());
  double diff = 0.0, scale = 1e-30;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::fabs(double(ours[i]) - ref[i]));
    scale = std::max(scale, std::fabs(ref[i]));
  }
  std::printf("  max rel err logits vs PyTorch (HF layout)  %.3e  (max |logit| %.3f)\n", diff / scale, scale);
  EXPECT_LE(diff / scale, kRelTol);

  // 2. Import gives back exactly our tensors, and exporting them again the same bytes.
  const auto [cfg2, imported] = import_hf_gpt2(first);
  EXPECT_EQ(cfg2.n_layer, cfg.n_layer);
  EXPECT_EQ(cfg2.n_head, cfg.n_head);
  EXPECT_EQ(cfg2.n_embd, cfg.n_embd);
  EXPECT_EQ(cfg2.vocab_size, cfg.vocab_size);
  EXPECT_EQ(cfg2.block_size, cfg.block_size);
  ASSERT_EQ(imported.size(), params.size());
  for (const auto& [name, t] : params) {
    ASSERT_TRUE(imported.count(name)) << name;
    EXPECT_EQ(imported.at(name).shape, t.shape) << name;
    EXPECT_TRUE(imported.at(name).data == t.data) << name << " changed in the round trip";
  }
  export_hf_gpt2(imported, cfg2, second);
  EXPECT_TRUE(bytes_of(first + "/model.safetensors") == bytes_of(second + "/model.safetensors"));
  EXPECT_EQ(bytes_of(first + "/config.json"), bytes_of(second + "/config.json"));

  // 3. A model loaded from the import computes bit-identical logits.
  ParamStore store2;
  GPT model2(cfg2, store2);
  store2.materialize(Device::CPU);
  for (int i = 0; i < store2.size(); ++i)
    from_host_f32(store2.at(i).value, imported.at(store2.at(i).name).data.data());
  store2.sync_compute();
  EXPECT_TRUE(logits_of(model2, tokens) == ours);

  fs::remove_all(dir);
}

}  // namespace
}  // namespace gpt
