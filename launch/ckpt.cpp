// ckpt: inspect and convert checkpoints (core/checkpoint/sharded_checkpoint.h).
//   ckpt info CKPT                 step, the layout it was written under, each tensor
//   ckpt consolidate CKPT OUT.h5   any checkpoint -> one single-process file
//   ckpt export-hf CKPT DIR        GPT-2 weights -> Hugging Face config.json + model.safetensors
//   ckpt import-hf DIR OUT.h5      Hugging Face GPT-2 -> a parameters-only checkpoint
//                                  (pretrain --run.init_from OUT.h5 continues from it)
// CKPT is a checkpoint directory (run.dir/ckpt_<step>) or a consolidated .h5 file.
// A subcommand is one function plus one line in kCommands.
#include <boost/program_options.hpp>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "core/checkpoint/hf_gpt2.h"
#include "core/checkpoint/sharded_checkpoint.h"
#include "core/error.h"
#include "launch/config.h"

namespace po = boost::program_options;

namespace {

using Args = std::vector<std::string>;

struct Command {
  const char* usage;  // "info CKPT"
  const char* help;
  int positional;     // how many arguments it takes
  void (*run)(const Args&);
};

void cmd_info(const Args& a) {
  if (std::filesystem::is_directory(a[0]) && !gpt::has_marker(a[0])) {
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(a[0])) files += e.path().extension() == ".h5";
    std::printf("checkpoint %s: INCOMPLETE (no %s marker; %d finished rank files)\n", a[0].c_str(),
                gpt::kMarkerName, files);
  }
  gpt::CheckpointSource src(a[0]);  // throws "incomplete checkpoint ..." for the above
  const gpt::CheckpointMarker& m = src.marker();
  std::printf("checkpoint %s: complete, format version %d, step %lld\n", src.path().c_str(), m.format_version,
              (long long)src.scalars().step);
  if (src.consolidated())
    std::printf("written as one consolidated file (world 1)\n");
  else
    std::printf("written under world %d: dp %d (ZeRO-1 %s), tp %d, pp %d; %d rank files\n", m.layout.world,
                m.layout.dp, m.layout.zero1 ? "on" : "off", m.layout.tp, m.layout.pp, m.rank_files);
  std::printf("optimizer state: %s (AdamW step %lld)\n", src.has_kind("optim.m") ? "yes" : "no",
              (long long)src.scalars().optim_t);
  int64_t total = 0;
  for (const std::string& name : src.tensor_names()) {
    const gpt::Shape s = src.global_shape(name);
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    total += n;
    std::printf("  %-36s %-14s pieces: param %d, optim.m %d, optim.v %d\n", name.c_str(), gpt::shape_str(s).c_str(),
                src.piece_count(name, "param"), src.piece_count(name, "optim.m"), src.piece_count(name, "optim.v"));
  }
  std::printf("%zu tensors, %lld parameters\n", src.tensor_names().size(), (long long)total);
}

// Streams one whole tensor at a time: memory is the largest tensor, not the model.
void cmd_consolidate(const Args& a) {
  gpt::CheckpointSource src(a[0]);
  gpt::CheckpointWriter w(a[1]);
  gpt::write_scalars(w, src.scalars(), 0, 1);
  std::vector<float> host;
  for (const std::string& name : src.tensor_names()) {
    const gpt::Shape s = src.global_shape(name);
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    host.resize(size_t(n));
    for (const char* kind : {"param", "optim.m", "optim.v"}) {
      if (std::string(kind) != "param" && !src.has_kind(kind)) continue;
      src.fill(name, kind, s, gpt::ShardSpec{}, 0, n, host.data());
      gpt::write_piece(w, kind, gpt::PieceInfo{name, s, gpt::ShardSpec{}, 0, n, 0}, host.data());
    }
  }
  w.attr("complete", int64_t(1));  // written last: the loader refuses a file without it
  w.commit();
  std::printf("consolidated %s (step %lld) into %s\n", src.path().c_str(), (long long)src.scalars().step,
              a[1].c_str());
}

// The model shape comes from the configuration the checkpoint stores (n_head is not in
// any tensor's shape).
void cmd_export_hf(const Args& a) {
  gpt::CheckpointSource src(a[0]);
  const gpt::GPTConfig cfg = gpt::model_config_from_text(src.scalars().config);
  GPT_CHECK(cfg.family == gpt::ModelFamily::GPT2, "ckpt export-hf: " + a[0] + " holds a model.family = " +
                                                      gpt::family_name(cfg.family) + " model; only gpt2 exports");
  GPT_CHECK(!cfg.is_moe(), "ckpt export-hf: " + a[0] + " holds a mixture-of-experts model (moe.experts = " +
                               std::to_string(cfg.moe.experts) + "); GPT2LMHeadModel has no experts");
  gpt::export_hf_gpt2(gpt::read_global_params(a[0]), cfg, a[1]);
  std::printf("exported %s (step %lld, L=%d H=%d C=%d V=%d) to %s (config.json, model.safetensors)\n",
              src.path().c_str(), (long long)src.scalars().step, cfg.n_layer, cfg.n_head, cfg.n_embd,
              cfg.vocab_size, a[1].c_str());
}

void cmd_import_hf(const Args& a) {
  auto [cfg, params] = gpt::import_hf_gpt2(a[0]);
  gpt::CheckpointScalars scalars;
  scalars.config = gpt::model_config_text(cfg);
  gpt::write_params_checkpoint(a[1], params, scalars);
  std::printf("imported %s (L=%d H=%d C=%d V=%d) into %s; continue pretraining with --run.init_from %s "
              "and these model keys:\n%s",
              a[0].c_str(), cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, a[1].c_str(), a[1].c_str(),
              scalars.config.c_str());
}

const std::map<std::string, Command> kCommands = {
    {"export-hf",
     {"export-hf CKPT DIR", "write a GPT-2 checkpoint's weights as a Hugging Face GPT2LMHeadModel folder", 2,
      cmd_export_hf}},
    {"import-hf",
     {"import-hf DIR OUT.h5", "read a Hugging Face GPT-2 folder into a parameters-only checkpoint", 2,
      cmd_import_hf}},
    {"info", {"info CKPT", "print the step, the layout it was written under, and every tensor", 1, cmd_info}},
    {"consolidate",
     {"consolidate CKPT OUT.h5", "write any checkpoint as one single-process file (run.resume_from loads it)", 2,
      cmd_consolidate}},
};

std::string usage() {
  std::string s = "usage: ckpt COMMAND ARGS...   (CKPT: a checkpoint directory or a consolidated .h5)\n";
  for (const auto& [name, c] : kCommands) s += "  ckpt " + std::string(c.usage) + "\n      " + c.help + "\n";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    po::options_description opts("options");
    opts.add_options()("help,h", "print this help")("command", po::value<std::string>(), "subcommand")(
        "args", po::value<Args>()->default_value({}, ""), "its arguments");
    po::positional_options_description pos;
    pos.add("command", 1).add("args", -1);
    po::variables_map vm;
    try {
      po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      gpt::fail(std::string("ckpt: ") + e.what() + "\n" + usage());
    }
    if (vm.count("help") || !vm.count("command")) {
      std::cout << usage() << opts;
      return vm.count("help") ? 0 : 2;
    }
    const std::string name = vm["command"].as<std::string>();
    auto it = kCommands.find(name);
    if (it == kCommands.end()) gpt::fail("unknown command '" + name + "'; see ckpt --help");
    const Args args = vm["args"].as<Args>();
    if (int(args.size()) != it->second.positional)
      gpt::fail("usage: ckpt " + std::string(it->second.usage));
    it->second.run(args);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ckpt: error: %s\n", e.what());
  }
  return 1;
}
