// The safetensors format (Hugging Face's tensor file), written and read without the
// safetensors library: an 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {"format": "pt"}, "<name>": {"dtype": "F32", "shape": [..],
//    "data_offsets": [begin, end]}, ...}
// (space-padded to a multiple of 8), then the tensors' raw little-endian bytes, with
// offsets counted from the first byte after the header.
#pragma once
#include <string>

#include "core/checkpoint/tensor_map.h"

namespace gpt {

// Writes `tensors` as F32 to `path` (replaced). Deterministic: tensors in name order,
// fixed key order, no timestamps, so the same tensors always give the same bytes. Not
// atomic by itself: callers write to a temporary name and rename.
void safetensors_write(const std::string& path, const TensorMap& tensors);

// Reads every tensor of `path` as float (F32, or BF16/F16 widened exactly). Validated
// strictly, each failure one gpt::Error naming the file and, where one is at fault, the
// tensor: a header length beyond the file, bad JSON, an unknown or unsupported dtype, a
// shape whose size disagrees with its byte range, ranges out of bounds, overlapping,
// leaving gaps or not ending at the end of the file.
TensorMap safetensors_read(const std::string& path);

}  // namespace gpt
