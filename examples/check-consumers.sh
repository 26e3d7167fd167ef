#!/usr/bin/env bash
# Installs the built library into a scratch prefix, then builds and runs the C
# and C++ examples against it twice: through find_package(npairs) and through
# pkg-config. Usage: check-consumers.sh BUILD_DIR SOURCE_DIR SCRATCH_DIR
set -euo pipefail
build=$1 src=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
prefix=$scratch/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libnpairs.so.1' | head -n 1)")

echo "== find_package(npairs)"
cmake -S "$src/examples" -B "$scratch/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$scratch/cmake" >/dev/null
"$scratch/cmake/c_example"
"$scratch/cmake/cpp_example"

echo "== pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs npairs)
cc -std=c99 -Wall -Wextra -Werror -pedantic "$src/examples/c_example.c" $flags \
  -Wl,-rpath,"$libdir" -o "$scratch/c_example_pc"
c++ -std=c++17 -Wall -Wextra -Werror "$src/examples/cpp_example.cpp" $flags \
  -Wl,-rpath,"$libdir" -o "$scratch/cpp_example_pc"
"$scratch/c_example_pc"
"$scratch/cpp_example_pc"
echo "consumers OK"
