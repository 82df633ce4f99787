// The schedule simulator (parallel/pipeline/schedule_sim.h) from the command line, for
// pipeline_bench.py's predicted bubble beside the measured one: every rank's action list
// for one schedule and shape, run with the given pass costs (e.g. the mean F / B / W
// durations of a measured timeline). Prints one line:
//   RESULT pipeline_sim {"ok": true, "bubble": b, "makespan": t, "peak_activations": [...]}
//
//   pipeline_sim --schedule 1f1b --stages 2 --micro 8 [--virtual 1]
//                [--forward 1 --backward-input 1 --backward-weight 1 --p2p 0]
// A whole Backward costs backward-input + backward-weight.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "parallel/pipeline/schedule_sim.h"

namespace pp = gpt::parallel::pipeline;
namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string schedule;
  pp::PipelineShape shape;
  pp::PassCosts costs;
  po::options_description opts("pipeline_sim");
  opts.add_options()
      ("schedule", po::value(&schedule)->required(), "gpipe | 1f1b | interleaved | zb-h1")
      ("stages", po::value(&shape.stages)->required(), "p")
      ("micro", po::value(&shape.micro_batches)->required(), "m")
      ("virtual", po::value(&shape.virtual_stages)->default_value(1), "v")
      ("forward", po::value(&costs.forward)->default_value(1.0), "F")
      ("backward-input", po::value(&costs.backward_input)->default_value(1.0), "B")
      ("backward-weight", po::value(&costs.backward_weight)->default_value(1.0), "W")
      ("p2p", po::value(&costs.p2p)->default_value(0.0), "a message's latency");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
    const pp::ScheduleKind kind = pp::parse_schedule(schedule);
    std::vector<std::vector<pp::Action>> per_rank;
    for (int r = 0; r < shape.stages; ++r) per_rank.push_back(pp::make_schedule(kind, shape, r));
    const pp::SimResult res = pp::simulate(per_rank, shape, costs);
    if (!res.ok) {
      std::fprintf(stderr, "pipeline_sim: invalid schedule: %s\n", res.error.c_str());
      return 1;
    }
    std::string peaks;
    for (size_t r = 0; r < res.peak_activations.size(); ++r)
      peaks += (r ? ", " : "") + std::to_string(res.peak_activations[r]);
    std::printf("RESULT pipeline_sim {\"ok\": true, \"bubble\": %.6f, \"formula_bubble\": %.6f, \"makespan\": %.6f, "
                "\"peak_activations\": [%s]}\n",
                res.bubble_fraction, pp::formula_bubble(kind, shape), res.makespan, peaks.c_str());
  } catch (const std::exception& e) {
    std::cerr << "pipeline_sim: " << e.what() << "\n" << opts;
    return 2;
  }
  return 0;
}
