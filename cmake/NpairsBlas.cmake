# Finds OpenBLAS and its cblas.h and defines the imported target npairs::blas.
# Configure fails, naming the Debian package, when either is missing.
set(BLA_VENDOR OpenBLAS)
find_package(BLAS QUIET)
find_path(NPAIRS_CBLAS_INCLUDE_DIR cblas.h
  PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread)
if(NOT BLAS_FOUND OR NOT NPAIRS_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR
    "libnpairs needs OpenBLAS with its C interface (cblas.h) for the CPU GEMMs. "
    "On Debian or Ubuntu: apt-get install libopenblas-dev")
endif()
add_library(npairs::blas INTERFACE IMPORTED)
target_link_libraries(npairs::blas INTERFACE ${BLAS_LIBRARIES})
target_include_directories(npairs::blas INTERFACE ${NPAIRS_CBLAS_INCLUDE_DIR})
