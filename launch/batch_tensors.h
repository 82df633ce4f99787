// A data batch of [B, T+1] token rows as the model's inputs: the first T tokens of each
// row, and the targets shifted by one. Shared by the trainer and the pipeline runner.
#pragma once
#include "core/tensor.h"
#include "data/batch.h"

namespace gpt {

// Copies the rows of `b` into inputs and/or targets (I32 [B, T], any device); a null
// pointer skips that half (a pipeline's middle stages need neither).
void load_batch(const data::Batch& b, Tensor* inputs, Tensor* targets);

}  // namespace gpt
