# cmake -DKERNEL=<.cu> -DOUTPUT=<file> [-DPRELUDE=<header>] -P emulate_kernel.cmake
#
# Rewrites a CUDA kernel source into C++ for the emulator of cuda_shim.hpp,
# at build time, so that the tests always run the kernel as it is now. One
# rewrite, nothing else:
#   extern __shared__ <type> name[];
#     -> <type> (&name)[::emu::kDynamicSharedBytes] = ::emu::dynamic_shared_memory;
# Launches go through cuda/launch.cuh, whose place the shim takes: a
# `<<<...>>>` launch left in the source fails the build (it would bypass both
# the emulator and the launch's own error check). With PRELUDE, the output
# starts by including it (a source compiled on its own, not included by a
# test that includes the shim first).
foreach(var KERNEL OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "emulate_kernel.cmake: -D${var}=... is required")
  endif()
endforeach()

file(READ "${KERNEL}" source)

function(count_matches out regex text)
  string(REGEX MATCHALL "${regex}" matches "${text}")
  list(LENGTH matches n)
  set(${out} ${n} PARENT_SCOPE)
endfunction()

count_matches(launches "<<<|>>>" "${source}")
count_matches(uses_launch "launch\\(" "${source}")
if(NOT launches EQUAL 0 OR uses_launch EQUAL 0)
  message(FATAL_ERROR "emulate_kernel.cmake: ${KERNEL} has ${launches} `<<<`/`>>>` and "
    "${uses_launch} launch( calls; every kernel must be launched through cuda/launch.cuh.")
endif()

string(REGEX REPLACE "extern[ \t]+__shared__([^;]*[^A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)[ \t]*\\[[ \t]*\\][ \t]*;"
  "\\1(&\\2)[::emu::kDynamicSharedBytes] = ::emu::dynamic_shared_memory;" source "${source}")
count_matches(left_over "extern[ \t]+__shared__" "${source}")
if(NOT left_over EQUAL 0)
  message(FATAL_ERROR "emulate_kernel.cmake: ${left_over} `extern __shared__` left in ${KERNEL}. "
    "Update tests/emulated/emulate_kernel.cmake to the kernel's new form.")
endif()

set(prelude "")
if(DEFINED PRELUDE)
  set(prelude "#include \"${PRELUDE}\"\n")
endif()
# #line keeps compiler messages pointing at the kernel source (the rewrite
# keeps its line breaks).
file(WRITE "${OUTPUT}"
  "// Generated from ${KERNEL} by tests/emulated/emulate_kernel.cmake: do not edit.\n"
  "${prelude}"
  "#line 1 \"${KERNEL}\"\n"
  "${source}")
