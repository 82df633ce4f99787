#!/usr/bin/env bash
# One call on a GPU machine: the GPU tests, the bf16-vs-fp32 training check and the GPU
# benchmarks, from the device kit that scripts/device_kit.sh built elsewhere; logs and JSON
# go to $OUT. Run in the repository root there (benchmarks/GPU.md has the call):
#
#   bash scripts/gpu_session.sh [STAGE...] [BENCH ARGS...]
#   bash scripts/gpu_session.sh tests bench --models gpt2-124M,gpt2-350M
#
# Stages, run in the order named (default: tests bench):
#   tests  ctest -L gpu: every CUDA op against the CPU op, the NCCL communicator, and
#          pretrain's bf16-vs-fp32 check (tests/launch/pretrain_gpu_test.cpp)
#   bf16   only that bf16-vs-fp32 check
#   bench  benchmarks/gpu_train_bench.py with the arguments after the stages, then its chart
#   ops    benchmarks/gpu_op_bench.py: each op of the ops table (the kit's op_bench) beside
#          the PyTorch op, bf16, GPT-2 124M step shapes; OPS_ARGS adds arguments (say
#          OPS_ARGS="--ops matmul_backward,attention_backward")
#   curve  benchmarks/bf16_curve.py: GPT-2 124M on the default corpus (carried as
#          .devkit/corpus.tar.xz), 300 steps in fp32, then twice in bf16: within 2% at
#          every 50th step, and the two bf16 runs bit-identical (CURVE_S, default 540:
#          give it a call of its own)
#   build  fallback when the kit's programs do not load there: configure and build
#          pretrain, op_bench and the gpu tests on the machine into build-ondevice/ with the headers
#          and static libraries the kit carries (the machine has no Boost or GoogleTest);
#          the stages after it use that build
# Setup comes first: unpack .devkit/kit.tar.xz into build-device/ (once), link the kit's
# build-time path (KIT_SRC) to this checkout, check that every program loads (adding CUDA
# or NCCL library folders found on the machine if needed), print the GPU.
# Each stage prints a header and its time; a failing stage does not stop the next; the
# exit status is 0 only if all passed. Time limits in seconds: SESSION_S for everything
# (default 570, inside a 10-minute call), TESTS_S (300), BENCH_S (300), OPS_S (300),
# BUILD_S (480); a stage gets at most what is left. Files in $OUT (default
# out/gpu-session-<time>): session.log, <stage>.log, gpu_train_bench.json and .png,
# gpu_op_bench.json.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
here=$(pwd -P)
t_start=$(date +%s)
deadline=$((t_start + ${SESSION_S:-570}))
OUT=${OUT:-out/gpu-session-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
PYTHON=${PYTHON:-python3}
build="build-device"  # the kit's build tree; `build` switches to build-ondevice
kit_tar=.devkit/kit.tar.xz

stages=()
while [ $# -gt 0 ]; do
  case "$1" in
    tests|bf16|bench|ops|curve|build) stages+=("$1"); shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
  echo "gpu_session: unknown stage '$1' (stages: tests bf16 bench ops curve build)"
  exit 2
fi
bench_args=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(tests bench)
if [ ${#bench_args[@]} -gt 0 ] && [[ " ${stages[*]} " != *" bench "* ]]; then
  echo "gpu_session: '${bench_args[*]}' is neither a stage (tests bf16 bench ops curve build) nor, without bench, a bench argument"
  exit 2
fi

results=()
failed=0
setup_ok=0

header() { echo; echo "==== $* ($(date -u +%H:%M:%S), $(( $(date +%s) - t_start )) s into the session)"; }

# run_stage NAME LIMIT FUNCTION: runs a stage function, output also in $OUT/NAME.log. Its
# long commands go through `limited`, which stops them at the stage's deadline.
run_stage() {
  local name=$1 limit=$2 fn=$3
  local left=$((deadline - $(date +%s) - 5))
  [ "$limit" -le "$left" ] || limit=$left
  header "stage $name (limit ${limit} s)"
  if [ "$limit" -lt 15 ]; then
    echo "no time left in the session (SESSION_S)"
    results+=("$name: SKIPPED (out of session time)"); failed=1; return 1
  fi
  local t0 rc status
  t0=$(date +%s)
  stage_deadline=$((t0 + limit))
  "$fn" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=PASS ;;
    124|137) status="FAIL (timed out at ${limit} s)" ;;
    *) status="FAIL (exit $rc)" ;;
  esac
  results+=("$name: $status in $(( $(date +%s) - t0 )) s")
  echo "---- $name: $status in $(( $(date +%s) - t0 )) s"
  [ "$rc" = 0 ] || failed=1
  return "$rc"
}

# limited CMD...: CMD, stopped (with its children) at the running stage's deadline.
limited() {
  local left=$((stage_deadline - $(date +%s)))
  [ "$left" -gt 0 ] || return 124
  echo "+ $*"
  timeout -k 15 "$left" "$@"
}

unpack_kit() {
  if [ -f "$build/CMakeCache.txt" ]; then
    echo "$build/ is a build tree of this machine: using it as it is"
    return 0
  fi
  if [ ! -f "$kit_tar" ]; then
    echo "no $kit_tar: run scripts/device_kit.sh where the project builds and carry .devkit"
    return 1
  fi
  local stamp
  stamp=$(cksum < "$kit_tar")
  if [ -f "$build/.unpacked" ] && [ "$(cat "$build/.unpacked")" = "$stamp" ]; then
    echo "kit already unpacked in $build/"
    return 0
  fi
  rm -rf "$build"
  echo "unpacking $kit_tar ($(du -h "$kit_tar" | cut -f1))"
  if command -v xz >/dev/null; then
    xz -dc "$kit_tar" | tar -xf - || return 1
  else  # no xz-utils: Python's tarfile reads xz
    "$PYTHON" -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
t.extractall(".", **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))' "$kit_tar" || return 1
  fi
  echo "$stamp" > "$build/.unpacked"
}

# The CTest files and test programs name the kit's build-time checkout (KIT_SRC): make
# that path lead here (commands run as root there).
link_kit_path() {
  KIT_SRC=$here
  [ -f "$build/kit.env" ] && . "$build/kit.env"
  echo "kit: ${KIT_REV:-local build} built ${KIT_BUILT:-here} in $KIT_SRC (sm_${KIT_CUDA_ARCH:-?}, nvcc ${KIT_NVCC:-?})"
  [ "$KIT_SRC" = "$here" ] && return 0
  if [ -e "$KIT_SRC" ] && [ ! -L "$KIT_SRC" ]; then
    [ "$(cd "$KIT_SRC" && pwd -P)" = "$here" ] && return 0
    echo "$KIT_SRC exists and is another folder: the kit's paths cannot lead here"
    return 1
  fi
  mkdir -p "$(dirname "$KIT_SRC")" && ln -sfn "$here" "$KIT_SRC" || return 1
  echo "linked $KIT_SRC -> $here"
}

kit_programs() {
  local p
  for p in ${KIT_PROGRAMS:-launch/pretrain launch/sample data/tools/prepare}; do echo "$build/$p"; done
}

# Every program must load. A library the machine has outside the loader's path (CUDA or
# NCCL from pip wheels, a toolkit not registered with ldconfig) is added to LD_LIBRARY_PATH.
check_libraries() {
  local exe lib dir missing found ok=0 extra=()
  missing=$(for exe in $(kit_programs); do
              [ -x "$exe" ] || { echo "MISSING-PROGRAM:$exe"; continue; }
              ldd "$exe" | awk '/not found/ {print $1}'
            done | sort -u)
  if echo "$missing" | grep -q '^MISSING-PROGRAM:'; then
    echo "programs missing from $build/: $(echo "$missing" | sed -n 's/^MISSING-PROGRAM://p' | tr '\n' ' ')"
    return 1
  fi
  for lib in $missing; do
    found=""
    for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/targets/x86_64-linux/lib \
               /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/local/lib \
               $("$PYTHON" -c 'import glob, os, nvidia; [print(d) for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "lib"))]' 2>/dev/null); do
      [ -e "$dir/$lib" ] && { found=$dir; break; }
    done
    [ -n "$found" ] || found=$(dirname "$(timeout 60 find / -xdev -name "$lib" -print -quit 2>/dev/null)" 2>/dev/null)
    if [ -n "$found" ] && [ "$found" != . ]; then
      echo "$lib: found in $found (added to LD_LIBRARY_PATH)"; extra+=("$found")
    else
      echo "$lib: not found on this machine"; ok=1
    fi
  done
  if [ ${#extra[@]} -gt 0 ]; then
    local joined
    joined=$(printf '%s\n' "${extra[@]}" | sort -u | paste -sd:)
    export LD_LIBRARY_PATH=$joined${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  echo "-- ldd $build/launch/pretrain (the other programs load the same way)"
  ldd "$build/launch/pretrain" | sed 's/ (0x[0-9a-f]*)$//'
  [ "$ok" = 0 ] || return 1
  "$build/launch/pretrain" --help >/dev/null || { echo "pretrain does not start"; return 1; }
}

setup() {
  header "setup in $here"
  echo "stages: ${stages[*]}${bench_args:+; bench arguments: ${bench_args[*]}}; OUT=$OUT"
  uname -srm; nproc
  if command -v nvidia-smi >/dev/null; then
    timeout 30 nvidia-smi
    timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  else
    echo "nvidia-smi: not found (no GPU driver here: the gpu tests skip)"
  fi
  command -v mpirun >/dev/null && mpirun --version 2>&1 | head -1
  unpack_kit && link_kit_path && check_libraries
}

# Fallback: configure and build on this machine. It has CMake, nvcc, MPI, NCCL and HDF5
# but no Boost or GoogleTest (and maybe no OpenBLAS): the kit carries their headers and
# static libraries (build-device/deps/) and lib/libopenblas.so.0.
build_on_device() {
  local deps=$here/build-device/deps dir=build-ondevice
  [ -d "$deps/include" ] || { echo "no $deps: unpack a kit (scripts/device_kit.sh) first"; return 1; }
  # OpenBLAS and its Fortran runtime from the kit, in a folder of their own: the kit's
  # libgomp (GCC 12) must not shadow the one of the compiler building here.
  mkdir -p "$dir/blas"
  cp build-device/lib/libopenblas.so.0 build-device/lib/libgfortran.so.5 build-device/lib/libquadmath.so.0 "$dir/blas/" || return 1
  local gen=()
  command -v ninja >/dev/null && [ ! -f "$dir/CMakeCache.txt" ] && gen=(-G Ninja)
  limited cmake -S . -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGPT_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${KIT_CUDA_ARCH:-90}" -DGPT_STATIC_DEPS=ON \
    -DCMAKE_PREFIX_PATH="$deps" -DBOOST_ROOT="$deps" -DBoost_NO_BOOST_CMAKE=ON -DBoost_NO_SYSTEM_PATHS=ON \
    -DGTEST_ROOT="$deps" -DOPENBLAS_LIB="$here/$dir/blas/libopenblas.so.0" \
    -DCBLAS_INCLUDE_DIR="$deps/include/openblas" -DHDF5_ROOT="$deps" -DHDF5_NO_FIND_PACKAGE_CONFIG_FILE=ON || return 1
  local targets=() t
  for t in pretrain op_bench ${KIT_GPU_TARGETS:-}; do targets+=(--target "$t"); done
  limited cmake --build "$dir" -j"$(nproc)" "${targets[@]}"
}

# ctest over the gpu label. With a GPU present a skipped test is a failure: the tests skip
# when the CUDA runtime sees no device, which on a GPU machine means something is broken.
ctest_gpu() {
  local log rc
  log=$(mktemp)
  limited ctest --test-dir "$build" -L gpu --output-on-failure --no-tests=error "$@" | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ] && nvidia-smi -L 2>/dev/null | grep -q '^GPU' && grep -q 'Skipped' "$log"; then
    echo "nvidia-smi lists a GPU but tests were skipped: the programs do not see it"
    rc=1
  fi
  rm -f "$log"
  return "$rc"
}
stage_tests() { ctest_gpu; }
stage_bf16() { ctest_gpu -R Bf16; }
stage_curve() {
  if [ ! -d corpus ]; then
    [ -f .devkit/corpus.tar.xz ] || { echo "no corpus/ and no .devkit/corpus.tar.xz"; return 1; }
    echo "unpacking .devkit/corpus.tar.xz"
    if command -v xz >/dev/null; then
      xz -dc .devkit/corpus.tar.xz | tar -xf - || return 1
    else
      "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(".")' .devkit/corpus.tar.xz || return 1
    fi
  fi
  limited env PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/bf16_curve.py --pretrain "$build/launch/pretrain" \
    --repeat --out "$OUT/bf16_curve.json"
}
stage_bench() {
  local json=$OUT/gpu_train_bench.json
  rm -f "$json"
  # Ours first, so that an argument given after the stages wins.
  limited env PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/gpu_train_bench.py \
    --pretrain "$build/launch/pretrain" --out "$json" "${bench_args[@]}" || return $?
  if "$PYTHON" -c 'import matplotlib' 2>/dev/null; then
    "$PYTHON" benchmarks/plot_bench.py "$json" -o "$OUT" || echo "(no chart: plot_bench.py failed)"
  else
    echo "(no chart: $PYTHON has no matplotlib)"
  fi
  # A side that failed (say, out of memory) is recorded in the JSON; count it as a failure.
  "$PYTHON" - "$json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))
errors = ["%s %s: %s" % (m, side, r[side]["error"].splitlines()[0])
          for m, r in res["models"].items() for side in ("ours", "torch")
          if isinstance(r.get(side), dict) and "error" in r[side]]
for e in errors:
    print("bench error:", e)
sys.exit(1 if errors else 0)
PY
}

stage_ops() {
  local json=$OUT/gpu_op_bench.json exe=$build/benchmarks/op_bench
  rm -f "$json"
  [ -x "$exe" ] || { echo "no $exe: rebuild the kit (scripts/device_kit.sh) or run the build stage"; return 1; }
  # shellcheck disable=SC2086  # OPS_ARGS: words, as typed
  limited env PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/gpu_op_bench.py \
    --op-bench "$exe" --dtype bf16 --out "$json" ${OPS_ARGS:-} || return $?
  # An op that failed on either side (say, out of memory) is recorded in the JSON.
  "$PYTHON" - "$json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))
errors = ["%s %s: %s" % (op, side, r[side + "_error"]) for op, r in res["ops"].items()
          for side in ("ours", "torch") if side + "_error" in r]
for e in errors:
    print("op bench error:", e)
sys.exit(1 if errors else 0)
PY
}

main() {
  if setup; then
    setup_ok=1; results+=("setup: PASS")
  else
    results+=("setup: FAIL (see above; 'build' rebuilds on this machine)"); failed=1
  fi
  local s
  for s in "${stages[@]}"; do
    case $s in
      build)
        if run_stage build "${BUILD_S:-480}" build_on_device; then
          build="build-ondevice"; KIT_PROGRAMS="launch/pretrain"
          check_libraries >/dev/null && setup_ok=1
        fi ;;
      tests|bf16|bench|ops|curve)
        if [ "$setup_ok" = 1 ]; then
          local limit=${TESTS_S:-300}
          [ "$s" = bench ] && limit=${BENCH_S:-300}
          [ "$s" = ops ] && limit=${OPS_S:-300}
          [ "$s" = curve ] && limit=${CURVE_S:-540}
          run_stage "$s" "$limit" "stage_$s"
        else
          results+=("$s: SKIPPED (programs do not load)"); failed=1
        fi ;;
    esac
  done
  header "summary ($(( $(date +%s) - t_start )) s)"
  printf '  %s\n' "${results[@]}"
  ls "$OUT"
  return "$failed"
}

main 2>&1 | tee "$OUT/session.log"
exit "${PIPESTATUS[0]}"
