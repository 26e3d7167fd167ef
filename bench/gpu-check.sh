#!/usr/bin/env bash
# The one prepared GPU check, for a session lent an H200 through the device
# tool: configure for sm_90, build, run the tests, the benchmark sweep and the
# peers comparison, then print the tables and a summary last. Every step has
# a time limit, and the whole stays under 8 minutes (steps that would start
# past the deadline are skipped and say so). Logs and JSON go to $OUT (the
# device tool's folder) or /tmp/npairs-gpu-check.
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
deadline=$((SECONDS + 450))  # 7.5 minutes from here

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

results=()
# step NAME LIMIT_S COMMAND...: runs it under `timeout` (never past the
# deadline), logs to $out/NAME.log, records the status.
step() {
  local name=$1 limit=$2; shift 2
  local left=$((deadline - SECONDS))
  if ((left < 20)); then
    results+=("$(printf '%-11s %-9s %4ss  %s' "$name" skipped 0 "no time left before the 8-minute mark")")
    return 1
  fi
  ((limit > left)) && limit=$left
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local status=ok
  ((rc == 124)) && status="TIMEOUT"
  ((rc != 0 && rc != 124)) && status="FAIL:$rc"
  results+=("$(printf '%-11s %-9s %4ss  %s' "$name" "$status" $((SECONDS - start)) "$(tail -n 1 "$out/$name.log")")")
  return $rc
}

bench=./build/gpu/bench/npairs_bench
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
step configure 120 cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DNPAIRS_WERROR=ON "${extra[@]}" &&
step build 180 cmake --build build/gpu -j "$(nproc)" &&
{
  step tests 90 ctest --test-dir build/gpu --output-on-failure -j 4 -LE large
  # The sweep: R = M in 4096, 16384, 32768, D = 512, similarity and embeddings
  # input, host pointers and device buffers, with the copy and cuBLAS ceilings.
  step bench 120 "$bench" --json "$out/bench.json"
  step bench-tf32 40 "$bench" --input embeddings --memory device --tf32 --json "$out/bench-tf32.json"
  # PyTorch eager / torch.compile next to npairs on the same GPU (no TFA:
  # tensorflow-cpu has no GPU).
  if python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    export NPAIRS_LIBRARY=$PWD/build/gpu/libnpairs.so
    step peers 200 python3 bench/peers.py --device cuda \
      --systems npairs,npairs-torch,torch-eager,torch-compile,torch-gemms --repeats 5 \
      --json "$out/peers-cuda.json" --plot "$out/peers-cuda.png"
  else
    results+=("$(printf '%-11s %-9s %4ss  %s' peers skipped 0 "no PyTorch with CUDA here")")
  fi
  step large 120 ctest --test-dir build/gpu --output-on-failure -L large
}

echo
echo "== benchmark (npairs_bench; full figures in $out/bench.json)"
sed -n '/^input /,$p' "$out/bench.log" 2>/dev/null
echo
echo "== benchmark, TF32 allowed"
sed -n '/^input /,/^$/p' "$out/bench-tf32.log" 2>/dev/null
echo
echo "== peers (bench/peers.py)"
sed -n '/^median ms/,$p' "$out/peers.log" 2>/dev/null
echo
echo "== summary ($(date -u +%F), $(head -n 1 "$out/gpu.txt"), $((SECONDS))s)"
printf '%s\n' "${results[@]}"
