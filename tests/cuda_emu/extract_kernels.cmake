# Extracts the kernel half of a CUDA file for the host emulator (cuda_emulator.h):
#   cmake -DSRC=core/cuda/attention_tc.cu -DOUT=attention_tc_kernels.inc -P extract_kernels.cmake
# Everything before the line "// ---- launchers ----" is kept; <mma.h> and
# core/cuda/cuda_common.cuh give way to the emulator, and each dynamic shared-memory
# declaration `extern __shared__ __align__(N) unsigned char name[];` becomes a pointer to
# the emulated block's shared memory. A #line directive keeps compiler messages pointing
# at SRC. Run at build time (a custom command that depends on SRC), so the test always
# exercises the kernels as they are in the tree; anything it does not recognise fails
# the build rather than testing something else.
if(NOT SRC OR NOT OUT)
  message(FATAL_ERROR "usage: cmake -DSRC=<file.cu> -DOUT=<file.inc> -P extract_kernels.cmake")
endif()
file(READ "${SRC}" text)

set(marker "\n// ---- launchers ----\n")
string(FIND "${text}" "${marker}" cut)
if(cut EQUAL -1)
  message(FATAL_ERROR "${SRC}: no line '// ---- launchers ----'. The CUDA emulator test "
                      "(tests/cuda_emu) compiles what precedes it as the kernels; put the "
                      "marker back between the kernels and the launchers.")
endif()
string(SUBSTRING "${text}" 0 ${cut} kernels)

# One line for one line, so that the #line directive stays true.
string(REPLACE "\n#include <mma.h>\n" "\n// (mma.h: cuda_emulator.h)\n" kernels "${kernels}")
string(REPLACE "\n#include \"core/cuda/cuda_common.cuh\"\n"
               "\n// (cuda_common.cuh: bf16 above)\n" kernels "${kernels}")
string(REGEX MATCHALL "extern __shared__[^;]*;" shared_decls "${kernels}")
string(REGEX REPLACE
       "extern __shared__ __align__\\([0-9]+\\) unsigned char ([A-Za-z_][A-Za-z_0-9]*)\\[\\];"
       "unsigned char* \\1 = emu::smem();" kernels "${kernels}")
if(NOT shared_decls)
  message(FATAL_ERROR "${SRC}: no 'extern __shared__' declaration before the launchers")
endif()
string(FIND "${kernels}" "extern __shared__" left)
if(NOT left EQUAL -1)
  message(FATAL_ERROR "${SRC}: an 'extern __shared__' declaration that tests/cuda_emu/"
                      "extract_kernels.cmake does not recognise (it expects "
                      "'extern __shared__ __align__(N) unsigned char name[];')")
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
     "namespace gpt::cuda {\nusing bf16 = __nv_bfloat16;\n}\n"
     "#line 1 \"${SRC}\"\n"
     "${kernels}\n"
     "}  // namespace gpt::cuda (closed by the launchers in the original)\n")
