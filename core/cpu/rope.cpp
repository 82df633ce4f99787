// Rotary position embedding of the q and k heads in packed qkv [B, T, (NH + 2 NKV) HS]
// (layout and pairing convention: core/ops.h, rope_forward). Backward is the same
// rotation by the opposite angle, so both entries share rope_rotate.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/cpu/cpu_kernels.h"
#include "core/error.h"

namespace gpt::cpu {

namespace {

// sign +1 rotates by +angle (forward), -1 by -angle (backward). out may alias inp: each
// pair is read whole before either element is written.
void rope_rotate(Tensor& out, const Tensor& inp, const RopeArgs& r, float sign, const char* op) {
  check_f32(inp, op, "inp");
  const int64_t heads = int64_t(r.n_head) + 2 * int64_t(r.n_kv_head);
  GPT_CHECK(inp.ndim() == 3 && r.n_kv_head > 0 && r.n_head % r.n_kv_head == 0 &&
                inp.dim(2) % heads == 0,
            std::string(op) + ": qkv " + shape_str(inp.shape) + " is not [B, T, (NH + 2 NKV) HS] for NH " +
                std::to_string(r.n_head) + ", NKV " + std::to_string(r.n_kv_head));
  GPT_CHECK(out.numel() == inp.numel(), std::string(op) + ": out " + shape_str(out.shape) +
                                            " differs from qkv " + shape_str(inp.shape));
  const int64_t B = inp.dim(0), T = inp.dim(1), W = inp.dim(2), HS = W / heads, half = HS / 2;
  GPT_CHECK(HS % 2 == 0, std::string(op) + ": head size " + std::to_string(HS) +
                             " is odd; rotary embedding rotates pairs of dimensions");
  // cos and sin per (t, i), angles in double: fp32 (pos * freq) loses ~1e-4 rad at pos 2^13.
  std::vector<float> cs(size_t(T * half)), sn(size_t(T * half));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(double(r.theta), -double(2 * i) / double(HS));
      const double angle = double(r.pos_offset + t) * inv_freq;
      cs[size_t(t * half + i)] = float(std::cos(angle));
      sn[size_t(t * half + i)] = sign * float(std::sin(angle));
    }
  const int64_t rotated = (int64_t(r.n_head) + r.n_kv_head) * HS;  // q and k: v follows
  const float* x = inp.f32();
  float* y = out.f32();
  const bool in_place = x == y;
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < B * T; ++bt) {
    const float* c = cs.data() + (bt % T) * half;
    const float* s = sn.data() + (bt % T) * half;
    const float* xr = x + size_t(bt) * W;
    float* yr = y + size_t(bt) * W;
    for (int64_t h0 = 0; h0 < rotated; h0 += HS)
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = xr[h0 + i], x2 = xr[h0 + i + half];
        yr[h0 + i] = x1 * c[i] - x2 * s[i];
        yr[h0 + i + half] = x2 * c[i] + x1 * s[i];
      }
    if (!in_place) std::memcpy(yr + rotated, xr + rotated, size_t(W - rotated) * sizeof(float));
  }
}

}  // namespace

void rope_forward(Tensor& out, const Tensor& qkv, const RopeArgs& args) {
  rope_rotate(out, qkv, args, 1.f, "rope_forward");
}

void rope_backward(Tensor& dqkv, const Tensor& dout, const RopeArgs& args) {
  rope_rotate(dqkv, dout, args, -1.f, "rope_backward");
}

}  // namespace gpt::cpu
