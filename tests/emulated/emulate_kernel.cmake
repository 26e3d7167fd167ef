# cmake -DKERNEL=<.cu> -DOUTPUT=<file> [-DDYNAMIC_SHARED=OFF] -P emulate_kernel.cmake
#
# Rewrites a CUDA kernel source into C++ for the emulator of cuda_shim.hpp, at
# build time, so that the test always runs the kernel as it is now. Two
# rewrites, nothing else:
#   kernel<<<grid, threads, shared, stream>>>(args)
#     -> ::emu::launch(kernel, grid, threads, shared, stream, args)
#   extern __shared__ <type> name[];
#     -> <type> (&name)[::emu::kDynamicSharedBytes] = ::emu::dynamic_shared_memory;
# DYNAMIC_SHARED (ON by default) says whether the kernel source has
# `extern __shared__` arrays: ON, at least one; OFF, none. Either expectation
# unmet, no launch, or a launch left over, fails the build: a change to the
# kernel source must not quietly leave the emulated test testing less.
foreach(var KERNEL OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "emulate_kernel.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT DEFINED DYNAMIC_SHARED)
  set(DYNAMIC_SHARED ON)
endif()

file(READ "${KERNEL}" source)

function(count_matches out regex text)
  string(REGEX MATCHALL "${regex}" matches "${text}")
  list(LENGTH matches n)
  set(${out} ${n} PARENT_SCOPE)
endfunction()

count_matches(launches_before "<<<" "${source}")
count_matches(shared_before "extern[ \t]+__shared__" "${source}")
if(DYNAMIC_SHARED)
  set(shared_expected "at least one")
  set(shared_as_expected TRUE)
  if(shared_before EQUAL 0)
    set(shared_as_expected FALSE)
  endif()
else()
  set(shared_expected "no")
  set(shared_as_expected FALSE)
  if(shared_before EQUAL 0)
    set(shared_as_expected TRUE)
  endif()
endif()
if(launches_before EQUAL 0 OR NOT shared_as_expected)
  message(FATAL_ERROR "emulate_kernel.cmake: ${KERNEL} has ${launches_before} `<<<` launches and "
    "${shared_before} `extern __shared__` arrays; the emulated test expects launches and "
    "${shared_expected} `extern __shared__` arrays (DYNAMIC_SHARED=${DYNAMIC_SHARED}). Update "
    "tests/emulated/emulate_kernel.cmake and cuda_shim.hpp to the kernel's new form.")
endif()

# The launch configuration may span lines but holds no '>'.
string(REGEX REPLACE "([A-Za-z_][A-Za-z0-9_]*)[ \t]*<<<([^>]*)>>>[ \t]*\\("
  "::emu::launch(\\1, \\2, " source "${source}")
string(REGEX REPLACE "extern[ \t]+__shared__([^;]*[^A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)[ \t]*\\[[ \t]*\\][ \t]*;"
  "\\1(&\\2)[::emu::kDynamicSharedBytes] = ::emu::dynamic_shared_memory;" source "${source}")

count_matches(launches_rewritten "::emu::launch\\(" "${source}")
count_matches(left_over "<<<|>>>|extern[ \t]+__shared__" "${source}")
if(NOT launches_rewritten EQUAL launches_before OR NOT left_over EQUAL 0)
  message(FATAL_ERROR "emulate_kernel.cmake: rewrote ${launches_rewritten} of ${launches_before} "
    "launches in ${KERNEL}; ${left_over} `<<<`, `>>>` or `extern __shared__` left. Update "
    "tests/emulated/emulate_kernel.cmake to the kernel's new form.")
endif()

# #line keeps compiler messages pointing at the kernel source (the rewrites
# keep its line breaks).
file(WRITE "${OUTPUT}"
  "// Generated from ${KERNEL} by tests/emulated/emulate_kernel.cmake: do not edit.\n"
  "#line 1 \"${KERNEL}\"\n"
  "${source}")
