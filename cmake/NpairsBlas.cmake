# Finds OpenBLAS and its cblas.h and defines the imported target npairs::blas.
# Configure fails, naming the Debian package, when either is missing.
#
# Debian's OpenMP build of OpenBLAS is preferred: it shares the OpenMP thread
# team of the row pass, where the pthreads build's threads and OpenMP's
# spinning workers fight over the cores (about 2x slower on 2 cores). Both
# builds have the SONAME libopenblas.so.0, so the library's RUNPATH names the
# OpenMP one's folder. That build is made against GCC's libgomp: with another
# compiler's OpenMP runtime (clang's libomp) the two runtimes deadlock, so it
# is used with GCC only.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  find_library(NPAIRS_OPENBLAS_OPENMP openblas
    PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
endif()
if(NPAIRS_OPENBLAS_OPENMP)
  set(BLAS_LIBRARIES ${NPAIRS_OPENBLAS_OPENMP})
  set(BLAS_FOUND TRUE)
  get_filename_component(NPAIRS_BLAS_RUNPATH ${NPAIRS_OPENBLAS_OPENMP} DIRECTORY)
else()
  set(BLA_VENDOR OpenBLAS)
  find_package(BLAS QUIET)
  set(NPAIRS_BLAS_RUNPATH "")
endif()
find_path(NPAIRS_CBLAS_INCLUDE_DIR cblas.h
  PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread
                x86_64-linux-gnu/openblas-openmp)
if(NOT BLAS_FOUND OR NOT NPAIRS_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR
    "libnpairs needs OpenBLAS with its C interface (cblas.h) for the CPU GEMMs. "
    "On Debian or Ubuntu: apt-get install libopenblas-dev libopenblas-openmp-dev")
endif()
message(STATUS "libnpairs: BLAS ${BLAS_LIBRARIES}")
add_library(npairs::blas INTERFACE IMPORTED)
target_link_libraries(npairs::blas INTERFACE ${BLAS_LIBRARIES})
target_include_directories(npairs::blas INTERFACE ${NPAIRS_CBLAS_INCLUDE_DIR})
