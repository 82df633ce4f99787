# Extracts the kernel half of a CUDA file for the host emulator (cuda_emulator.h):
#   cmake -DSRC=core/cuda/attention_tc.cu -DOUT=attention_tc_kernels.inc
#         -DCOMMON=core/cuda/cuda_common.cuh [-DEND="// ---- cuBLASLt ----"]
#         -P extract_kernels.cmake
# Everything before the line "// ---- launchers ----" (or END) is kept; <mma.h> and
# core/cuda/cuda_common.cuh give way to the emulator plus cuda_common.cuh's own device
# helpers and grid_for, compiled as they are; core/cuda/*_ptx.cuh (inline-PTX wrappers)
# to the emulator's stand-ins for them; each dynamic shared-memory declaration
# `extern __shared__ __align__(N) unsigned char name[];` becomes a pointer to the
# emulated block's shared memory, and each static `__shared__ T a[N], b[M];` a
# reference to one array per block (emu::block_shared). #line directives keep compiler
# messages pointing at SRC and COMMON. Run at build time (a custom command that depends
# on SRC), so the test always exercises the kernels as they are in the tree; anything
# it does not recognise fails the build rather than testing something else.
if(NOT SRC OR NOT OUT OR NOT COMMON)
  message(FATAL_ERROR "usage: cmake -DSRC=<file.cu> -DOUT=<file.inc> "
                      "-DCOMMON=<cuda_common.cuh> [-DEND=<end marker>] -P extract_kernels.cmake")
endif()
file(READ "${SRC}" text)

# END: a file whose launchers need host code of its own before them (matmul.cu's
# cuBLASLt plans) names an earlier section line instead, e.g. "// ---- cuBLASLt ----".
if(NOT END)
  set(END "// ---- launchers ----")
endif()
set(marker "\n${END}\n")
string(FIND "${text}" "${marker}" cut)
if(cut EQUAL -1)
  message(FATAL_ERROR "${SRC}: no line '${END}'. The CUDA emulator test "
                      "(tests/cuda_emu) compiles what precedes it as the kernels; put the "
                      "marker back between the kernels and the launchers.")
endif()
string(SUBSTRING "${text}" 0 ${cut} kernels)

# The device helpers of cuda_common.cuh (to_float, AnyFloat, warp_sum, ...), compiled
# as they are: between its "// ---- device helpers ----" and "// ---- launchers" lines,
# less the one host function that needs a Tensor.
file(READ "${COMMON}" common)
string(FIND "${common}" "\n// ---- device helpers ----\n" common_begin)
string(FIND "${common}" "\n// ---- launchers" common_end)
if(common_begin EQUAL -1 OR common_end EQUAL -1)
  message(FATAL_ERROR "${COMMON}: no '// ---- device helpers ----' ... '// ---- launchers' "
                      "section for tests/cuda_emu/extract_kernels.cmake")
endif()
string(SUBSTRING "${common}" 0 ${common_begin} common_head)
string(REGEX MATCHALL "\n" common_lines "${common_head}")
list(LENGTH common_lines common_line)
math(EXPR common_line "${common_line} + 1")
math(EXPR common_len "${common_end} - ${common_begin}")
string(SUBSTRING "${common}" ${common_begin} ${common_len} helpers)
string(REGEX REPLACE "\ninline AnyFloat any_float\\(const Tensor& t\\)[^\n]*\n"
       "\n// (any_float: host only)\n" helpers "${helpers}")
# And grid_for, the launchers' grid-size helper (host code), so that the tests' launches
# use it rather than a copy.
string(FIND "${common}" "\ninline unsigned grid_for(" grid_begin)
if(grid_begin EQUAL -1)
  message(FATAL_ERROR "${COMMON}: no 'inline unsigned grid_for(' for tests/cuda_emu")
endif()
string(SUBSTRING "${common}" ${grid_begin} -1 grid_for)
string(FIND "${grid_for}" "\n}\n" grid_len)
math(EXPR grid_len "${grid_len} + 3")
string(SUBSTRING "${grid_for}" 0 ${grid_len} grid_for)
string(SUBSTRING "${common}" 0 ${grid_begin} grid_head)
string(REGEX MATCHALL "\n" grid_lines "${grid_head}")
list(LENGTH grid_lines grid_line)
math(EXPR grid_line "${grid_line} + 2")
string(APPEND helpers "\n#line ${grid_line} \"${COMMON}\"${grid_for}")
string(FIND "${helpers}" "Tensor" left)
if(NOT left EQUAL -1)
  message(FATAL_ERROR "${COMMON}: the device helpers mention Tensor; tests/cuda_emu/"
                      "extract_kernels.cmake can only drop 'inline AnyFloat any_float(...)'")
endif()

# One line for one line, so that the #line directive stays true.
string(REPLACE "\n#include <mma.h>\n" "\n// (mma.h: cuda_emulator.h)\n" kernels "${kernels}")
# CUB is called by encoder.cu's launcher only; its test stands in for the sort.
string(REPLACE "\n#include <cub/device/device_radix_sort.cuh>\n"
               "\n// (cub: the launcher's, not the kernels')\n" kernels "${kernels}")
string(REPLACE "\n#include \"core/cuda/cuda_common.cuh\"\n"
               "\n// (cuda_common.cuh: bf16 above)\n" kernels "${kernels}")
# A core/cuda/<name>_ptx.cuh holds a kernel file's inline PTX, in wrappers that
# cuda_emulator.h defines instead (attention_mma_ptx.cuh: mma.sync, ldmatrix, cp.async).
string(REGEX REPLACE "\n#include \"core/cuda/([A-Za-z_0-9]+_ptx)\\.cuh\"\n"
       "\n// (\\1.cuh: inline PTX, cuda_emulator.h stands in)\n" kernels "${kernels}")
string(REGEX REPLACE
       "extern __shared__ __align__\\([0-9]+\\) unsigned char ([A-Za-z_][A-Za-z_0-9]*)\\[\\];"
       "unsigned char* \\1 = emu::smem();" kernels "${kernels}")
string(REGEX REPLACE
       "extern __shared__ (float|double) ([A-Za-z_][A-Za-z_0-9]*)\\[\\];"
       "\\1* \\2 = reinterpret_cast<\\1*>(emu::smem());" kernels "${kernels}")
string(FIND "${kernels}" "extern __shared__" left)
if(NOT left EQUAL -1)
  message(FATAL_ERROR "${SRC}: an 'extern __shared__' declaration that tests/cuda_emu/"
                      "extract_kernels.cmake does not recognise (it expects "
                      "'extern __shared__ __align__(N) unsigned char name[];' or "
                      "'extern __shared__ float name[];')")
endif()
# Static shared arrays, `__shared__ float a[32], b[32];` (also inside __device__
# functions), become references to one array per block (emu::block_shared; a lambda
# makes each declaration's tag unique), all on the declaration's line.
# (The matches leave out the ';', which would split them as a CMake list.)
string(REGEX MATCHALL "__shared__ [A-Za-z_][A-Za-z_0-9:]* [^;]*" static_decls "${kernels}")
foreach(decl ${static_decls})
  string(REGEX REPLACE "^__shared__ ([A-Za-z_][A-Za-z_0-9:]*) (.*)$" "\\1" type "${decl}")
  string(REGEX REPLACE "^__shared__ ([A-Za-z_][A-Za-z_0-9:]*) (.*)$" "\\2" names "${decl}")
  string(REPLACE "," ";" names "${names}")
  set(rewritten "")
  foreach(one ${names})
    string(STRIP "${one}" one)
    if(NOT one MATCHES "^([A-Za-z_][A-Za-z_0-9]*)((\\[[^]]+\\])+)$")
      message(FATAL_ERROR "${SRC}: static shared declaration '${decl}': tests/cuda_emu/"
                          "extract_kernels.cmake expects arrays 'name[N]' without initialisers")
    endif()
    string(APPEND rewritten
           "auto& ${CMAKE_MATCH_1} = emu::block_shared<${type}${CMAKE_MATCH_2}>([] {}); ")
  endforeach()
  string(REPLACE "${decl};" "${rewritten}" kernels "${kernels}")
endforeach()
string(FIND "${kernels}" "__shared__" left)
if(NOT left EQUAL -1)
  message(FATAL_ERROR "${SRC}: a __shared__ declaration that tests/cuda_emu/"
                      "extract_kernels.cmake does not recognise")
endif()
foreach(gone "#include <mma.h>" "#include \"core/cuda/cuda_common.cuh\"")
  string(FIND "${kernels}" "${gone}" left)
  if(NOT left EQUAL -1)
    message(FATAL_ERROR "${SRC}: '${gone}' is still there after the rewrite")
  endif()
endforeach()
string(REGEX MATCHALL "\n#include \"[^\"]*\"" project_includes "${kernels}")
if(project_includes)
  message(FATAL_ERROR "${SRC}: the kernels include project headers the emulator does not "
                      "stand in for: ${project_includes}")
endif()

file(WRITE "${OUT}"
     "// Generated from ${SRC} by tests/cuda_emu/extract_kernels.cmake; do not edit.\n"
     "#include \"cuda_emulator.h\"\n"
     "namespace gpt::cuda {\nusing bf16 = __nv_bfloat16;\n"
     "#line ${common_line} \"${COMMON}\"\n"
     "${helpers}\n"
     "}  // namespace gpt::cuda\n"
     "#line 1 \"${SRC}\"\n"
     "${kernels}\n"
     "}  // namespace gpt::cuda (closed by the launchers in the original)\n")
