// Per-op microbenchmark (not a test): each op of the ops table at the shapes of one GPT-2
// training step, timed on one device, so that gpu_op_bench.py can set it beside the
// PyTorch op on the same device and show WHICH op is slow (gpu_train_bench.py only gives
// the whole step).
//
//   op_bench --device cuda --dtype bf16 [--B 16 --T 1024 --C 768 --NH 12 --V 50304 --L 12]
//            [--iters 20 --warmup 3 --ops matmul_forward,attention_backward]
//
// Each op gets fresh random inputs on the device (freed after it, so only one op's
// buffers exist at a time), `warmup` untimed calls, then `iters` calls timed with
// std::chrono between two ops.synchronize(). One line per op:
//   OP {"op": "matmul_forward.qkv", "shape": "...", "ms": mean per call, "bytes": b, "flops": f}
// bytes: the op's nominal memory traffic (each tensor read or written once; accumulated
// F32 gradients count a read and a write); flops: its nominal FLOPs (0 where memory-bound).
// --ops keeps the ops whose name, or name before the '.', is in the comma list.
//
// Dtypes as in training (core/ops.h): activations and the weights' compute copies in
// --dtype, parameter gradients, LayerNorm statistics, lse and losses F32, AdamW over F32.
// Ops that accumulate into gradients simply keep accumulating over the calls.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "core/model/gpt.h"
#include "core/model/gpt_config.h"
#include "core/ops.h"
#include "core/tensor.h"

using namespace gpt;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string device = "cpu", dtype = "f32", ops;
  int64_t B = 16, T = 1024, C = 768, NH = 12, V = 50304, L = 12;
  int iters = 20, warmup = 3;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "op_bench: %s (see op_bench --help)\n", why.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  namespace po = boost::program_options;
  Args a;
  po::options_description opts("op_bench: each op of the ops table at GPT-2 step shapes");
  opts.add_options()
      ("help,h", "this text")
      ("device", po::value(&a.device)->default_value(a.device), "cpu | cuda")
      ("dtype", po::value(&a.dtype)->default_value(a.dtype), "f32 | bf16 (activations)")
      ("B", po::value(&a.B)->default_value(a.B), "micro-batch")
      ("T", po::value(&a.T)->default_value(a.T), "sequence length")
      ("C", po::value(&a.C)->default_value(a.C), "model width")
      ("NH", po::value(&a.NH)->default_value(a.NH), "attention heads")
      ("V", po::value(&a.V)->default_value(a.V), "vocabulary")
      ("L", po::value(&a.L)->default_value(a.L), "blocks (sizes AdamW's parameter count)")
      ("iters", po::value(&a.iters)->default_value(a.iters), "timed calls per op")
      ("warmup", po::value(&a.warmup)->default_value(a.warmup), "untimed calls per op")
      ("ops", po::value(&a.ops)->default_value(a.ops), "comma list of ops or op families; empty: all");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    usage(e.what());
  }
  if (vm.count("help")) {
    std::ostringstream text;
    text << opts;
    std::fputs(text.str().c_str(), stdout);
    std::exit(0);
  }
  if (a.device != "cpu" && a.device != "cuda") usage("--device must be cpu or cuda");
  if (a.dtype != "f32" && a.dtype != "bf16") usage("--dtype must be f32 or bf16");
  if (a.B < 1 || a.T < 1 || a.C < 1 || a.NH < 1 || a.V < 1 || a.L < 1 || a.iters < 1 ||
      a.warmup < 0 || a.C % a.NH != 0)
    usage("shapes and --iters must be positive and C a multiple of NH");
  return a;
}

// One op, ready to call: its buffers live in the closure until the Case is dropped.
struct Case {
  Case(std::string shape, double bytes, double flops)
      : shape(std::move(shape)), bytes(bytes), flops(flops) {}
  std::string shape;
  double bytes, flops;
  std::function<void()> call;
};

struct Bench {
  const Args& a;
  const Ops& ops;
  Device dev;
  DType act;
  double es;  // bytes per activation element
  uint64_t seed = 1;

  // Uniform in [lo, hi): a cheap generator, since AdamW's tensors hold ~10^8 values.
  Tensor rand(Shape s, DType dt, float lo = -1.f, float hi = 1.f) {
    Tensor t = empty(std::move(s), dt, dev);
    std::vector<float> host(size_t(t.numel()));
    uint64_t x = 0x9E3779B97F4A7C15ull * ++seed;
    for (float& v : host) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      v = lo + (hi - lo) * float(x >> 40) * (1.f / float(1 << 24));
    }
    from_host_f32(t, host.data());
    return t;
  }
  Tensor ids(int64_t n, int64_t V) {
    Tensor host = empty({n}, DType::I32, Device::CPU);
    uint64_t x = 0x2545F4914F6CDD1Dull * ++seed;
    for (int64_t i = 0; i < n; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      host.i32()[i] = int32_t(x % uint64_t(V));
    }
    return to_device(host, dev);
  }
  Tensor f32(Shape s) { return rand(std::move(s), DType::F32); }
  Tensor acts(Shape s) { return rand(std::move(s), act); }

  // out[N,OC] = inp[N,K] @ w[OC,K]^T (+ b)
  Case matmul_forward(int64_t N, int64_t K, int64_t OC, bool bias) {
    Tensor out = acts({N, OC}), inp = acts({N, K}), w = acts({OC, K}), b = acts({OC});
    Case c{shape_str({N, K}) + "x" + shape_str({OC, K}) + (bias ? "+b" : ""),
           es * double(N * K + OC * K + N * OC + (bias ? OC : 0)), 2.0 * N * K * OC};
    c.call = [=, ops = ops]() mutable { ops.matmul_forward(out, inp, w, bias ? &b : nullptr); };
    return c;
  }
  // dinp (overwritten) and dweight, dbias (F32, accumulated); gelu: through gelu'(pre) too.
  Case matmul_backward(int64_t N, int64_t K, int64_t OC, bool bias, bool gelu) {
    Tensor dinp = acts({N, K}), dout = acts({N, OC}), inp = acts({N, K}), w = acts({OC, K});
    Tensor pre = acts({N, K}), dw = f32({OC, K}), db = f32({OC});
    Case c{shape_str({N, K}) + "x" + shape_str({OC, K}) + (bias ? "+b" : ""),  // the layer, as forward
           es * double(N * OC + 2 * N * K + OC * K + (gelu ? N * K : 0)) +
               8.0 * double(OC * K + (bias ? OC : 0)),
           4.0 * N * K * OC};
    c.call = [=, ops = ops]() mutable {
      if (gelu) ops.matmul_gelu_backward(dinp, dw, bias ? &db : nullptr, dout, inp, w, pre);
      else ops.matmul_backward(&dinp, dw, bias ? &db : nullptr, dout, inp, w);
    };
    return c;
  }
  Case cross_entropy(int64_t R, int64_t V) {
    Tensor losses = f32({R}), logits = acts({R, V}), targets = ids(R, V);
    Case c{shape_str({R, V}), 2 * es * double(R * V) + 8.0 * R, 0};
    c.call = [=, ops = ops]() mutable { ops.cross_entropy_forward_backward(losses, logits, targets, 1.f / R); };
    return c;
  }
  Case attention(bool backward) {
    const int64_t B = a.B, T = a.T, C = a.C, NH = a.NH, N = B * T;
    Tensor qkv = acts({B, T, 3 * C}), out = acts({B, T, C}), lse = f32({B, NH, T});
    Tensor dqkv = acts({B, T, 3 * C}), dout = acts({B, T, C});
    const int nh = int(NH);
    if (backward) ops.attention_forward(out, lse, qkv, nh);  // a consistent out and lse
    // Causal: QK^T and PV each 2·T·T·HS per head, half of it masked; backward is 2.5x.
    const double fwd = 2.0 * B * T * T * C;
    Case c{"qkv " + shape_str({B, T, 3 * C}) + " NH " + std::to_string(NH),
           es * double(4 * N * C) + 4.0 * B * NH * T, fwd};
    if (backward) c.bytes = es * double(8 * N * C) + 4.0 * B * NH * T, c.flops = 2.5 * fwd;
    c.call = [=, ops = ops]() mutable {
      if (backward) ops.attention_backward(dqkv, dout, out, lse, qkv, nh);
      else ops.attention_forward(out, lse, qkv, nh);
    };
    return c;
  }
  Case layernorm(int kind) {  // 0 forward, 1 residual + forward, 2 backward
    const int64_t N = a.B * a.T, C = a.C;
    Tensor out = acts({N, C}), inp = acts({N, C}), b2 = acts({N, C}), sum = acts({N, C});
    Tensor w = acts({C}), bias = acts({C}), mean = f32({N}), rstd = rand({N}, DType::F32, 0.5f, 2.f);
    Tensor dinp = acts({N, C}), dw = f32({C}), db = f32({C});
    const double nc = double(N * C), stats = 8.0 * N, wb = 2 * es * C;
    Case c{shape_str({N, C}), es * 2 * nc + stats + wb, 0};
    if (kind == 1) c.bytes = es * 4 * nc + stats + wb;
    if (kind == 2) c.bytes = es * 4 * nc + stats + es * C + 16.0 * C;  // dinp accumulates
    c.call = [=, ops = ops]() mutable {
      if (kind == 0) ops.layernorm_forward(out, mean, rstd, inp, w, bias);
      if (kind == 1) ops.residual_layernorm_forward(sum, out, mean, rstd, inp, b2, w, bias);
      if (kind == 2) ops.layernorm_backward(dinp, dw, db, out, inp, w, mean, rstd);
    };
    return c;
  }
  Case elementwise(bool gelu) {
    const int64_t N = a.B * a.T, n = gelu ? N * 4 * a.C : N * a.C;
    Tensor out = acts({n}), x = acts({n}), y = acts({n});
    Case c{shape_str({N, gelu ? 4 * a.C : a.C}), es * double(gelu ? 2 * n : 3 * n), 0};
    c.call = [=, ops = ops]() mutable {
      if (gelu) ops.gelu_forward(out, x);
      else ops.add(out, x, y);
    };
    return c;
  }
  Case optimizer(int64_t P, bool adamw) {
    Tensor param = f32({P}), grad = f32({P}), m = f32({P}), v = rand({P}, DType::F32, 0.f, 1e-4f);
    Case c{shape_str({P}), adamw ? 28.0 * P : 4.0 * P, 0};
    int64_t step = 0;
    c.call = [=, ops = ops]() mutable {
      if (adamw) ops.adamw_update(param, grad, m, v, AdamWArgs{6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, ++step});
      else (void)ops.sum_squares(grad);
    };
    return c;
  }
  Case encoder(bool backward) {
    const int64_t B = a.B, T = a.T, C = a.C, V = a.V, N = B * T;
    Tensor out = acts({B, T, C}), tokens = ids(N, V).view({B, T}), wte = acts({V, C}), wpe = acts({T, C});
    Tensor dwte = f32({V, C}), dwpe = f32({T, C});
    Case c{"tokens " + shape_str({B, T}) + " wte " + shape_str({V, C}),
           4.0 * N + es * double(2 * N * C + T * C), 0};
    if (backward) c.bytes = 4.0 * N + es * double(N * C) + 8.0 * double(N * C + T * C);
    c.call = [=, ops = ops]() mutable {
      if (backward) ops.encoder_backward(dwte, dwpe, out, tokens);
      else ops.encoder_forward(out, tokens, wte, wpe);
    };
    return c;
  }
};

std::string json_escaped(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch == '\n' ? ' ' : ch;
  }
  return out;
}

bool wanted(const std::string& filter, const std::string& name) {
  if (filter.empty()) return true;
  const std::string family = name.substr(0, name.find('.'));
  size_t start = 0;
  while (start <= filter.size()) {
    size_t end = filter.find(',', start);
    if (end == std::string::npos) end = filter.size();
    const std::string item = filter.substr(start, end - start);
    if (item == name || item == family) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const Device dev = a.device == "cuda" ? Device::CUDA : Device::CPU;
  if (!device_available(dev)) {
    std::fprintf(stderr, "op_bench: no %s device (built without CUDA, or no GPU present)\n",
                 a.device.c_str());
    return 1;
  }
  const Ops& ops = ops_for(dev);
  const DType act = a.dtype == "bf16" ? DType::BF16 : DType::F32;
  Bench b{a, ops, dev, act, double(dtype_size(act))};
  const int64_t N = a.B * a.T, C = a.C, V = a.V, R = head_chunk_rows(N, V);
  GPTConfig cfg;
  cfg.n_layer = int(a.L), cfg.n_head = int(a.NH), cfg.n_embd = int(C), cfg.vocab_size = int(V);
  cfg.block_size = int(a.T);
  const int64_t P = cfg.num_params();

  using Make = std::function<Case()>;
  const std::vector<std::pair<std::string, Make>> cases = {
      {"encoder_forward", [&] { return b.encoder(false); }},
      {"layernorm_forward", [&] { return b.layernorm(0); }},
      {"matmul_forward.qkv", [&] { return b.matmul_forward(N, C, 3 * C, true); }},
      {"attention_forward", [&] { return b.attention(false); }},
      {"matmul_forward.attn_proj", [&] { return b.matmul_forward(N, C, C, true); }},
      {"residual_layernorm_forward", [&] { return b.layernorm(1); }},
      {"matmul_forward.fc", [&] { return b.matmul_forward(N, C, 4 * C, true); }},
      {"gelu_forward", [&] { return b.elementwise(true); }},
      {"matmul_forward.mlp_proj", [&] { return b.matmul_forward(N, 4 * C, C, true); }},
      {"add", [&] { return b.elementwise(false); }},
      {"matmul_forward.head", [&] { return b.matmul_forward(R, C, V, false); }},
      {"cross_entropy_forward_backward", [&] { return b.cross_entropy(R, V); }},
      {"matmul_backward.head", [&] { return b.matmul_backward(R, C, V, false, false); }},
      {"matmul_gelu_backward.mlp_proj", [&] { return b.matmul_backward(N, 4 * C, C, true, true); }},
      {"matmul_backward.mlp_proj", [&] { return b.matmul_backward(N, 4 * C, C, true, false); }},
      {"matmul_backward.fc", [&] { return b.matmul_backward(N, C, 4 * C, true, false); }},
      {"layernorm_backward", [&] { return b.layernorm(2); }},
      {"matmul_backward.attn_proj", [&] { return b.matmul_backward(N, C, C, true, false); }},
      {"attention_backward", [&] { return b.attention(true); }},
      {"matmul_backward.qkv", [&] { return b.matmul_backward(N, C, 3 * C, true, false); }},
      {"encoder_backward", [&] { return b.encoder(true); }},
      {"sum_squares", [&] { return b.optimizer(P, false); }},
      {"adamw_update", [&] { return b.optimizer(P, true); }},
  };

  std::printf("op_bench: %s %s B=%lld T=%lld C=%lld NH=%lld V=%lld L=%lld head rows %lld params %lld, "
              "%d warmup + %d timed calls\n",
              ops.name, dtype_name(act), (long long)a.B, (long long)a.T, (long long)C,
              (long long)a.NH, (long long)V, (long long)a.L, (long long)R, (long long)P,
              a.warmup, a.iters);
  int ran = 0;
  for (const auto& [name, make] : cases) {
    if (!wanted(a.ops, name)) continue;
    try {
      Case c = make();
      for (int i = 0; i < a.warmup; ++i) c.call();
      ops.synchronize();
      const auto t0 = Clock::now();
      for (int i = 0; i < a.iters; ++i) c.call();
      ops.synchronize();
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / a.iters;
      std::printf("OP {\"op\": \"%s\", \"shape\": \"%s\", \"ms\": %.6g, \"bytes\": %.0f, \"flops\": %.0f}\n",
                  name.c_str(), c.shape.c_str(), ms, c.bytes, c.flops);
    } catch (const std::exception& e) {  // say which op failed, keep the others' numbers
      std::printf("OP {\"op\": \"%s\", \"error\": \"%s\"}\n", name.c_str(), json_escaped(e.what()).c_str());
    }
    std::fflush(stdout);
    ++ran;
  }
  if (ran == 0) usage("--ops '" + a.ops + "' matches no op");
  return 0;
}
