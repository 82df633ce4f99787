// The inline PTX of attention_mma.cu, each instruction in a small wrapper: mma.sync
// m16n8k16 (bf16 in, fp32 accumulate), ldmatrix x4 (plain and .trans) and cp.async with
// its commit and wait. Kept apart so that the kernels hold no assembly at all: the CUDA
// emulator tests (tests/cuda_emu) leave this header out (extract_kernels.cmake drops the
// #include of every core/cuda/*_ptx.cuh) and cuda_emulator.h defines the same six
// functions, with the same signatures and the semantics the PTX ISA documents (ISA 8.x,
// "Warp Level Matrix Multiply-Accumulate Instructions": 9.7.14.5.8 "Matrix Fragments for
// mma.m16n8k16 with floating point type", 9.7.14.5.15 "ldmatrix"; 9.7.9.25 "cp.async").
// The fragment layouts the kernels rely on are spelled out in attention_mma.cu.
#pragma once
#include <cstdint>

#include "core/cuda/cuda_common.cuh"

// bf16 mma.sync and cp.async need sm_80 or newer; attention_mma.cu compiles its kernels
// to a trap below that and calls none of these there.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
namespace gpt::cuda {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// d += a b (16x8x16, bf16 in, fp32 accumulate).
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// p: this lane's row address (shared memory, 16-byte aligned).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// 16 bytes global -> shared, asynchronously; zeros when !valid (src is not read then).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace gpt::cuda
#endif
