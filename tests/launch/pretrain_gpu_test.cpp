// pretrain on a GPU (label gpu; skipped without one): bf16 mixed precision tracks the
// fp32 run within 2% at every 50th of the first 300 steps and is bit-deterministic.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "mixed_precision.h"

TEST(PretrainGpu, Bf16TracksFp32AndIsDeterministic) {
  if (!gpt::device_available(gpt::Device::CUDA)) GTEST_SKIP() << "no CUDA device";
  gpt::test::expect_bf16_tracks_fp32(
      " --train.device cuda --model.n_layer 4 --model.n_head 4 --model.n_embd 256 --model.block_size 256"
      " --train.seq_len 256 --train.micro_batch 8 --train.warmup 20 --train.lr 1e-3",
      300, 0.02);
}
