# Extracts the first ```c fenced block of README.md, compiles it as C99
# against the public header and the built library, and runs it. Fails (does
# not skip) when README.md or its ```c block is missing.
#
# cmake -DREADME=... -DC_COMPILER=... -DINCLUDE_DIR=... -DLIBRARY=... -DWORK_DIR=... -P run_readme_example.cmake
foreach(var README C_COMPILER INCLUDE_DIR LIBRARY WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_readme_example.cmake: -D${var}=... is required")
  endif()
endforeach()

if(NOT EXISTS "${README}")
  message(FATAL_ERROR "README example test: ${README} does not exist; it must contain a complete C program in its first ```c block")
endif()
file(READ "${README}" text)

# The opening fence: a line that is exactly ```c (optionally trailing blanks).
string(REGEX MATCH "(^|\n)```c[ \t]*\r?\n" fence "${text}")
if(fence STREQUAL "")
  message(FATAL_ERROR "README example test: ${README} has no ```c fenced code block (the first one must be a complete C program that includes <npairs/npairs.h> and returns 0 on success)")
endif()
string(FIND "${text}" "${fence}" start)
string(LENGTH "${fence}" fence_length)
math(EXPR start "${start} + ${fence_length}")
string(SUBSTRING "${text}" ${start} -1 rest)
string(FIND "${rest}" "\n```" end)
if(end EQUAL -1)
  message(FATAL_ERROR "README example test: the first ```c block of ${README} is not closed")
endif()
math(EXPR end "${end} + 1")  # keep the last line's newline
string(SUBSTRING "${rest}" 0 ${end} code)
if(NOT code MATCHES "npairs/npairs.h")
  message(FATAL_ERROR "README example test: the first ```c block of ${README} does not include <npairs/npairs.h>")
endif()

file(MAKE_DIRECTORY "${WORK_DIR}")
set(source "${WORK_DIR}/readme_example.c")
set(program "${WORK_DIR}/readme_example")
file(WRITE "${source}" "${code}")
file(REMOVE "${program}")
get_filename_component(library_dir "${LIBRARY}" DIRECTORY)

execute_process(
  COMMAND "${C_COMPILER}" -std=c99 -pedantic -Wall -Wextra "-I${INCLUDE_DIR}" "${source}" -o "${program}"
          "${LIBRARY}" "-Wl,-rpath,${library_dir}" -lm
  RESULT_VARIABLE compile_result
  OUTPUT_VARIABLE compile_output
  ERROR_VARIABLE compile_output)
if(NOT compile_result EQUAL 0)
  message(FATAL_ERROR "README example test: the first ```c block of ${README} (written to ${source}) does not compile:\n${compile_output}")
endif()
if(NOT compile_output STREQUAL "")
  message(STATUS "compiler output:\n${compile_output}")
endif()

execute_process(
  COMMAND "${program}"
  RESULT_VARIABLE run_result
  OUTPUT_VARIABLE run_output
  ERROR_VARIABLE run_output
  TIMEOUT 60)
message(STATUS "README example output:\n${run_output}")
if(NOT run_result EQUAL 0)
  message(FATAL_ERROR "README example test: the program from ${README} exited with ${run_result}")
endif()
