#include "parallel/pipeline/pipeline_executor.h"

#include <algorithm>

#include "core/error.h"
#include "core/ops.h"

namespace gpt::parallel::pipeline {

using Clock = std::chrono::steady_clock;

PipelineExecutor::PipelineExecutor(Communicator& comm, const Group& pp, PipelineShape shape,
                                   std::vector<Model*> chunks, int64_t B, int64_t T, int64_t C,
                                   DType act, int64_t rows)
    : comm_(comm),
      pp_(pp),
      shape_(shape),
      chunks_(std::move(chunks)),
      act_shape_(rows > 0 ? Shape{rows, C} : Shape{B, T, C}),
      B_(B),
      T_(T),
      act_dtype_(act),
      device_(comm.device()) {
  GPT_CHECK(pp_.size() == shape_.stages, "pipeline: the pp group has " + std::to_string(pp_.size()) +
                                             " ranks but the schedule " + std::to_string(shape_.stages) + " stages");
  GPT_CHECK(int(chunks_.size()) == shape_.virtual_stages,
            "pipeline: rank " + std::to_string(pp_.rank) + " holds " + std::to_string(chunks_.size()) +
                " model chunks, the schedule needs " + std::to_string(shape_.virtual_stages));
  pool_.resize(chunks_.size());
}

PipelineExecutor::~PipelineExecutor() {
  for (auto& chunk_pool : pool_)
    for (Pooled& p : chunk_pool)
      for (CommHandle& h : p.sends) h.wait();
  for (auto& [key, sends] : sends_)
    for (CommHandle& h : sends) h.wait();
  for (auto& [key, r] : received_) r.second.wait();
}

Model& PipelineExecutor::model_of(int chunk) const {
  GPT_CHECK(rank_of_chunk(chunk, shape_.stages) == pp_.rank,
            "pipeline: chunk " + std::to_string(chunk) + " is not on stage " + std::to_string(pp_.rank));
  return *chunks_[size_t(local_index(chunk))];
}

std::unique_ptr<Activations> PipelineExecutor::take_activations(int chunk) {
  auto& pool = pool_[size_t(local_index(chunk))];
  if (pool.empty()) return model_of(chunk).make_activations();
  Pooled p = std::move(pool.back());
  pool.pop_back();
  for (CommHandle& h : p.sends) h.wait();  // its tensors are about to be overwritten
  return std::move(p.acts);
}

void PipelineExecutor::give_back(int chunk, std::unique_ptr<Activations> acts,
                                 std::vector<CommHandle> sends) {
  pool_[size_t(local_index(chunk))].push_back(Pooled{std::move(acts), std::move(sends)});
}

Tensor PipelineExecutor::take_buffer() {
  if (buffers_.empty()) return empty(act_shape_, act_dtype_, device_);
  Tensor t = buffers_.back();
  buffers_.pop_back();
  return t;
}

void PipelineExecutor::post_receive(const Action& a) {
  const bool grad = a.op == Op::RecvGrad;
  const auto key = std::make_pair(a.op, Key{a.micro, a.chunk});
  if (received_.count(key)) return;  // posted ahead
  const int from_chunk = grad ? a.chunk + 1 : a.chunk - 1;
  Tensor buf = take_buffer();
  CommHandle h = comm_.recv(buf, rank_of_chunk(from_chunk, shape_.stages), pp_, tag(from_chunk, grad));
  received_.emplace(key, std::make_pair(buf, h));
}

Tensor PipelineExecutor::wait_receive(Op op, int micro, int chunk) {
  auto it = received_.find(std::make_pair(op, Key{micro, chunk}));
  GPT_CHECK(it != received_.end(), std::string("pipeline: stage ") + std::to_string(pp_.rank) + " runs " +
                                       describe(Action{op == Op::RecvAct ? Op::Forward : Op::Backward, micro, chunk}) +
                                       " before receiving its " + (op == Op::RecvAct ? "input" : "output gradient"));
  Tensor t = it->second.first;
  it->second.second.wait();
  received_.erase(it);
  return t;
}

double PipelineExecutor::train_step(const std::vector<Action>& actions, float dloss,
                                    const StepHooks& hooks) {
  const auto t0 = Clock::now();
  auto ms_since = [&](Clock::time_point t) { return std::chrono::duration<double, std::milli>(t - t0).count(); };
  timeline_.clear();
  const int M = shape_.micro_batches;
  tokens_.resize(size_t(M));
  targets_.resize(size_t(M));
  // The last backward pass of each kind on each chunk: the gradients it completes are
  // final then, and data parallelism reduces them.
  std::map<std::pair<Op, int>, size_t> last_pass;
  for (size_t i = 0; i < actions.size(); ++i) last_pass[{actions[i].op, actions[i].chunk}] = i;
  double loss_sum = 0;
  size_t posted = 0;  // receives in actions[0, posted) have been posted
  // Before running the compute at i: post the receives the NEXT compute needs, so their
  // transfers overlap this one.
  auto post_ahead = [&](size_t i) {
    size_t j = std::max(posted, i + 1);
    for (; j < actions.size() && !is_compute(actions[j].op); ++j)
      if (actions[j].op == Op::RecvAct || actions[j].op == Op::RecvGrad) post_receive(actions[j]);
    posted = j;
  };
  for (size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    const Key key{a.micro, a.chunk};
    switch (a.op) {
      case Op::RecvAct:
      case Op::RecvGrad:
        post_receive(a);
        break;
      case Op::SendAct: {
        auto it = held_.find(key);
        GPT_CHECK(it != held_.end(), "pipeline: " + describe(a) + " before its forward");
        sends_[key].push_back(comm_.send(it->second->output, rank_of_chunk(a.chunk + 1, shape_.stages), pp_,
                                         tag(a.chunk, false)));
        break;
      }
      case Op::SendGrad: {
        auto it = held_.find(key);
        GPT_CHECK(it != held_.end() && input_grad_done_.count(key),
                  "pipeline: " + describe(a) + " before its backward");
        sends_[key].push_back(comm_.send(it->second->input_grad, rank_of_chunk(a.chunk - 1, shape_.stages), pp_,
                                         tag(a.chunk, true)));
        grad_sent_.insert(key);
        release_if_done(key);
        break;
      }
      case Op::Forward: {
        GPT_CHECK(!held_.count(key), "pipeline: " + describe(a) + " runs twice");
        Tensor input, *targets = nullptr;
        if (first_chunk(a.chunk) || last_chunk(a.chunk)) {
          Tensor& tok = tokens_[size_t(a.micro)];
          Tensor& tgt = targets_[size_t(a.micro)];
          ensure(tok, {B_, T_}, DType::I32, device_);
          ensure(tgt, {B_, T_}, DType::I32, device_);
          hooks.load(a.micro, first_chunk(a.chunk) ? &tok : nullptr, last_chunk(a.chunk) ? &tgt : nullptr);
          if (first_chunk(a.chunk)) input = tok;
          if (last_chunk(a.chunk)) targets = &tgt;
        }
        if (!first_chunk(a.chunk)) {
          if (hooks.before) hooks.before(Action{Op::RecvAct, a.micro, a.chunk});
          input = wait_receive(Op::RecvAct, a.micro, a.chunk);
        }
        post_ahead(i);
        std::unique_ptr<Activations> acts = take_activations(a.chunk);
        if (hooks.before) hooks.before(a);
        const auto s = Clock::now();
        const float loss = model_of(a.chunk).forward_train(*acts, input, targets, dloss);
        timeline_.push_back({a, ms_since(s), ms_since(Clock::now())});
        if (hooks.after_compute) hooks.after_compute(a);
        if (last_chunk(a.chunk)) loss_sum += loss;
        if (!first_chunk(a.chunk)) buffers_.push_back(input);  // the model copied it
        held_[key] = std::move(acts);
        break;
      }
      case Op::Backward:
      case Op::BackwardInput: {
        auto it = held_.find(key);
        GPT_CHECK(it != held_.end(), "pipeline: " + describe(a) + " before its forward");
        Tensor dout;
        if (!last_chunk(a.chunk)) {
          if (hooks.before) hooks.before(Action{Op::RecvGrad, a.micro, a.chunk});
          dout = wait_receive(Op::RecvGrad, a.micro, a.chunk);
        }
        post_ahead(i);
        if (hooks.before) hooks.before(a);
        if (hooks.before_backward) hooks.before_backward(a.micro, a.chunk, last_pass[{a.op, a.chunk}] == i);
        const auto s = Clock::now();
        const Tensor* d = last_chunk(a.chunk) ? nullptr : &dout;
        if (a.op == Op::Backward) model_of(a.chunk).backward(*it->second, d);
        else model_of(a.chunk).backward_input(*it->second, d);
        timeline_.push_back({a, ms_since(s), ms_since(Clock::now())});
        if (hooks.after_compute) hooks.after_compute(a);
        if (!last_chunk(a.chunk)) buffers_.push_back(dout);  // the model copied it
        input_grad_done_.insert(key);
        if (a.op == Op::Backward) weights_done_.insert(key);
        release_if_done(key);
        break;
      }
      case Op::BackwardWeight: {
        auto it = held_.find(key);
        GPT_CHECK(it != held_.end() && input_grad_done_.count(key),
                  "pipeline: " + describe(a) + " before its input-gradient pass");
        post_ahead(i);
        if (hooks.before) hooks.before(a);
        if (hooks.before_backward) hooks.before_backward(a.micro, a.chunk, last_pass[{a.op, a.chunk}] == i);
        const auto s = Clock::now();
        model_of(a.chunk).backward_weight(*it->second);
        timeline_.push_back({a, ms_since(s), ms_since(Clock::now())});
        if (hooks.after_compute) hooks.after_compute(a);
        weights_done_.insert(key);
        release_if_done(key);
        break;
      }
    }
  }
  GPT_CHECK(held_.empty() && received_.empty(),
            "pipeline: stage " + std::to_string(pp_.rank) + " ended the step with " + std::to_string(held_.size()) +
                " micro-batches still held and " + std::to_string(received_.size()) + " receives unused");
  ops_for(device_).synchronize();
  step_ms_ = ms_since(Clock::now());
  return loss_sum;
}

// Activations go back to their pool once nothing needs them: every backward pass has
// run and the input gradient (if any goes upstream) has been handed to the communicator.
void PipelineExecutor::release_if_done(const Key& key) {
  const bool sent = first_chunk(key.second) || grad_sent_.count(key);
  if (!weights_done_.count(key) || !sent) return;
  auto it = held_.find(key);
  std::vector<CommHandle> sends = std::move(sends_[key]);
  sends_.erase(key);
  give_back(key.second, std::move(it->second), std::move(sends));
  held_.erase(it);
  input_grad_done_.erase(key);
  weights_done_.erase(key);
  grad_sent_.erase(key);
}

double PipelineExecutor::last_busy_ms() const {
  double busy = 0;
  for (const TimedAction& t : timeline_) busy += t.end_ms - t.start_ms;
  return busy;
}

double PipelineExecutor::evaluate(int micro_batches, const StepHooks& hooks) {
  double loss_sum = 0;
  tokens_.resize(std::max(tokens_.size(), size_t(1)));
  targets_.resize(std::max(targets_.size(), size_t(1)));
  Tensor& tok = tokens_[0];
  Tensor& tgt = targets_[0];
  ensure(tok, {B_, T_}, DType::I32, device_);
  ensure(tgt, {B_, T_}, DType::I32, device_);
  // Micro-batch by micro-batch, each local chunk in model order; sends are asynchronous,
  // so the first stage runs ahead and the stages overlap as in GPipe's forward half.
  for (int m = 0; m < micro_batches; ++m)
    for (size_t k = 0; k < chunks_.size(); ++k) {
      const int c = pp_.rank + int(k) * shape_.stages;
      Tensor input;
      if (first_chunk(c) || last_chunk(c)) hooks.load(m, first_chunk(c) ? &tok : nullptr, last_chunk(c) ? &tgt : nullptr);
      if (first_chunk(c)) {
        input = tok;
      } else {
        post_receive(Action{Op::RecvAct, m, c});
        input = wait_receive(Op::RecvAct, m, c);
      }
      std::unique_ptr<Activations> acts = take_activations(c);
      const float loss = model_of(c).forward(*acts, input, last_chunk(c) ? &tgt : nullptr);
      if (!first_chunk(c)) buffers_.push_back(input);
      std::vector<CommHandle> sends;
      if (last_chunk(c)) {
        loss_sum += loss;
        if (hooks.after_loss) hooks.after_loss(m, model_of(c));
      } else sends.push_back(comm_.send(acts->output, rank_of_chunk(c + 1, shape_.stages), pp_, tag(c, false)));
      give_back(c, std::move(acts), std::move(sends));
    }
  return loss_sum;
}

}  // namespace gpt::parallel::pipeline
