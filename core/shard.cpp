#include "core/shard.h"

#include <algorithm>
#include <functional>

#include "core/error.h"

namespace gpt {

bool ShardSpec::operator==(const ShardSpec& o) const {
  if (!sharded() && !o.sharded()) return true;
  return dim == o.dim && parts == o.parts && index == o.index && blocks == o.blocks &&
         padded == o.padded && block_sizes == o.block_sizes;
}

std::string ShardSpec::describe() const {
  if (!sharded()) return "whole";
  std::string s = "dim " + std::to_string(dim) + " part " + std::to_string(index) + "/" +
                  std::to_string(parts);
  if (!block_sizes.empty()) {
    s += " of blocks ";
    for (size_t b = 0; b < block_sizes.size(); ++b) s += (b ? "+" : "") + std::to_string(block_sizes[b]);
  } else if (blocks > 1) {
    s += " of " + std::to_string(blocks) + " blocks";
  }
  if (padded > 0) s += " padded to " + std::to_string(padded);
  return s;
}

ShardSpec packed_split(int dim, int parts, int index, const std::vector<int64_t>& sizes) {
  ShardSpec s{dim, parts, index, std::max<int>(1, int(sizes.size()))};
  // Equal blocks keep the compact form (and the checkpoint attribute it writes).
  if (std::adjacent_find(sizes.begin(), sizes.end(), std::not_equal_to<>()) != sizes.end()) s.block_sizes = sizes;
  return s;
}

Shape shard_shape(const Shape& global, const ShardSpec& spec, const std::string& what) {
  if (!spec.sharded()) return global;
  GPT_CHECK(spec.dim < int(global.size()), what + ": shard dim " + std::to_string(spec.dim) +
                                               " but the tensor has shape " + shape_str(global));
  GPT_CHECK(spec.blocks >= 1 && spec.index >= 0 && spec.index < spec.parts,
            what + ": bad shard " + spec.describe());
  GPT_CHECK(spec.padded == 0 || (spec.blocks == 1 && spec.padded >= global[size_t(spec.dim)]),
            what + ": bad padded shard " + spec.describe() + " of shape " + shape_str(global) +
                " (padding must not shrink the dimension, and needs blocks = 1)");
  const int64_t G = spec.padded > 0 ? spec.padded : global[size_t(spec.dim)];
  if (!spec.block_sizes.empty()) {
    GPT_CHECK(spec.padded == 0 && spec.blocks == int(spec.block_sizes.size()),
              what + ": bad shard " + spec.describe() + " (unequal blocks: no padding, blocks = their count)");
    int64_t sum = 0;
    for (int64_t size : spec.block_sizes) {
      GPT_CHECK(size > 0 && size % spec.parts == 0,
                what + ": block of " + std::to_string(size) + " rows in dimension " + std::to_string(spec.dim) +
                    " of shape " + shape_str(global) + " does not split into " + std::to_string(spec.parts) + " parts");
      sum += size;
    }
    GPT_CHECK(sum == G, what + ": blocks " + spec.describe() + " do not add up to dimension " +
                            std::to_string(spec.dim) + " of shape " + shape_str(global));
    Shape local = global;
    local[size_t(spec.dim)] = G / spec.parts;
    return local;
  }
  GPT_CHECK(G % (int64_t(spec.blocks) * spec.parts) == 0,
            what + ": dimension " + std::to_string(spec.dim) + " of shape " + shape_str(global) +
                (spec.padded > 0 ? " padded to " + std::to_string(spec.padded) : "") +
                " does not split into " + std::to_string(spec.parts) + " parts" +
                (spec.blocks > 1 ? " of each of " + std::to_string(spec.blocks) + " blocks" : ""));
  Shape local = global;
  local[size_t(spec.dim)] = G / spec.parts;
  return local;
}

}  // namespace gpt
