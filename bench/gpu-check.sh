#!/usr/bin/env bash
# The one prepared GPU check, for a session lent an H200 through the device
# tool: configure for sm_90, build, measure the targets, run the tests, a
# the CUDA graph capture tests, compute-sanitizer's memcheck, racecheck,
# initcheck and synccheck over CUDA tests, the benchmark sweep and the peers
# comparison, then print the tables, and last the summary with the target
# lines:
#  - embeddings R = M = 16384, D = 512, device memory: at most 1.15x the three
#    cuBLAS GEMMs alone, in float32, with TF32 allowed, and in bfloat16;
#  - similarity R = M >= 8192, device memory (from the sweep): at least 85%
#    of the device-to-device copy bandwidth;
#  - streamed (issue #9), bfloat16, D = 512, device memory: R = M = 65536
#    under a 1 GiB workspace limit at most 1.3x its three cuBLAS GEMMs, and
#    R = M = 2^20 under 8 GiB (time only);
#  - hard negative class mining (issue #13), float32, D = 256, N = 1024,
#    device memory: C = 10^4 to 10^7 beside N cuBLAS GEMVs alone (time and
#    ratio; bench/hard_classes_bench), and its CUDA tests under memcheck and
#    racecheck.
#  - symmetric (issue #15, CLIP's loss), similarity R = M in 4096 and 16384,
#    device memory, loss + dS + dL/dtau: at most 1.3x the same non-symmetric
#    call in the same run; and streamed, embeddings R = M = 16384 under a
#    256 MiB limit (time only), and the CUDA symmetric tests under memcheck
#    and racecheck.
# Steps run in that order of importance; each has a time limit, and the whole
# stays under 9 minutes (steps that would start past the deadline are skipped
# and say so). Logs and JSON go to $OUT (the device tool's folder) or
# /tmp/npairs-gpu-check.
#
# The device image has CMake, nvcc and PyTorch but not OpenBLAS or
# GoogleTest. Carry them as Debian packages: here, once,
#   mkdir -p .debs && (cd .debs && apt-get download libopenblas0-pthread \
#     libopenblas-pthread-dev libopenblas-dev libgtest-dev googletest)
# (with `.debs/` in .git/info/exclude) and name `.debs` in the run's carry.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit
out=${OUT:-/tmp/npairs-gpu-check}
mkdir -p "$out"
deadline=$((SECONDS + 510))  # 8.5 minutes from here

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
# skip NAME REASON: records a step that did not run.
skip() { results+=("$(printf '%-11s %-9s %4ss  %s' "$1" skipped 0 "$2")"); }
# step NAME LIMIT_S COMMAND...: runs it under `timeout` (never past the
# deadline), logs to $out/NAME.log, records the status.
step() {
  local name=$1 limit=$2; shift 2
  local left=$((deadline - SECONDS))
  if ((left < 20)); then
    skip "$name" "no time left before the 8.5-minute mark"
    return 1
  fi
  ((limit > left)) && limit=$left
  local start=$SECONDS
  timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local status=ok
  ((rc == 124)) && status="TIMEOUT"
  ((rc != 0 && rc != 124)) && status="FAIL:$rc"
  results+=("$(printf '%-11s %-9s %4ss  %s' "$name" "$status" $((SECONDS - start)) "$(tail -n 1 "$out/$name.log")")")
  return $rc
}

# The target lines of the summary, from the bench's JSON files.
targets() {
  python3 - "$out" <<'PY'
import json, os, sys


def cases(name):
    try:
        with open(os.path.join(sys.argv[1], name)) as f:
            return json.load(f)["cases"]
    except (OSError, ValueError, KeyError):
        return []


def line(label, case, ratio, figure, target, met):
    why = case["unsupported"] or case["error"] or (ratio is None and "ceiling not measured")
    print(f"{label}: no figure ({why})" if why else f"{label}: {figure} ({target}) {'ok' if met else 'MISSED'}")


similarity = [c for c in cases("bench.json")
              if c["input"] == "similarity" and c["memory"] == "device" and c["rows"] == c["cols"] >= 8192]
for c in similarity:
    r = c["time_over_copy"]
    line(f"similarity {c['dtype']} R=M={c['rows']}", c, r, r and f"{100 / r:.0f}% of the copy bandwidth",
         "target >= 85%", r and 1 / r >= 0.85)
if not similarity:
    print("similarity R=M>=8192: no figure (bench step skipped or failed)")
for name, label in (("emb-f32", "float32"), ("emb-tf32", "TF32"), ("emb-bf16", "bfloat16")):
    embeddings = cases(name + ".json")
    for c in embeddings:
        r = c["time_over_gemms"]
        line(f"embeddings {label} R=M={c['rows']} D={c['dim']}", c, r, r and f"{r:.2f}x the cuBLAS GEMMs",
             "target <= 1.15x", r and r <= 1.15)
    if not embeddings:
        print(f"embeddings {label}: no figure ({name} step skipped or failed)")
for c in cases("stream-bf16.json"):
    r = c["time_over_gemms"]
    line(f"streamed bfloat16 R=M={c['rows']} D={c['dim']} under 1 GiB", c, r,
         r and f"{r:.2f}x its three cuBLAS GEMMs", "target <= 1.3x", r and r <= 1.3)
symmetric = cases("symmetric.json")
for rows_only, both in zip(symmetric, symmetric[1:]):
    if both["symmetric"] and not rows_only["symmetric"] and both["rows"] == rows_only["rows"]:
        missing = both["unsupported"] or both["error"] or rows_only["unsupported"] or rows_only["error"]
        r = None if missing else both["library_ms"]["median"] / rows_only["library_ms"]["median"]
        line(f"symmetric similarity {both['dtype']} R=M={both['rows']} (loss+dS+dtau)", both, r,
             r and f"{r:.2f}x the non-symmetric call", "target <= 1.3x", r and r <= 1.3)
if not symmetric:
    print("symmetric: no figure (symmetric step skipped or failed)")
for c in cases("stream-2p20.json"):
    why = c["unsupported"] or c["error"]
    print(f"streamed bfloat16 R=M={c['rows']} D={c['dim']} under 8 GiB: " +
          (f"no figure ({why})" if why else f"{c['library_ms']['median']:.0f} ms, "
           f"{c['gflop_per_s'] / 1000:.0f} TFLOP/s (target: <= 1.3x its three GEMMs, not measurable whole)"))
PY
}

bench=./build/gpu/bench/npairs_bench
target_case=(--input embeddings --memory device --rows 16384 --dim 512)
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
step configure 60 cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DNPAIRS_WERROR=ON "${extra[@]}" &&
step build 180 cmake --build build/gpu -j "$(nproc)" &&
{
  # The embeddings targets: about 5 s each (one case, its copy and GEMMs).
  step emb-f32 30 "$bench" "${target_case[@]}" --json "$out/emb-f32.json"
  step emb-tf32 30 "$bench" "${target_case[@]}" --tf32 --json "$out/emb-tf32.json"
  step emb-bf16 30 "$bench" "${target_case[@]}" --dtype bf16 --json "$out/emb-bf16.json"
  step tests 90 ctest --test-dir build/gpu --output-on-failure -j 8 -LE large
  # memcheck over the device-memory cases in float32 and bfloat16 (4- and
  # 2-byte rows, misaligned ones too), a user stream and invalid targets,
  # but not the many-row (grid*) cases: about a minute. The allocation-
  # failure test is left out: its failed cudaMalloc is the point, and the
  # sanitizer would count it as an error.
  # CUDA graphs: a captured call replayed on new inputs, a failing deferred
  # check in a replay, a capture refused cleanly (also in `tests`; here on
  # their own line of the summary).
  step capture 30 ./build/gpu/tests/test_cuda '--gtest_filter=Cuda.Captur*:Cuda.Deferred*'
  if [[ -x $sanitizer ]]; then
    cases='*_f32_*device*:*_bf16_*device*:Cuda.UserStream:Cuda.RowWithoutPositiveLeavesOutputsUntouched'
    step memcheck 75 "$sanitizer" --tool memcheck --error-exitcode 1 ./build/gpu/tests/test_cuda \
      "--gtest_filter=$cases:Cuda.Captur*:Cuda.Deferred*-*grid*"
    # Shared-memory races (the block and staged row kernels, the block sums
    # and the data checks' __syncthreads_or): the float32 device cases, whose
    # row lengths cover every row kernel; slower than memcheck, so fewer cases.
    step racecheck 60 "$sanitizer" --tool racecheck --error-exitcode 1 ./build/gpu/tests/test_cuda \
      '--gtest_filter=*row*_f32_*device*:c*_f32_*device*:Cuda.Deferred*'
    # Reads of device memory nobody wrote (scratch, staging, the workspace).
    step initcheck 60 "$sanitizer" --tool initcheck --error-exitcode 1 ./build/gpu/tests/test_cuda \
      "--gtest_filter=$cases:Cuda.Deferred*-*grid*"
    # Barriers reached by part of a block or warp.
    step synccheck 45 "$sanitizer" --tool synccheck --error-exitcode 1 ./build/gpu/tests/test_cuda \
      '--gtest_filter=*row*device*:c*_f32_*device*:Cuda.Deferred*'
  else
    for tool in memcheck racecheck initcheck synccheck; do
      skip "$tool" "no compute-sanitizer on PATH or in /usr/local/cuda/bin"
    done
  fi
  # CLIP's loss (issue #15): each similarity case without, then with
  # NPAIRS_FLAG_SYMMETRIC, loss + dS + dL/dtau, device memory.
  step symmetric 40 "$bench" --input similarity --memory device --rows 4096,16384 --symmetric both --dtau \
    --no-baselines --json "$out/symmetric.json"
  # The same streamed: the columns' statistics merged across row blocks and tiles.
  step sym-stream 40 "$bench" --input embeddings --memory device --rows 16384 --dim 512 --symmetric both --dtau \
    --workspace-limit 256M --repeats 3 --no-baselines --json "$out/sym-stream.json"
  if [[ -x $sanitizer ]]; then
    # Its CUDA tests, device-memory cases (dense and streamed) and the bad inputs, under memcheck.
    step sym-memcheck 60 "$sanitizer" --tool memcheck --error-exitcode 1 ./build/gpu/tests/test_cuda_symmetric \
      '--gtest_filter=*CudaSymmetric.*device*:CudaSymmetricErrors.*'
    # The statistics kernel's merge of the warps' columns through shared
    # memory (tile_symmetric_stats.cu), float32 device cases.
    step sym-racecheck 45 "$sanitizer" --tool racecheck --error-exitcode 1 ./build/gpu/tests/test_cuda_symmetric \
      '--gtest_filter=*CudaSymmetric.*_sym_f32_*device*'
  fi
  # The streaming targets (issue #9), bfloat16, D = 512: R = M = 65536 under a
  # 1 GiB limit beside its three GEMMs run whole in the same run (8 GiB of
  # logits), then R = M = 2^20 under 8 GiB, time only (whole, its GEMMs would
  # need 2 TiB).
  step stream-bf16 60 "$bench" --input embeddings --memory device --rows 65536 --dim 512 --dtype bf16 \
    --workspace-limit 1G --repeats 3 --json "$out/stream-bf16.json"
  step stream-2p20 120 "$bench" --input embeddings --memory device --rows 1048576 --dim 512 --dtype bf16 \
    --workspace-limit 8G --repeats 2 --warmup 1 --no-baselines --json "$out/stream-2p20.json"
  # Hard negative class mining (issue #13): C up to 10^7 (10 GB of float32
  # embeddings), N = 1024; then its CUDA tests under two sanitizers.
  step hard-classes 90 ./build/gpu/bench/hard_classes_bench --backend cuda \
    --classes 10000,100000,1000000,10000000 --count 1024 --repeats 3 --warmup 1
  if [[ -x $sanitizer ]]; then
    for tool in memcheck racecheck; do
      step "hard-$tool" 45 "$sanitizer" --tool "$tool" --error-exitcode 1 ./build/gpu/tests/test_hard_classes \
        '--gtest_filter=HardClassesCuda.*'
    done
    # Column blocks on CUDA contexts (issue #14, the ring): their tests under memcheck.
    step block-memcheck 45 "$sanitizer" --tool memcheck --error-exitcode 1 ./build/gpu/tests/test_block_columns \
      '--gtest_filter=*Cuda*'
  fi
  # The sweep: R = M in 4096, 16384, 32768, D = 512, similarity and embeddings
  # input, host pointers and device buffers, with the copy and cuBLAS ceilings.
  step bench 120 "$bench" --json "$out/bench.json"
  # PyTorch eager / torch.compile next to npairs on the same GPU (no TFA:
  # tensorflow-cpu has no GPU).
  if python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    export NPAIRS_LIBRARY=$PWD/build/gpu/libnpairs.so
    step peers 200 python3 bench/peers.py --device cuda \
      --systems npairs,npairs-torch,torch-eager,torch-compile,torch-gemms --repeats 5 \
      --json "$out/peers-cuda.json" --plot "$out/peers-cuda.png"
  else
    skip peers "no PyTorch with CUDA here"
  fi
  step large 120 ctest --test-dir build/gpu --output-on-failure -L large
}

echo
echo "== benchmark (npairs_bench; full figures in $out/bench.json)"
sed -n '/^input /,$p' "$out/bench.log" 2>/dev/null
echo
echo "== embeddings R=M=16384 D=512, device memory: float32, TF32 allowed, bfloat16"
for name in emb-f32 emb-tf32 emb-bf16; do
  echo "-- $name"
  sed -n '/^input /,/^$/p' "$out/$name.log" 2>/dev/null | sed '/^$/d'
done
echo
echo "== hard negative class mining (bench/hard_classes_bench)"
cat "$out/hard-classes.log" 2>/dev/null
echo
echo "== peers (bench/peers.py)"
sed -n '/^median ms/,$p' "$out/peers.log" 2>/dev/null
echo
echo "== summary ($(date -u +%F), $(head -n 1 "$out/gpu.txt"), $((SECONDS))s)"
printf '%s\n' "${results[@]}"
targets || echo "targets: no figures (python3 failed)"
