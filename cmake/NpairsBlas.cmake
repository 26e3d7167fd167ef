# Chooses the BLAS (NPAIRS_BLAS) and defines the imported target npairs::blas:
# its library, its cblas.h, and NPAIRS_BLAS_SCIPY=1 when its symbols carry
# scipy-openblas32's prefix (src/blas.hpp maps the library's calls to them).
# Also sets BLAS_LIBRARIES (the file linked) and NPAIRS_BLAS_RUNPATH (where the
# installed library finds it). Configure fails, naming the package to
# install, when the BLAS chosen is missing.
#
#   system          the system's OpenBLAS (the default, for C and C++ users)
#   scipy-openblas  PyPI's scipy-openblas32, found by running
#                   NPAIRS_BLAS_PYTHON (the OpenBLAS that NumPy and SciPy
#                   ship: every x86 kernel, chosen at run time, where a
#                   distribution's older OpenBLAS may not know the processor
#                   and fall back to generic kernels). The wheel's choice
#                   (pyproject.toml): it bundles the library next to
#                   libnpairs, found through RUNPATH $ORIGIN; outside a wheel
#                   the RUNPATH names scipy-openblas32's own folder.
set(NPAIRS_BLAS "system" CACHE STRING "The BLAS: system (the system's OpenBLAS) or scipy-openblas (PyPI's scipy-openblas32)")
set_property(CACHE NPAIRS_BLAS PROPERTY STRINGS system scipy-openblas)
set(NPAIRS_BLAS_PYTHON "" CACHE FILEPATH
  "A Python with scipy-openblas32 installed, for NPAIRS_BLAS=scipy-openblas (empty: the wheel build's Python, else python3)")

if(NPAIRS_BLAS STREQUAL "scipy-openblas")
  if(NPAIRS_BLAS_PYTHON)
    set(npairs_blas_python ${NPAIRS_BLAS_PYTHON})
  elseif(SKBUILD AND Python_EXECUTABLE)
    set(npairs_blas_python ${Python_EXECUTABLE})
  else()
    find_program(npairs_blas_python NAMES python3 python)
  endif()
  execute_process(
    COMMAND ${npairs_blas_python} -c
      "import scipy_openblas32 as s; print(s.get_include_dir()); print(s.get_lib_dir()); print(s.get_library(True)); print(s.__version__)"
    OUTPUT_VARIABLE npairs_scipy_openblas OUTPUT_STRIP_TRAILING_WHITESPACE
    ERROR_VARIABLE npairs_blas_error RESULT_VARIABLE npairs_blas_result)
  if(NOT npairs_blas_result EQUAL 0)
    message(FATAL_ERROR
      "NPAIRS_BLAS=scipy-openblas: ${npairs_blas_python} cannot import scipy_openblas32 "
      "(pip install scipy-openblas32, or set NPAIRS_BLAS_PYTHON to a Python that has it): ${npairs_blas_error}")
  endif()
  string(REPLACE "\n" ";" npairs_scipy_openblas "${npairs_scipy_openblas}")
  list(GET npairs_scipy_openblas 0 NPAIRS_CBLAS_INCLUDE_DIR)
  list(GET npairs_scipy_openblas 1 npairs_blas_lib_dir)
  list(GET npairs_scipy_openblas 2 npairs_blas_lib_name)
  list(GET npairs_scipy_openblas 3 npairs_blas_version)
  set(BLAS_LIBRARIES ${npairs_blas_lib_dir}/${npairs_blas_lib_name})
  # OpenBLAS's licence (BSD-3-Clause), for the wheel that bundles the library.
  file(GLOB NPAIRS_BLAS_LICENSE_FILES ${npairs_blas_lib_dir}/../../scipy_openblas32-*.dist-info/licenses/*)
  if(SKBUILD)
    set(NPAIRS_BLAS_RUNPATH "$ORIGIN")
  else()
    set(NPAIRS_BLAS_RUNPATH ${npairs_blas_lib_dir})
  endif()
  message(STATUS "libnpairs: BLAS scipy-openblas32 ${npairs_blas_version} (${BLAS_LIBRARIES})")
elseif(NPAIRS_BLAS STREQUAL "system")
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
  # The OpenMP build's own cblas.h first: src/blas.hpp asks it openblas_get_parallel().
  find_path(NPAIRS_CBLAS_INCLUDE_DIR cblas.h
    HINTS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
    PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread
                  x86_64-linux-gnu/openblas-openmp)
  if(NOT BLAS_FOUND OR NOT NPAIRS_CBLAS_INCLUDE_DIR)
    message(FATAL_ERROR
      "libnpairs needs OpenBLAS with its C interface (cblas.h) for the CPU GEMMs. "
      "On Debian or Ubuntu: apt-get install libopenblas-dev libopenblas-openmp-dev "
      "(or configure with -DNPAIRS_BLAS=scipy-openblas after pip install scipy-openblas32)")
  endif()
  message(STATUS "libnpairs: BLAS ${BLAS_LIBRARIES}")
else()
  message(FATAL_ERROR "NPAIRS_BLAS is '${NPAIRS_BLAS}': it takes system or scipy-openblas")
endif()
add_library(npairs::blas INTERFACE IMPORTED)
target_link_libraries(npairs::blas INTERFACE ${BLAS_LIBRARIES})
target_include_directories(npairs::blas INTERFACE ${NPAIRS_CBLAS_INCLUDE_DIR})
if(NPAIRS_BLAS STREQUAL "scipy-openblas")
  target_compile_definitions(npairs::blas INTERFACE NPAIRS_BLAS_SCIPY=1)
endif()
