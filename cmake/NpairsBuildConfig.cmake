# Writes libnpairs-build.json next to the library (NPAIRS_BUILD_CONFIG names
# it): the build's version, type and compilers, the BLAS linked, and whether
# the CUDA backend is in, for which architectures and toolkit.
# npairs.show_config() (python -m npairs) reads it beside the loaded library.

# A JSON string of VALUE, in OUT.
function(npairs_json_string out value)
  string(REPLACE "\\" "\\\\" value "${value}")
  string(REPLACE "\"" "\\\"" value "${value}")
  set(${out} "\"${value}\"" PARENT_SCOPE)
endfunction()

# A JSON array of the strings of the CMake list LIST, in OUT.
function(npairs_json_list out)
  set(items "")
  foreach(item IN LISTS ARGN)
    npairs_json_string(item "${item}")
    list(APPEND items "${item}")
  endforeach()
  list(JOIN items ", " items)
  set(${out} "[${items}]" PARENT_SCOPE)
endfunction()

npairs_json_string(NPAIRS_JSON_VERSION "${PROJECT_VERSION}")
npairs_json_string(NPAIRS_JSON_BUILD_TYPE "${CMAKE_BUILD_TYPE}")
npairs_json_string(NPAIRS_JSON_CXX "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION}")
npairs_json_string(NPAIRS_JSON_OPENMP "${OpenMP_CXX_VERSION}")
npairs_json_list(NPAIRS_JSON_BLAS ${BLAS_LIBRARIES})
if(NPAIRS_WITH_CUDA)
  set(NPAIRS_JSON_CUDA true)
  npairs_json_string(NPAIRS_JSON_CUDA_TOOLKIT "${CUDAToolkit_VERSION}")
  npairs_json_list(NPAIRS_JSON_CUDA_ARCHITECTURES ${CMAKE_CUDA_ARCHITECTURES})
else()
  set(NPAIRS_JSON_CUDA false)
  set(NPAIRS_JSON_CUDA_TOOLKIT null)
  set(NPAIRS_JSON_CUDA_ARCHITECTURES "[]")
endif()
set(NPAIRS_BUILD_CONFIG ${CMAKE_CURRENT_BINARY_DIR}/libnpairs-build.json)
configure_file(${CMAKE_CURRENT_LIST_DIR}/libnpairs-build.json.in ${NPAIRS_BUILD_CONFIG} @ONLY)
