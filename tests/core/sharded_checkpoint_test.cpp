// Sharded checkpoints without MPI: fake "ranks" are ParamStores holding different
// slices of the same global parameters; each writes its rank file, and a third layout
// loads the checkpoint. Then every error a damaged checkpoint can produce.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "core/checkpoint/sharded_checkpoint.h"
#include "core/error.h"

namespace gpt {
namespace {

namespace fs = std::filesystem;

// A distinct exact value for every (tensor, kind, global element).
float expected(const std::string& name, int kind, int64_t g) {
  return float(name.size() * 1000 + size_t(kind) * 100000) + float(g) * 0.5f;
}

// Three parameters; `spec(name)` picks the slice this store holds.
struct FakeRank {
  ParamStore store;
  std::unique_ptr<AdamW> adam;
  FakeRank(const std::function<ShardSpec(const std::string&)>& spec, int64_t adam_begin = 0, int64_t adam_end = -1,
           Shape w_shape = {6, 4}) {
    store.add("w", w_shape, true, 0.02f, 0.f, spec("w"));
    store.add("blocks.0.qkv", {6, 4}, true, 0.02f, 0.f, spec("blocks.0.qkv"));
    store.add("b", {12}, false, 0.f, 0.f, spec("b"));
    store.materialize(Device::CPU);
    adam = std::make_unique<AdamW>(store, AdamWConfig{}, adam_begin, adam_end);
  }
  // Fills values and moments from `expected` through the global index.
  void fill() {
    for (int i = 0; i < store.size(); ++i) {
      Param& p = store.at(i);
      for_each_global_run(p.global_shape, p.shard, 0, p.numel(), [&](int64_t l, int64_t g, int64_t n) {
        for (int64_t k = 0; k < n; ++k) {
          const int64_t flat = p.offset + l + k;
          p.value.f32()[l + k] = expected(p.name, 0, g + k);
          if (flat >= adam->begin() && flat < adam->end()) {
            adam->m().f32()[flat - adam->begin()] = expected(p.name, 1, g + k);
            adam->v().f32()[flat - adam->begin()] = expected(p.name, 2, g + k);
          }
        }
      });
    }
    adam->set_t(7);
  }
  void check() {
    for (int i = 0; i < store.size(); ++i) {
      Param& p = store.at(i);
      for_each_global_run(p.global_shape, p.shard, 0, p.numel(), [&](int64_t l, int64_t g, int64_t n) {
        for (int64_t k = 0; k < n; ++k) {
          const int64_t flat = p.offset + l + k;
          ASSERT_EQ(p.value.f32()[l + k], expected(p.name, 0, g + k)) << p.name << " element " << g + k;
          if (flat >= adam->begin() && flat < adam->end()) {
            ASSERT_EQ(adam->m().f32()[flat - adam->begin()], expected(p.name, 1, g + k)) << p.name;
            ASSERT_EQ(adam->v().f32()[flat - adam->begin()], expected(p.name, 2, g + k)) << p.name;
          }
        }
      });
    }
    EXPECT_EQ(adam->t(), 7);
  }
};

ShardSpec whole(const std::string&) { return ShardSpec{}; }
// Tensor-parallel style: part `index` of `parts`, the qkv tensor as 3 packed blocks.
std::function<ShardSpec(const std::string&)> tp(int parts, int index, int dim = 0) {
  return [=](const std::string& name) {
    if (name == "b") return ShardSpec{0, parts, index, 1};
    if (name == "blocks.0.qkv") return ShardSpec{0, parts, index, 3};
    return ShardSpec{dim, parts, index, 1};
  };
}

std::string fresh(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("gpt_ckpt_test_" + std::to_string(getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

// Two data-parallel "ranks" with full replicas, each writing half the flat buffer (the
// rule: dp rank r writes shard_range(total, dp, r)), plus the marker.
std::string save_two_dp_ranks(const std::string& dir) {
  for (int r = 0; r < 2; ++r) {
    FakeRank rank(whole);
    rank.fill();
    const int64_t total = rank.store.total(), half = (total + 1) / 2;
    const int64_t b = r == 0 ? 0 : half, e = r == 0 ? half : total;
    OwnedState s = owned_state(rank.store, b, e, rank.adam.get(), CheckpointScalars{5, 7, {1, 2, 3}, "cfg"}, r, 2);
    write_rank_file((fs::path(dir) / rank_file_name(r)).string(), s, SaveOptions{3, 0});
  }
  CheckpointMarker m{kCheckpointFormatVersion, 5, CheckpointLayout{2, 2, false, 1, 1}, 2};
  write_marker(dir, m);
  return dir;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void load_into(const std::string& path, FakeRank& r) {
  CheckpointSource src(path);
  load_params(src, r.store);
  load_optimizer(src, r.store, *r.adam);
}

TEST(ShardedCheckpoint, TwoDpRanksLoadIntoTensorParallelSlices) {
  const std::string dir = save_two_dp_ranks(fresh("dp2") + "/ckpt_00000005");
  for (int parts : {1, 2}) {
    for (int index = 0; index < parts; ++index) {
      FakeRank r(tp(parts, index), 3, 9);  // optimizer range inside the buffer
      load_into(dir, r);
      r.check();
    }
  }
  CheckpointSource src(dir);
  EXPECT_EQ(src.scalars().step, 5);
  EXPECT_EQ(src.scalars().data_state, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(src.marker().layout.dp, 2);
}

// Expert parallelism: "experts" [4, 3] is an expert parameter split over `ep` ranks along
// the expert dimension; ParamStore::add_expert places it after every other parameter even
// though it is registered first. Each region has its own optimizer, as DataParallel keeps.
struct ExpertRank {
  ParamStore store;
  std::unique_ptr<AdamW> dense_adam, expert_adam;
  ExpertRank(int ep, int index) {
    store.add_expert("experts", {4, 3}, true, 0.02f, 0.f, ShardSpec{0, ep, index});
    store.add("dense", {5}, true, 0.02f);
    store.materialize(Device::CPU);
    dense_adam = std::make_unique<AdamW>(store, AdamWConfig{}, 0, store.expert_begin());
    expert_adam = std::make_unique<AdamW>(store, AdamWConfig{}, store.expert_begin(), store.total());
  }
  // Visits every local element with its global index and the optimizer holding it.
  void each(const std::function<void(Param&, int64_t local, int64_t global, AdamW&)>& f) {
    for (int i = 0; i < store.size(); ++i) {
      Param& p = store.at(i);
      AdamW& adam = p.expert ? *expert_adam : *dense_adam;
      for_each_global_run(p.global_shape, p.shard, 0, p.numel(), [&](int64_t l, int64_t g, int64_t n) {
        for (int64_t k = 0; k < n; ++k) f(p, l + k, g + k, adam);
      });
    }
  }
};

TEST(ShardedCheckpoint, ExpertRegionSavedAtOneExpertSplitLoadsAtAnother) {
  {
    ExpertRank r(2, 1);
    EXPECT_EQ(r.store.find("dense")->offset, 0);  // registered second, placed first
    EXPECT_EQ(r.store.expert_begin(), 5);
    EXPECT_EQ(r.store.find("experts")->offset, 5);
    EXPECT_EQ(r.store.total(), 5 + 2 * 3);  // experts 2 and 3 of 4
  }
  // ep 2 over dp 2: rank r holds experts [2r, 2r + 2) alone (its expert-data-parallel
  // group is itself) and writes half the dense region, as DataParallel::checkpoint_ranges.
  const std::string dir = fresh("ep2") + "/ckpt_00000005";
  for (int r = 0; r < 2; ++r) {
    ExpertRank rank(2, r);
    rank.each([](Param& p, int64_t l, int64_t g, AdamW& adam) {
      p.value.f32()[l] = expected(p.name, 0, g);
      adam.m().f32()[p.offset + l - adam.begin()] = expected(p.name, 1, g);
      adam.v().f32()[p.offset + l - adam.begin()] = expected(p.name, 2, g);
    });
    rank.dense_adam->set_t(7), rank.expert_adam->set_t(7);
    const int64_t dense_begin = r == 0 ? 0 : 3, dense_end = r == 0 ? 3 : 5;
    OwnedState s = owned_state(rank.store,
                               {OwnedRange{dense_begin, dense_end, rank.dense_adam.get()},
                                OwnedRange{rank.store.expert_begin(), rank.store.total(), rank.expert_adam.get()}},
                               CheckpointScalars{5, 7, {}, "cfg"}, r, 2);
    write_rank_file((fs::path(dir) / rank_file_name(r)).string(), s, SaveOptions{2, 0});
  }
  write_marker(dir, CheckpointMarker{kCheckpointFormatVersion, 5, CheckpointLayout{2, 2, false, 1, 1}, 2});
  // Loaded whole (ep 1) and one expert per rank (ep 4): every value and moment by global index.
  for (auto [ep, index] : {std::pair{1, 0}, std::pair{4, 0}, std::pair{4, 3}}) {
    SCOPED_TRACE("ep " + std::to_string(ep) + " rank " + std::to_string(index));
    ExpertRank r(ep, index);
    CheckpointSource src(dir);
    load_params(src, r.store);
    load_optimizer(src, r.store, *r.dense_adam);
    load_optimizer(src, r.store, *r.expert_adam);
    r.each([](Param& p, int64_t l, int64_t g, AdamW& adam) {
      ASSERT_EQ(p.value.f32()[l], expected(p.name, 0, g)) << p.name << " element " << g;
      ASSERT_EQ(adam.m().f32()[p.offset + l - adam.begin()], expected(p.name, 1, g)) << p.name;
      ASSERT_EQ(adam.v().f32()[p.offset + l - adam.begin()], expected(p.name, 2, g)) << p.name;
    });
    EXPECT_EQ(r.expert_adam->t(), 7);
  }
}

TEST(ShardedCheckpoint, TensorParallelSlicesLoadIntoAnotherSlicing) {
  const std::string dir = fresh("tp2") + "/ckpt_00000003";
  for (int r = 0; r < 2; ++r) {  // two TP ranks, each writing all it holds
    FakeRank rank(tp(2, r));
    rank.fill();
    OwnedState s = owned_state(rank.store, 0, rank.store.total(), rank.adam.get(), CheckpointScalars{3, 7, {}, ""}, r, 2);
    write_rank_file((fs::path(dir) / rank_file_name(r)).string(), s, SaveOptions{});
  }
  write_marker(dir, CheckpointMarker{kCheckpointFormatVersion, 3, CheckpointLayout{2, 1, false, 2, 1}, 2});
  FakeRank whole_rank(whole);
  load_into(dir, whole_rank);
  whole_rank.check();
  FakeRank cols(tp(2, 1, /*dim=*/1), 2, 20);  // w split along dim 1 instead
  load_into(dir, cols);
  cols.check();
  // And the whole tensors, for consolidation and export.
  TensorMap all = read_global_params(dir);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all["w"].shape, (Shape{6, 4}));
  for (int64_t g = 0; g < 24; ++g) EXPECT_EQ(all["blocks.0.qkv"].data[size_t(g)], expected("blocks.0.qkv", 0, g));
}

// The vocabulary-parallel wte: rows split over a padded dimension (6 rows padded to 8).
// Over 4 parts rank 3 holds padding only. Files keep the global [6, 4] and no padding;
// they load into the whole tensor and into another padded split, padding zero.
std::function<ShardSpec(const std::string&)> padded_rows(int parts, int index) {
  return [=](const std::string& name) {
    if (name == "w") return ShardSpec{0, parts, index, 1, 8};
    return tp(2, index % 2)(name);
  };
}

TEST(ShardedCheckpoint, PaddedSplitStoresTheGlobalTensorWithoutPadding) {
  const std::string dir = fresh("padded") + "/ckpt_00000003";
  for (int r = 0; r < 4; ++r) {
    FakeRank rank(padded_rows(4, r));
    ASSERT_EQ(rank.store.find("w")->shape, (Shape{2, 4}));
    rank.fill();
    OwnedState s = owned_state(rank.store, 0, rank.store.total(), rank.adam.get(), CheckpointScalars{3, 7, {}, ""}, r, 4);
    write_rank_file((fs::path(dir) / rank_file_name(r)).string(), s, SaveOptions{});
  }
  write_marker(dir, CheckpointMarker{kCheckpointFormatVersion, 3, CheckpointLayout{4, 1, false, 4, 1}, 4});
  CheckpointSource src(dir);
  EXPECT_EQ(src.global_shape("w"), (Shape{6, 4}));
  EXPECT_EQ(src.piece_count("w", "param"), 3);  // rank 3's rows are all padding: nothing stored
  TensorMap all = read_global_params(dir);
  ASSERT_EQ(all["w"].data.size(), 24u);
  for (int64_t g = 0; g < 24; ++g) EXPECT_EQ(all["w"].data[size_t(g)], expected("w", 0, g));

  FakeRank whole_rank(whole);
  load_into(dir, whole_rank);
  whole_rank.check();
  // Two parts: rank 1 holds rows 4, 5 and two padding rows; its optimizer range [2, 7)
  // ends inside the padding. Padding loads as zeros whatever the buffer held before.
  FakeRank half(padded_rows(2, 1), 2, 7);
  Param& w = *half.store.find("w");
  for (int64_t k = 0; k < w.numel(); ++k) w.value.f32()[k] = -1.f;
  load_into(dir, half);
  half.check();
  for (int64_t k = 8; k < 16; ++k) EXPECT_EQ(w.value.f32()[k], 0.f) << "padding element " << k;
}

TEST(ShardedCheckpoint, ParamsOnlyFileRoundTripsAndRefusesToResume) {
  const std::string file = fresh("params") + "/imported.h5";
  TensorMap params = read_global_params(save_two_dp_ranks(fresh("params_src") + "/ckpt_00000005"));
  write_params_checkpoint(file, params, CheckpointScalars{0, 0, {}, "imported"});
  EXPECT_FALSE(fs::exists(file + ".tmp"));
  EXPECT_EQ(read_global_params(file)["b"].data, params["b"].data);
  FakeRank r(tp(2, 1));
  CheckpointSource src(file);
  EXPECT_TRUE(src.consolidated());
  load_params(src, r.store);
  std::string e = error_of([&] { load_optimizer(src, r.store, *r.adam); });
  EXPECT_NE(e.find("run.init_from"), std::string::npos) << e;
  EXPECT_NE(e.find(file), std::string::npos) << e;
}

TEST(ShardedCheckpoint, ErrorsNameTheFileAndWhatToDo) {
  const std::string run = fresh("errors");
  const std::string dir = save_two_dp_ranks(run + "/ckpt_00000005");
  const std::string rank1 = dir + "/" + rank_file_name(1);

  FakeRank wrong_shape(whole, 0, -1, Shape{6, 5});
  std::string e = error_of([&] { load_into(dir, wrong_shape); });
  EXPECT_NE(e.find("has global shape [6, 4], the config gives [6, 5]"), std::string::npos) << e;
  EXPECT_NE(e.find("rank_0000"), std::string::npos) << e;

  // Truncated rank file: HDF5 cannot open it.
  const std::string copy = run + "/rank1.bak";
  fs::copy_file(rank1, copy);
  fs::resize_file(rank1, fs::file_size(rank1) / 2);
  e = error_of([&] { CheckpointSource src(dir); });
  EXPECT_NE(e.find(rank1 + ": not a readable HDF5 file (truncated or corrupt)"), std::string::npos) << e;

  // Missing rank file that the marker lists.
  fs::remove(rank1);
  e = error_of([&] { CheckpointSource src(dir); });
  EXPECT_NE(e.find("rank file rank_00001.h5 listed by the marker"), std::string::npos) << e;

  // A marker claiming one file: rank 1's elements are stored nowhere.
  write_marker(dir, CheckpointMarker{kCheckpointFormatVersion, 5, CheckpointLayout{2, 2, false, 1, 1}, 1});
  FakeRank r(whole);
  e = error_of([&] { load_into(dir, r); });
  EXPECT_NE(e.find(dir + ": elements of 'param' of tensor"), std::string::npos) << e;
  EXPECT_NE(e.find("in no rank file"), std::string::npos) << e;

  // A damaged marker listing no rank files (found by tests/fuzz/fuzz_checkpoint: the
  // loader read past its empty list of files).
  fs::copy_file(copy, rank1);
  for (const char* bad : {"rank_files = 0", "world_size = -3", "rank_files = 4294967297"}) {
    std::ofstream(dir + "/COMPLETE") << "gptrain-checkpoint-marker\nformat_version = 2\nstep = 5\n"
                                     << "world_size = 2\nrank_files = 2\n" << bad << "\n";
    e = error_of([&] { CheckpointSource src(dir); });
    EXPECT_NE(e.find(dir + "/COMPLETE: '" + std::string(bad) + "' is not a count of ranks"), std::string::npos) << e;
  }
  write_marker(dir, CheckpointMarker{kCheckpointFormatVersion, 5, CheckpointLayout{2, 2, false, 1, 1}, 2});

  // No marker: an interrupted save, ignored by latest_checkpoint.
  EXPECT_EQ(latest_checkpoint(run), dir);
  fs::remove(dir + "/COMPLETE");
  e = error_of([&] { CheckpointSource src(dir); });
  EXPECT_NE(e.find(dir + ": incomplete checkpoint"), std::string::npos) << e;
  EXPECT_EQ(latest_checkpoint(run), "");
  for (const std::string& msg : {e}) EXPECT_EQ(msg.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace gpt
