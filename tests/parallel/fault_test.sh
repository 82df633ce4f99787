#!/usr/bin/env bash
# Fault handling (label mpi): run dp_fault_worker on 2 ranks where rank 1 exits, is
# killed or hangs mid-step; the job must end on its own well within the time limit,
# non-zero, with a message naming the rank:
#   exit: MpiSession's exit hook ("gpt: rank 1 called exit() ...");
#   kill: mpirun's report (the process name [[job,1],1] or "rank 1"), nothing of ours runs;
#   hang: our comm timeout on rank 0, naming rank 0, the group and the operation it
#         waits on (a silent peer cannot be told apart from a slow one).
# Usage: fault_test.sh exit|kill|hang <mpiexec> <dp_fault_worker>
set -u
mode=$1 mpiexec=$2 worker=$3
limit=60
start=$(date +%s)
out=$(GPT_FAULT_MODE=$mode GPT_FAULT_RANK=1 GPT_COMM_TIMEOUT_S=4 OMP_NUM_THREADS=1 \
      timeout -k 5 $limit "$mpiexec" --allow-run-as-root --oversubscribe --bind-to none \
      --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
      -x GPT_FAULT_MODE -x GPT_FAULT_RANK -x GPT_COMM_TIMEOUT_S -x OMP_NUM_THREADS \
      -np 2 "$worker" 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "fault_test: mode $mode, exit code $rc, ${elapsed}s"
fail() { echo "fault_test FAILED: $*"; exit 1; }
[ $rc -ne 0 ] || fail "the job exited 0 although rank 1 failed"
# mpirun itself exits 137 when a rank was SIGKILLed, so judge a hang by the clock.
[ $elapsed -lt $((limit - 1)) ] || fail "the job hung until the ${limit}s limit"
echo "$out" | grep -q "step 1 loss" || fail "training never got going"
echo "$out" | grep -q "step 3 loss" && fail "rank 0 went on past the faulty step"
case $mode in
  exit) echo "$out" | grep -q "gpt: rank 1 called exit() before MPI_Finalize" ||
          fail "no message names rank 1" ;;
  kill) echo "$out" | grep -Eq "rank 1[^0-9]|\[\[[0-9]+,1\],1\]" || fail "no message names rank 1" ;;
  hang) echo "$out" | grep -q "gpt comm timeout: rank 0 (index 0 in 'world'): allreduce on group 'world' \[0 1\]" ||
          fail "no timeout message naming rank 0, group 'world' and the all-reduce" ;;
esac
echo "fault_test: passed"
