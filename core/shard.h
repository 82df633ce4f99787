// Which part of a global tensor one rank holds. A parameter has one global name and
// global shape on every layout; tensor parallelism gives each rank a slice of one
// dimension, and this spec says which. Pure index arithmetic, no devices or ranks.
//
// The sharded dimension is seen as `blocks` equal blocks, each cut into `parts` equal
// contiguous pieces; the holder of part `index` keeps that piece of every block. With
// blocks = 1 this is a plain contiguous split. Packed tensors need blocks > 1: GPT-2's
// qkv weight [3C, C] is q|k|v along dim 0, and a rank owning heads [h0, h1) holds those
// heads' rows of q, of k and of v (blocks = 3), which no contiguous slice gives.
// Grouped-query attention packs unequal blocks (q holds NH heads, k and v NKV each):
// block_sizes then lists each block's size along `dim`, and each block is cut into
// `parts` pieces as above, so a rank holds the same share of every block.
//
// A padded split (padded > 0, blocks = 1 only) first extends the dimension to `padded`
// entries at its end, then cuts that. The vocabulary-parallel embedding needs it: V rows
// rarely divide by tp (GPT-2's 50,257 is prime), so wte is split as Vp = padded rows and
// the last part(s) hold rows past V. Those padding elements exist only in the local
// tensor: they map to no global element (for_each_global_run skips them), so
// initialisation leaves them at init_value and checkpoints never see them.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace gpt {

struct ShardSpec {
  ShardSpec() = default;
  ShardSpec(int dim_, int parts_, int index_, int blocks_ = 1, int64_t padded_ = 0,
            std::vector<int64_t> block_sizes_ = {})
      : dim(dim_), parts(parts_), index(index_), blocks(blocks_), padded(padded_),
        block_sizes(std::move(block_sizes_)) {}

  int dim = -1;    // the split dimension; -1: the whole tensor (not sharded)
  int parts = 1;   // the dimension's blocks are each cut into this many pieces ...
  int index = 0;   // ... and this holder keeps piece `index` of each
  int blocks = 1;  // equal blocks along `dim` (3 for a packed q|k|v)
  int64_t padded = 0;  // the split dim's size after padding at its end; 0: not padded
  std::vector<int64_t> block_sizes;  // unequal blocks, summing to the dim; empty: `blocks` equal ones

  bool padded_split() const { return sharded() && padded > 0; }

  bool sharded() const { return dim >= 0 && parts > 1; }
  bool operator==(const ShardSpec& o) const;
  bool operator!=(const ShardSpec& o) const { return !(*this == o); }
  std::string describe() const;  // "whole" or "dim 0 part 1/4 of 3 blocks"
};

// The split of a dimension packed from blocks of these sizes (q|k|v, gate|up) into `parts`,
// holder `index`: equal blocks as `blocks`, unequal ones as block_sizes.
ShardSpec packed_split(int dim, int parts, int index, const std::vector<int64_t>& sizes);

// The local shape; throws gpt::Error naming `what` when the split does not divide (or a
// padding is smaller than the dimension, or combined with blocks > 1).
Shape shard_shape(const Shape& global, const ShardSpec& spec, const std::string& what = "tensor");

// Calls fn(local_offset, global_offset, count) for the runs of consecutive elements that
// the local elements [local_begin, local_end) (row-major flat indices of the shard) map
// to in the global tensor, in local order. A whole tensor is one run. Padding elements of
// a padded split map to nothing: no run covers them.
template <class F>
void for_each_global_run(const Shape& global, const ShardSpec& spec, int64_t local_begin,
                         int64_t local_end, F&& fn) {
  if (local_begin >= local_end) return;
  if (!spec.sharded()) {
    fn(local_begin, local_begin, local_end - local_begin);
    return;
  }
  // The global tensor as [outer, G, inner] around the split dim, the shard [outer, g, inner]
  // with g = G / parts; one local row of the split dim (inner elements) is contiguous in both.
  int64_t inner = 1;
  for (size_t d = size_t(spec.dim) + 1; d < global.size(); ++d) inner *= global[d];
  // G: the real size (global offsets); Gp: the size that is cut (padded or G).
  const int64_t G = global[size_t(spec.dim)], Gp = spec.padded > 0 ? spec.padded : G, g = Gp / spec.parts;
  const int64_t block = Gp / spec.blocks, piece = block / spec.parts;  // rows per block / per piece
  // Local row j of the split dim: its global row and the rows left in its piece.
  auto locate = [&](int64_t j, int64_t& row, int64_t& rows_left) {
    if (spec.block_sizes.empty()) {
      row = (j / piece) * block + int64_t(spec.index) * piece + j % piece;
      rows_left = piece - j % piece;
      return;
    }
    int64_t local0 = 0, global0 = 0;  // where the current block starts, locally and globally
    for (int64_t size : spec.block_sizes) {
      const int64_t p = size / spec.parts;
      if (j < local0 + p) {
        row = global0 + int64_t(spec.index) * p + (j - local0);
        rows_left = p - (j - local0);
        return;
      }
      local0 += p, global0 += size;
    }
    row = G, rows_left = 1;  // unreachable for a valid spec (shard_shape checked it)
  };
  int64_t i = local_begin;
  while (i < local_end) {
    const int64_t o = i / (g * inner), j = (i / inner) % g, k = i % inner;
    int64_t row = 0, rows_left = 0;
    locate(j, row, rows_left);
    // Rows of one piece are adjacent globally too: extend the run to the piece's end.
    const int64_t n = std::min(local_end - i, rows_left * inner - k);
    if (row >= G) {  // padding (blocks = 1: the rest of this piece is padding too)
      i += n;
      continue;
    }
    // A run never crosses from real rows into padding.
    const int64_t real = std::min(n, (G - row) * inner - k);
    fn(i, (o * G + row) * inner + k, real);
    i += real;
  }
}

}  // namespace gpt
