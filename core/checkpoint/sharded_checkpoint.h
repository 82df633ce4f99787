// Sharded checkpoints: every rank writes only what it owns, and any layout loads it.
//
// Format (version 2). A checkpoint is a directory run.dir/ckpt_<step, 8 digits>/ with
//   rank_<world rank, 5 digits>.h5   one per world rank, each written by that rank alone
//   COMPLETE                         the marker (marker.h), written last by rank 0
// Why one serial-HDF5 file per rank rather than one parallel-HDF5 file: Debian and the
// GPU machines ship serial HDF5; per-rank files need no collective I/O (a slow rank
// delays no other rank's writes); and a crash can only damage the crashing rank's own
// file, which the missing marker already disowns.
//
// A rank file holds "pieces": a piece is a contiguous range [begin, end) of the local
// (possibly sharded) tensor of one parameter, stored as one 1-D float32 dataset per kind
//   "<kind>:<global name>:<begin>"   kind = param | optim.m | optim.v
// with attributes name, kind, global_shape, shard = [dim, parts, index, blocks] and
// range = [begin, end) (a padded or unequal-block split is written as whole-tensor
// ranges, so the attribute only ever describes equal blocks). The file's own attributes are magic, format_version, rank,
// world, step, optim.t, data.state (int64 vector) and config (text). The scalars are in
// every rank file, not only rank 0's: they are a few hundred bytes, and so every file
// is self-describing (a consolidated checkpoint is simply one such file holding whole
// pieces, with the attribute complete = 1).
//
// Who writes what: data-parallel rank r of n writes the values, m and v of the flat
// element range shard_range(store.total(), n, r) of its ParamStore (with MoE experts,
// that share of the dense parameters, and its share of the experts' region over the
// ranks holding the same experts). Under ZeRO-1 that is
// exactly its optimizer shard; without it the rank holds the full moments but writes
// only that range. The write load is spread evenly and nothing is gathered.
//
// Loading maps both sides through for_each_global_run: for each local parameter the
// loader reads exactly the intersecting hyperslabs of the stored pieces, whatever
// sharding wrote them and whatever sharding reads them.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/adamw.h"
#include "core/checkpoint/hdf5_file.h"
#include "core/checkpoint/marker.h"
#include "core/checkpoint/tensor_map.h"
#include "core/param_store.h"

namespace gpt {

// The global (non-tensor) state of a checkpoint.
struct CheckpointScalars {
  int64_t step = 0;
  int64_t optim_t = 0;  // AdamW's step count
  std::vector<int64_t> data_state;
  std::string config;
};

// One parameter's part of an owned range: local elements [local_begin, local_end) of
// the parameter, found at element `at` of the owned range.
struct PieceInfo {
  std::string name;
  Shape global_shape;
  ShardSpec shard;
  int64_t local_begin = 0, local_end = 0;
  int64_t at = 0;
};

// What one rank writes: views into the live buffers (no copies), or host copies of
// them for an asynchronous save (snapshot_to_host).
struct OwnedState {
  std::vector<PieceInfo> pieces;
  Tensor values, m, v;  // each the owned range's elements; m, v undefined: no optimizer state
  CheckpointScalars scalars;
  int rank = 0, world = 1;
  int64_t elements() const { return values.defined() ? values.numel() : 0; }
};

// Flat elements [begin, end) of the store; the moments come from `adam`, whose range
// must contain [begin, end) (nullptr: parameters only).
OwnedState owned_state(const ParamStore& store, int64_t begin, int64_t end, AdamW* adam,
                       CheckpointScalars scalars, int rank, int world);
// Several owned ranges (expert parallelism: the dense parameters' share over dp and the
// experts' over the expert-data-parallel group), each with the optimizer holding it; one
// range gives views as above, several give host copies of their elements back to back.
struct OwnedRange {
  int64_t begin = 0, end = 0;
  AdamW* adam = nullptr;
};
OwnedState owned_state(const ParamStore& store, const std::vector<OwnedRange>& ranges, CheckpointScalars scalars,
                       int rank, int world);
// Host copies of the owned tensors (the asynchronous save writes from these).
OwnedState snapshot_to_host(const OwnedState& s);

struct SaveOptions {
  // Tensors not in host F32 memory are staged through a buffer of at most this many
  // elements (the DP bucket size); host F32 memory goes to HDF5 directly.
  int64_t staging_elems = int64_t(1) << 20;
  int delay_ms = 0;  // sleep between piece writes (debug.save_delay_ms, crash tests)
};

// Writes one rank file: <path>.tmp, fsync, rename (hdf5_file.h).
void write_rank_file(const std::string& path, const OwnedState& s, const SaveOptions& opt);
// Building blocks, shared with the consolidating tool.
void write_scalars(CheckpointWriter& w, const CheckpointScalars& s, int rank, int world);
void write_piece(CheckpointWriter& w, const std::string& kind, const PieceInfo& p, const float* host);

// A checkpoint opened for reading: a checkpoint directory (its marker must exist) or a
// single consolidated .h5 file. Construction reads metadata only.
class CheckpointSource {
 public:
  explicit CheckpointSource(const std::string& path);
  ~CheckpointSource();

  const std::string& path() const { return path_; }
  const CheckpointScalars& scalars() const { return scalars_; }
  const CheckpointMarker& marker() const { return marker_; }  // a file: world 1, one rank file
  bool consolidated() const { return consolidated_; }
  bool has_kind(const std::string& kind) const;
  std::vector<std::string> tensor_names() const;  // every parameter name, sorted
  Shape global_shape(const std::string& name) const;
  int piece_count(const std::string& name, const std::string& kind) const;
  // Elements the pieces of (name, kind) hold, summed over the pieces.
  int64_t stored_elements(const std::string& name, const std::string& kind) const;

  // Fills out[0, local_end - local_begin) with local elements [local_begin, local_end)
  // of the slice `spec` of tensor `name`, reading only the intersecting parts of the
  // stored pieces. Throws naming the file when the global shape differs or some element
  // is stored nowhere.
  void fill(const std::string& name, const std::string& kind, const Shape& global_shape,
            const ShardSpec& spec, int64_t local_begin, int64_t local_end, float* out) const;

 private:
  struct Piece {
    int file = 0;
    std::string dataset;
    Shape global_shape;
    ShardSpec shard;
    int64_t begin = 0, end = 0;
  };
  void index_file(int file);
  const CheckpointReader& reader(int file) const;

  std::string path_;
  bool consolidated_ = false;
  CheckpointMarker marker_;
  CheckpointScalars scalars_;
  std::vector<std::string> files_;
  mutable std::vector<std::unique_ptr<CheckpointReader>> readers_;
  std::map<std::pair<std::string, std::string>, std::vector<Piece>> pieces_;  // (name, kind)
};

// Every parameter's local tensor of `store`, whole. The caller refreshes compute copies.
void load_params(const CheckpointSource& src, ParamStore& store);
// The moments of adam's range [begin, end) and its step count.
void load_optimizer(const CheckpointSource& src, const ParamStore& store, AdamW& adam);

// Every parameter as a whole global tensor (for consolidation and export).
TensorMap read_global_params(const std::string& path);
// A single-file checkpoint with parameters only (no optimizer state), written atomically
// with complete = 1; resume it with run.init_from.
void write_params_checkpoint(const std::string& path, const TensorMap& params,
                             const CheckpointScalars& scalars);

}  // namespace gpt
