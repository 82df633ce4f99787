// Token + learned position embedding, forward and a deterministic backward.
//
// Backward without atomics: dwpe[t] is a sum over the batch, one thread per (t, c),
// in batch order. For dwte, the (token, position) pairs are sorted by token with a
// stable radix sort, so each token's positions form one segment in increasing order;
// one block per segment start sums its rows in that order. The same tokens therefore
// give bit-identical dwte on every run, whatever the scheduling.
//
// Token ids are range-checked without waiting (token_check.cu): the error comes at the
// next call that synchronizes, after these kernels have run. So they bound the ids
// themselves: a bad id gives a zero row forward and no dwte row backward, never an
// access outside wte.
#include <cub/device/device_radix_sort.cuh>

#include "core/cuda/cuda_common.cuh"

namespace gpt::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kSegmentThreads = 128;  // channels in flight per vocabulary-row block
}  // namespace

// ---- kernels ----

template <class T>
__global__ void encoder_forward_kernel(T* out, const int32_t* tokens, AnyFloat wte, AnyFloat wpe,
                                       int T_, int C, unsigned V, size_t total) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t bt = i / size_t(C);
    const int c = int(i % size_t(C));
    const int t = int(bt % size_t(T_));
    const unsigned tok = unsigned(tokens[bt]);  // a negative id wraps to >= V
    out[i] = tok < V ? from_float<T>(wte.load(size_t(tok) * C + c) + wpe.load(size_t(t) * C + c))
                     : from_float<T>(0.f);
  }
}

// dwpe[t, c] += sum_b dout[b, t, c], summed in b order.
template <class T>
__global__ void encoder_backward_wpe_kernel(AnyFloat dwpe, const T* dout, int B, int T_, int C) {
  const size_t n = size_t(T_) * C;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int b = 0; b < B; ++b) acc += to_float(dout[size_t(b) * n + i]);
    dwpe.add(i, acc);
  }
}

// Sort input: keys are the token ids, values the flat positions 0..N-1. A bad id gets
// the key V: the sort, on the bits that hold 0..V, puts those positions in one segment
// after every real token (on its raw bits it could split a real token's segment).
__global__ void encoder_sort_input_kernel(unsigned* keys, unsigned* positions,
                                          const int32_t* tokens, int N, unsigned V) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N) {
    const unsigned tok = unsigned(tokens[i]);
    keys[i] = tok < V ? tok : V;
    positions[i] = unsigned(i);
  }
}

// The key bits the radix sort orders by, [0, sort_key_bits(V)): enough for every key
// 0..V, so that the order on them is the order of the keys (fewer bits, faster sort).
inline int sort_key_bits(int64_t V) {
  int bits = 1;
  while (bits < 32 && (int64_t(1) << bits) <= V) ++bits;
  return bits;
}

// One block per sorted index; only the first index of each token's segment works: it
// sums the segment's dout rows in position order into dwte[token].
template <class T>
__global__ void encoder_backward_wte_kernel(AnyFloat dwte, const T* dout, const unsigned* keys,
                                            const unsigned* positions, int N, int C,
                                            unsigned V) {
  const int start = blockIdx.x;
  const unsigned token = keys[start];
  // token == V: the bad ids' segment (encoder_sort_input_kernel), not a row of dwte.
  if (token >= V || (start > 0 && keys[start - 1] == token)) return;
  int end = start + 1;
  while (end < N && keys[end] == token) ++end;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float acc = 0.f;
    for (int j = start; j < end; ++j) acc += to_float(dout[size_t(positions[j]) * C + c]);
    dwte.add(size_t(token) * C + c, acc);
  }
}

// The vocabulary-slice lookup (encoder_slice_forward): ids in [vocab_begin, vocab_begin
// + Vs) read their row of the slice, the others give zeros; wpe only where has_wpe. An id
// past V inside the slice's range reads a padding row (zeros): never out of bounds.
template <class T>
__global__ void encoder_slice_forward_kernel(T* out, const int32_t* tokens, AnyFloat wte,
                                             AnyFloat wpe, bool has_wpe, int T_, int C,
                                             long long vocab_begin, long long Vs, size_t total) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t bt = i / size_t(C);
    const int c = int(i % size_t(C));
    const int t = int(bt % size_t(T_));
    const long long row = (long long)tokens[bt] - vocab_begin;
    float v = row >= 0 && row < Vs ? wte.load(size_t(row) * C + c) : 0.f;
    if (has_wpe) v += wpe.load(size_t(t) * C + c);
    out[i] = from_float<T>(v);
  }
}

// As encoder_sort_input_kernel for a slice: the key is the id's row of the slice, or Vs
// for an id outside it (one segment after every row, which encoder_backward_wte_kernel
// skips as it skips bad ids).
__global__ void encoder_slice_sort_input_kernel(unsigned* keys, unsigned* positions,
                                                const int32_t* tokens, int N, long long vocab_begin,
                                                unsigned Vs) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N) {
    const long long row = (long long)tokens[i] - vocab_begin;
    keys[i] = row >= 0 && row < (long long)Vs ? unsigned(row) : Vs;
    positions[i] = unsigned(i);
  }
}

// ---- launchers ----

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  const char* op = "encoder_forward";
  check_float(out, op, "out");
  check_float(wte, op, "wte");
  check_float(wpe, op, "wpe");
  check_dtype(tokens, DType::I32, op, "tokens");
  const int64_t B = tokens.dim(0), T = tokens.dim(1), V = wte.dim(0), C = wte.dim(1);
  if (T > wpe.dim(0))
    fail("cuda encoder_forward: sequence length " + std::to_string(T) +
         " exceeds the position table (" + std::to_string(wpe.dim(0)) + ")");
  check_numel(out, B * T * C, op, "out");
  check_numel(wpe, wpe.dim(0) * C, op, "wpe");
  // Reported at the next synchronizing call; the kernel bounds the ids meanwhile.
  check_token_range(tokens, V, false, op, "token");
  const size_t total = size_t(B * T * C);
  if (total == 0) return;
  dispatch_float(out.dtype, op, [&](auto tag) {
    using Act = typename decltype(tag)::type;
    encoder_forward_kernel<Act><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
        out.data<Act>(), tokens.i32(), any_float(wte), any_float(wpe), int(T), int(C), unsigned(V),
        total);
    GPT_LAUNCH_CHECK(op, "encoder_forward_kernel");
  });
}

namespace {

// encoder_backward for rows [vocab_begin, vocab_begin + rows of dwte) of the vocabulary:
// the whole table (vocab_begin 0, every id checked to be one of its rows) or a slice.
void encoder_backward_rows(const char* op, Tensor& dwte, Tensor& dwpe, const Tensor& dout,
                           const Tensor& tokens, bool slice, int64_t vocab_begin) {
  check_float(dout, op, "dout");
  check_float(dwte, op, "dwte");
  // dwpe undefined (encoder_slice_backward only): a model without learned positions.
  const bool positions = dwpe.defined();
  if (positions) check_float(dwpe, op, "dwpe");
  check_dtype(tokens, DType::I32, op, "tokens");
  const int64_t B = tokens.dim(0), T = tokens.dim(1), V = dwte.dim(0), C = dwte.dim(1);
  const int64_t N = B * T;
  check_numel(dout, N * C, op, "dout");
  if (positions && (dwpe.dim(-1) != C || dwpe.numel() < T * C))
    fail(std::string("cuda ") + op + ": dwpe " + shape_str(dwpe.shape) + " does not hold " +
         std::to_string(T) + " positions of width " + std::to_string(C));
  if (N == 0 || C == 0) return;

  // Scratch: keys and positions in and out of the sort, then CUB's temporary storage.
  const int end_bit = sort_key_bits(V);
  size_t cub_bytes = 0;
  GPT_CUDA_CHECK(op, cub::DeviceRadixSort::SortPairs(nullptr, cub_bytes, (unsigned*)nullptr,
                                                     (unsigned*)nullptr, (unsigned*)nullptr,
                                                     (unsigned*)nullptr, int(N), 0, end_bit,
                                                     stream()));
  const size_t vec = align_up(size_t(N) * sizeof(unsigned));
  char* base = static_cast<char*>(scratch(4 * vec + cub_bytes, op));
  unsigned* keys_in = reinterpret_cast<unsigned*>(base);
  unsigned* keys_out = reinterpret_cast<unsigned*>(base + vec);
  unsigned* pos_in = reinterpret_cast<unsigned*>(base + 2 * vec);
  unsigned* pos_out = reinterpret_cast<unsigned*>(base + 3 * vec);
  void* cub_tmp = base + 4 * vec;

  const unsigned blocks = unsigned((N + kThreads - 1) / kThreads);
  if (slice) {
    encoder_slice_sort_input_kernel<<<blocks, kThreads, 0, stream()>>>(
        keys_in, pos_in, tokens.i32(), int(N), (long long)vocab_begin, unsigned(V));
    GPT_LAUNCH_CHECK(op, "encoder_slice_sort_input_kernel");
  } else {
    encoder_sort_input_kernel<<<blocks, kThreads, 0, stream()>>>(keys_in, pos_in, tokens.i32(),
                                                                 int(N), unsigned(V));
    GPT_LAUNCH_CHECK(op, "encoder_sort_input_kernel");
  }
  GPT_CUDA_CHECK(op, cub::DeviceRadixSort::SortPairs(cub_tmp, cub_bytes, keys_in, keys_out,
                                                     pos_in, pos_out, int(N), 0, end_bit,
                                                     stream()));
  dispatch_float(dout.dtype, op, [&](auto tag) {
    using Act = typename decltype(tag)::type;
    encoder_backward_wte_kernel<Act><<<unsigned(N), kSegmentThreads, 0, stream()>>>(
        any_float(dwte), dout.data<Act>(), keys_out, pos_out, int(N), int(C), unsigned(V));
    GPT_LAUNCH_CHECK(op, "encoder_backward_wte_kernel");
    if (!positions) return;
    const size_t n = size_t(T * C);
    encoder_backward_wpe_kernel<Act><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
        any_float(dwpe), dout.data<Act>(), int(B), int(T), int(C));
    GPT_LAUNCH_CHECK(op, "encoder_backward_wpe_kernel");
  });
}

}  // namespace

void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  encoder_backward_rows("encoder_backward", dwte, dwpe, dout, tokens, false, 0);
}

void encoder_slice_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor* wpe,
                           int64_t vocab_begin, int64_t V) {
  const char* op = "encoder_slice_forward";
  check_float(out, op, "out");
  check_float(wte, op, "wte");
  if (wpe) check_float(*wpe, op, "wpe");
  check_dtype(tokens, DType::I32, op, "tokens");
  const int64_t B = tokens.dim(0), T = tokens.dim(1), Vs = wte.dim(0), C = wte.dim(1);
  if (wpe && (T > wpe->dim(0) || wpe->dim(-1) != C))
    fail("cuda encoder_slice_forward: wpe " + shape_str(wpe->shape) + " does not hold " +
         std::to_string(T) + " positions of width " + std::to_string(C));
  check_numel(out, B * T * C, op, "out");
  // Against the whole vocabulary, reported at the next synchronizing call.
  check_token_range(tokens, V, false, op, "token");
  const size_t total = size_t(B * T * C);
  if (total == 0) return;
  const AnyFloat pos = wpe ? any_float(*wpe) : AnyFloat{nullptr, false};
  dispatch_float(out.dtype, op, [&](auto tag) {
    using Act = typename decltype(tag)::type;
    encoder_slice_forward_kernel<Act><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
        out.data<Act>(), tokens.i32(), any_float(wte), pos, wpe != nullptr, int(T), int(C),
        (long long)vocab_begin, (long long)Vs, total);
    GPT_LAUNCH_CHECK(op, "encoder_slice_forward_kernel");
  });
}

void encoder_slice_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens,
                            int64_t vocab_begin) {
  encoder_backward_rows("encoder_slice_backward", dwte, dwpe, dout, tokens, true, vocab_begin);
}

}  // namespace gpt::cuda
