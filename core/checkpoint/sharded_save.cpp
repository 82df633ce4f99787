// The writing half of sharded_checkpoint.h.
#include <algorithm>
#include <chrono>
#include <thread>

#include "core/checkpoint/sharded_checkpoint.h"
#include "core/error.h"
#include "core/ops.h"

namespace gpt {

OwnedState owned_state(const ParamStore& store, int64_t begin, int64_t end, AdamW* adam,
                       CheckpointScalars scalars, int rank, int world) {
  GPT_CHECK(0 <= begin && begin <= end && end <= store.total(), "owned_state: bad range");
  OwnedState s;
  s.scalars = std::move(scalars);
  s.rank = rank;
  s.world = world;
  for (int i = 0; i < store.size(); ++i) {
    const Param& p = store.at(i);
    const int64_t lo = std::max(begin, p.offset), hi = std::min(end, p.offset + p.numel());
    if (lo >= hi) continue;
    if (!p.shard.padded_split() && p.shard.block_sizes.empty()) {
      s.pieces.push_back(PieceInfo{p.name, p.global_shape, p.shard, lo - p.offset, hi - p.offset, lo - begin});
      continue;
    }
    // A padded split (the vocabulary-parallel wte) or one of unequal blocks (grouped-query
    // q|k|v) is stored as ranges of the whole tensor, padding left out: files never show
    // either, so they read back under any tp (or none) and the format needs no field for them.
    for_each_global_run(p.global_shape, p.shard, lo - p.offset, hi - p.offset, [&](int64_t l, int64_t g, int64_t n) {
      s.pieces.push_back(PieceInfo{p.name, p.global_shape, ShardSpec{}, g, g + n, p.offset + l - begin});
    });
  }
  if (end == begin) return s;
  // Views into the flat buffers: nothing is copied.
  s.values = const_cast<ParamStore&>(store).flat_values().slice(begin, {end - begin});
  if (adam) {
    GPT_CHECK(adam->begin() <= begin && end <= adam->end(),
              "owned_state: the optimizer holds [" + std::to_string(adam->begin()) + ", " +
                  std::to_string(adam->end()) + "), not the owned range");
    s.m = adam->m().slice(begin - adam->begin(), {end - begin});
    s.v = adam->v().slice(begin - adam->begin(), {end - begin});
  }
  return s;
}

OwnedState owned_state(const ParamStore& store, const std::vector<OwnedRange>& ranges, CheckpointScalars scalars,
                       int rank, int world) {
  GPT_CHECK(!ranges.empty(), "owned_state: no range");
  if (ranges.size() == 1)
    return owned_state(store, ranges[0].begin, ranges[0].end, ranges[0].adam, std::move(scalars), rank, world);
  OwnedState all;
  all.scalars = std::move(scalars);
  all.rank = rank, all.world = world;
  int64_t n = 0;
  for (const OwnedRange& r : ranges) n += r.end - r.begin;
  const bool moments = ranges[0].adam != nullptr;
  for (Tensor* t : {&all.values, &all.m, &all.v})
    if (t == &all.values || moments) *t = empty({std::max<int64_t>(1, n)}, DType::F32, Device::CPU);
  int64_t at = 0;
  for (const OwnedRange& r : ranges) {
    GPT_CHECK((r.adam != nullptr) == moments, "owned_state: some ranges without an optimizer");
    const OwnedState one = owned_state(store, r.begin, r.end, r.adam, {}, rank, world);
    for (PieceInfo p : one.pieces) {
      p.at += at;
      all.pieces.push_back(std::move(p));
    }
    if (one.elements() > 0)
      for (auto [dst, src] : {std::pair{&all.values, &one.values}, std::pair{&all.m, &one.m}, std::pair{&all.v, &one.v}})
        if (src->defined()) {
          Tensor part = dst->slice(at, {one.elements()});
          copy_(part, *src);
        }
    at += r.end - r.begin;
  }
  if (n == 0) all.values = all.m = all.v = Tensor();
  return all;
}

OwnedState snapshot_to_host(const OwnedState& s) {
  OwnedState c = s;
  for (Tensor* t : {&c.values, &c.m, &c.v})
    if (t->defined()) {
      Tensor host = empty(t->shape, DType::F32, Device::CPU);
      copy_(host, *t);
      *t = host;
    }
  return c;
}

void write_scalars(CheckpointWriter& w, const CheckpointScalars& s, int rank, int world) {
  w.attr("rank", int64_t(rank));
  w.attr("world", int64_t(world));
  w.attr("step", s.step);
  w.attr("optim.t", s.optim_t);
  w.attr("data.state", s.data_state);
  w.attr("config", s.config);
}

namespace {
std::string piece_dataset(const std::string& kind, const PieceInfo& p) {
  return kind + ":" + p.name + ":" + std::to_string(p.local_begin);
}

void create_piece(CheckpointWriter& w, const std::string& kind, const PieceInfo& p) {
  const std::string ds = piece_dataset(kind, p);
  w.create_1d(ds, p.local_end - p.local_begin);
  w.attr("name", p.name, ds);
  w.attr("kind", kind, ds);
  w.attr("global_shape", std::vector<int64_t>(p.global_shape.begin(), p.global_shape.end()), ds);
  const ShardSpec sh = p.shard.sharded() ? p.shard : ShardSpec{};
  w.attr("shard", std::vector<int64_t>{sh.dim, sh.parts, sh.index, sh.blocks}, ds);
  w.attr("range", std::vector<int64_t>{p.local_begin, p.local_end}, ds);
}

// Host F32 memory goes to HDF5 as it is; anything else through `staging` in chunks.
void write_piece_from(CheckpointWriter& w, const std::string& kind, const PieceInfo& p,
                      const Tensor& owned, std::vector<float>& staging, int64_t staging_elems) {
  create_piece(w, kind, p);
  const std::string ds = piece_dataset(kind, p);
  const int64_t n = p.local_end - p.local_begin;
  if (owned.device == Device::CPU && owned.dtype == DType::F32) {
    w.write_range(ds, 0, owned.f32() + p.at, n);
    return;
  }
  GPT_CHECK(owned.dtype == DType::F32, "checkpoint: master values and moments must be F32");
  const int64_t chunk = std::max<int64_t>(1, staging_elems);
  staging.resize(size_t(std::min(chunk, n)));
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t c = std::min(chunk, n - off);
    Tensor part = owned.slice(p.at + off, {c});
    ops_for(owned.device).copy_to_host(staging.data(), part.raw(), size_t(c) * sizeof(float));
    w.write_range(ds, off, staging.data(), c);
  }
}
}  // namespace

void write_piece(CheckpointWriter& w, const std::string& kind, const PieceInfo& p, const float* host) {
  create_piece(w, kind, p);
  w.write_range(piece_dataset(kind, p), 0, host, p.local_end - p.local_begin);
}

void write_rank_file(const std::string& path, const OwnedState& s, const SaveOptions& opt) {
  CheckpointWriter w(path);
  write_scalars(w, s.scalars, s.rank, s.world);
  std::vector<float> staging;
  const std::pair<const char*, const Tensor*> kinds[] = {{"param", &s.values}, {"optim.m", &s.m}, {"optim.v", &s.v}};
  for (const PieceInfo& p : s.pieces)
    for (const auto& [kind, t] : kinds) {
      if (!t->defined()) continue;
      write_piece_from(w, kind, p, *t, staging, opt.staging_elems);
      if (opt.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(opt.delay_ms));
    }
  w.commit();
}

}  // namespace gpt
