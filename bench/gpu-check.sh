#!/usr/bin/env bash
# The one prepared GPU check, for a session lent an H200 through the device
# tool: configure for sm_90, build, run every test (the CUDA ones and the
# `large` label included) and the benchmark, then print a short table last.
# Logs go to $OUT (the device tool's folder) or /tmp/npairs-gpu-check.
#
# The device image has CMake, nvcc and PyTorch but not OpenBLAS or
# GoogleTest. Carry them as Debian packages: here, once,
#   mkdir -p .debs && (cd .debs && apt-get download libopenblas0-pthread \
#     libopenblas-pthread-dev libopenblas-dev libgtest-dev googletest)
# (with `.debs/` in .git/info/exclude) and name `.debs` in the run's carry.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-/tmp/npairs-gpu-check}
mkdir -p "$out"

deps=/tmp/npairs-deps
if [[ -d .debs ]]; then
  for deb in .debs/*.deb; do dpkg -x "$deb" "$deps"; done
  export CMAKE_PREFIX_PATH="$deps/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:$deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  extra=(-DCMAKE_INCLUDE_PATH="$deps/usr/include;$deps/usr/include/x86_64-linux-gnu/openblas-pthread"
         -DCMAKE_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu;$deps/usr/lib/x86_64-linux-gnu/openblas-pthread")
else
  extra=()
fi

step() {  # step NAME COMMAND...: runs it, logs to $out/NAME.log, records the status
  local name=$1; shift
  local start=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  results+=("$(printf '%-10s %-6s %4ss  %s' "$name" "$([[ $rc == 0 ]] && echo ok || echo FAIL:$rc)" $((SECONDS - start)) "$(tail -n 1 "$out/$name.log")")")
  return $rc
}
results=()

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
step configure cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DNPAIRS_WERROR=ON "${extra[@]}" &&
step build cmake --build build/gpu -j "$(nproc)" &&
{
  step tests ctest --test-dir build/gpu --output-on-failure -j 4 -LE large
  step large ctest --test-dir build/gpu --output-on-failure -L large
  step bench ./build/gpu/bench/npairs_bench
}

echo
echo "== benchmark"
cat "$out/bench.log" 2>/dev/null
echo
echo "== summary ($(date -u +%F), $(head -n 1 "$out/gpu.txt"))"
printf '%s\n' "${results[@]}"
