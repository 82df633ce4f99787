// The reading half of sharded_checkpoint.h: index the pieces of every rank file
// (metadata only), then read exactly the hyperslabs each local tensor needs.
#include <algorithm>
#include <filesystem>
#include <limits>

#include "core/checkpoint/sharded_checkpoint.h"
#include "core/error.h"

namespace gpt {

namespace fs = std::filesystem;

namespace {
struct Run {
  int64_t local, global, n;
};
std::vector<Run> global_runs(const Shape& g, const ShardSpec& spec, int64_t begin, int64_t end) {
  std::vector<Run> runs;
  for_each_global_run(g, spec, begin, end, [&](int64_t l, int64_t gl, int64_t n) { runs.push_back({l, gl, n}); });
  return runs;
}
ShardSpec spec_from(const std::vector<int64_t>& v) {
  ShardSpec s;
  if (v.size() == 4) s = ShardSpec{int(v[0]), int(v[1]), int(v[2]), int(v[3])};
  return s;
}

// A piece's header, checked before any arithmetic or read uses it: a damaged file ends in
// an error naming it, never in an overflow or a read outside the tensor.
void check_piece(const CheckpointReader& r, const std::string& ds, const std::vector<int64_t>& g,
                 const std::vector<int64_t>& shard, const std::vector<int64_t>& range) {
  auto bad = [&](const std::string& what) {
    fail("checkpoint " + r.path() + ": piece '" + ds + "' has " + what +
         " (file damaged?); resume from an earlier checkpoint");
  };
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max(), kMaxInt = std::numeric_limits<int>::max();
  int64_t numel = 1;
  for (int64_t d : g) {
    if (d < 0 || (d > 0 && numel > kMax / d)) bad("a bad global_shape");
    numel *= d;
  }
  if (shard.size() == 4 && (shard[0] < -1 || shard[0] >= int64_t(g.size()) || shard[1] < 1 || shard[1] > kMaxInt ||
                            shard[2] < 0 || shard[2] >= shard[1] || shard[3] < 1 || shard[3] > kMaxInt))
    bad("a bad shard");
  const Shape local = shard_shape(Shape(g.begin(), g.end()), spec_from(shard), "checkpoint " + r.path() + " piece '" + ds + "'");
  int64_t local_numel = 1;
  for (int64_t d : local) local_numel *= d;
  if (range.size() != 2 || range[0] < 0 || range[1] < range[0] || range[1] > local_numel ||
      r.shape(ds) != Shape{range[1] - range[0]})
    bad("a bad range");
}
}  // namespace

CheckpointSource::CheckpointSource(const std::string& path) : path_(path) {
  if (fs::is_directory(path)) {
    marker_ = read_marker(path);  // throws "incomplete checkpoint" without the marker
    for (int r = 0; r < marker_.rank_files; ++r) {
      const std::string f = (fs::path(path) / rank_file_name(r)).string();
      if (!fs::exists(f))
        fail("checkpoint " + path + ": rank file " + rank_file_name(r) + " listed by the marker (" +
             std::to_string(marker_.rank_files) + " files) is missing; restore it or resume from an earlier checkpoint");
      files_.push_back(f);
    }
  } else {
    if (!fs::exists(path)) fail("checkpoint " + path + ": no such file or directory");
    files_.push_back(path);
    marker_.format_version = kCheckpointFormatVersion;
    marker_.rank_files = 1;
  }
  readers_.resize(files_.size());
  for (int f = 0; f < int(files_.size()); ++f) index_file(f);
  const CheckpointReader& first = reader(0);
  if (!fs::is_directory(path)) {
    consolidated_ = true;
    if (!first.has_attr("complete") || first.attr_int("complete") != 1)
      fail("checkpoint " + path + ": a single-file checkpoint without complete = 1 (an unfinished "
           "consolidation?); write it again with `ckpt consolidate`");
    marker_.step = first.attr_int("step");
  }
  scalars_.step = first.attr_int("step");
  scalars_.optim_t = first.attr_int("optim.t");
  scalars_.data_state = first.attr_ints("data.state");
  scalars_.config = first.attr_str("config");
}

CheckpointSource::~CheckpointSource() = default;

const CheckpointReader& CheckpointSource::reader(int file) const {
  if (!readers_[size_t(file)]) readers_[size_t(file)] = std::make_unique<CheckpointReader>(files_[size_t(file)]);
  return *readers_[size_t(file)];
}

void CheckpointSource::index_file(int file) {
  const CheckpointReader& r = reader(file);
  for (const std::string& ds : r.datasets()) {
    if (!r.has_attr("kind", ds)) continue;
    Piece p;
    p.file = file;
    p.dataset = ds;
    const std::vector<int64_t> g = r.attr_ints("global_shape", ds), range = r.attr_ints("range", ds),
                               shard = r.attr_ints("shard", ds);
    check_piece(r, ds, g, shard, range);
    p.global_shape = Shape(g.begin(), g.end());
    p.shard = spec_from(shard);
    p.begin = range[0];
    p.end = range[1];
    pieces_[{r.attr_str("name", ds), r.attr_str("kind", ds)}].push_back(std::move(p));
  }
}

bool CheckpointSource::has_kind(const std::string& kind) const {
  for (const auto& [key, v] : pieces_)
    if (key.second == kind) return true;
  return false;
}

std::vector<std::string> CheckpointSource::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [key, v] : pieces_)
    if (key.second == "param") names.push_back(key.first);
  return names;
}

Shape CheckpointSource::global_shape(const std::string& name) const {
  auto it = pieces_.find({name, "param"});
  if (it == pieces_.end()) fail("checkpoint " + path_ + ": no tensor '" + name + "'");
  return it->second.front().global_shape;
}

int64_t CheckpointSource::stored_elements(const std::string& name, const std::string& kind) const {
  int64_t n = 0;
  auto it = pieces_.find({name, kind});
  if (it != pieces_.end())
    for (const Piece& p : it->second)  // saturating: each piece fits int64, their sum may not
      n = p.end - p.begin > std::numeric_limits<int64_t>::max() - n ? std::numeric_limits<int64_t>::max()
                                                                    : n + (p.end - p.begin);
  return n;
}

int CheckpointSource::piece_count(const std::string& name, const std::string& kind) const {
  auto it = pieces_.find({name, kind});
  return it == pieces_.end() ? 0 : int(it->second.size());
}

void CheckpointSource::fill(const std::string& name, const std::string& kind, const Shape& global_shape,
                            const ShardSpec& spec, int64_t local_begin, int64_t local_end, float* out) const {
  if (local_begin >= local_end) return;
  auto it = pieces_.find({name, kind});
  if (it == pieces_.end())
    fail("checkpoint " + path_ + ": no '" + kind + "' of tensor '" + name + "'" +
         (kind == "param" ? " (a different model?): resume with the config that wrote it"
                          : " (saved without optimizer state?): start from it with run.init_from"));
  const std::vector<Run> want = global_runs(global_shape, spec, local_begin, local_end);
  std::vector<std::pair<int64_t, int64_t>> covered;  // [begin, end) of out
  // The padding of a padded split (the gaps between the runs) is in no file: zeros.
  auto pad = [&](int64_t from, int64_t to) {
    if (from >= to) return;
    std::fill(out + from, out + to, 0.f);
    covered.emplace_back(from, to);
  };
  int64_t at = 0;
  for (const Run& w : want) {
    pad(at, w.local - local_begin);
    at = w.local - local_begin + w.n;
  }
  pad(at, local_end - local_begin);
  for (const Piece& p : it->second) {
    if (p.global_shape != global_shape)
      fail("checkpoint " + files_[size_t(p.file)] + ": tensor '" + name + "' has global shape " +
           shape_str(p.global_shape) + ", the config gives " + shape_str(global_shape) +
           ": resume with the config that wrote it");
    std::vector<Run> have = global_runs(p.global_shape, p.shard, p.begin, p.end);
    std::sort(have.begin(), have.end(), [](const Run& a, const Run& b) { return a.global < b.global; });
    for (const Run& w : want) {
      // The first stored run ending after w starts, then every run starting before w ends.
      auto h = std::partition_point(have.begin(), have.end(), [&](const Run& r) { return r.global + r.n <= w.global; });
      for (; h != have.end() && h->global < w.global + w.n; ++h) {
        const int64_t lo = std::max(w.global, h->global), hi = std::min(w.global + w.n, h->global + h->n);
        const int64_t dst = w.local - local_begin + (lo - w.global);
        reader(p.file).read_range(p.dataset, h->local - p.begin + (lo - h->global), hi - lo, out + dst);
        covered.emplace_back(dst, dst + hi - lo);
      }
    }
  }
  std::sort(covered.begin(), covered.end());
  int64_t reached = 0;
  for (const auto& [b, e] : covered) {
    if (b > reached) break;
    reached = std::max(reached, e);
  }
  if (reached < local_end - local_begin)
    fail("checkpoint " + path_ + ": elements of '" + kind + "' of tensor '" + name + "' (local element " +
         std::to_string(local_begin + reached) + " of shard " + spec.describe() +
         ") are in no rank file (a rank file missing or from another save?); resume from an earlier checkpoint");
}

void load_params(const CheckpointSource& src, ParamStore& store) {
  std::vector<float> host;
  for (int i = 0; i < store.size(); ++i) {
    Param& p = store.at(i);
    host.resize(size_t(p.numel()));
    src.fill(p.name, "param", p.global_shape, p.shard, 0, p.numel(), host.data());
    from_host_f32(p.value, host.data());
  }
}

void load_optimizer(const CheckpointSource& src, const ParamStore& store, AdamW& adam) {
  if (!src.has_kind("optim.m"))
    fail("checkpoint " + src.path() + " holds no optimizer state (parameters only); start from it with "
         "run.init_from instead of resuming");
  std::vector<float> host;
  for (int i = 0; i < store.size(); ++i) {
    const Param& p = store.at(i);
    const int64_t lo = std::max(adam.begin(), p.offset), hi = std::min(adam.end(), p.offset + p.numel());
    if (lo >= hi) continue;  // outside this rank's optimizer range: nothing read
    host.resize(size_t(hi - lo));
    for (const char* kind : {"optim.m", "optim.v"}) {
      src.fill(p.name, kind, p.global_shape, p.shard, lo - p.offset, hi - p.offset, host.data());
      Tensor dst = (kind[6] == 'm' ? adam.m() : adam.v()).slice(lo - adam.begin(), {hi - lo});
      from_host_f32(dst, host.data());
    }
  }
  adam.set_t(src.scalars().optim_t);
}

TensorMap read_global_params(const std::string& path) {
  CheckpointSource src(path);
  TensorMap out;
  for (const std::string& name : src.tensor_names()) {
    HostTensor& t = out[name];
    t.shape = src.global_shape(name);
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;  // no overflow: index_file checked every global shape
    // Pieces holding fewer elements than the shape cannot cover it: refused before the
    // whole tensor is allocated, so a damaged shape cannot ask for more than the file holds.
    if (src.stored_elements(name, "param") < n)
      fail("checkpoint " + path + ": the pieces of tensor '" + name + "' hold fewer elements than its global shape " +
           shape_str(t.shape) + " (file damaged?)");
    t.data.resize(size_t(n));
    src.fill(name, "param", t.shape, ShardSpec{}, 0, n, t.data.data());
  }
  return out;
}

void write_params_checkpoint(const std::string& path, const TensorMap& params, const CheckpointScalars& scalars) {
  CheckpointWriter w(path);
  write_scalars(w, scalars, 0, 1);
  for (const auto& [name, t] : params) {
    const int64_t n = int64_t(t.data.size());
    write_piece(w, "param", PieceInfo{name, t.shape, ShardSpec{}, 0, n, 0}, t.data.data());
  }
  w.attr("complete", int64_t(1));
  w.commit();
}

}  // namespace gpt
