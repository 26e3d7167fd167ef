#!/bin/bash
# Alternates two builds of libnpairs under one bench binary, six rounds:
# OLD (main) and NEW (main with the exps of the symmetric statistics sweep in
# a loop of their own, the patch in this folder). Usage:
#   bash run.sh BUILD_DIR OLD_LIB_DIR NEW_LIB_DIR > raw.txt
set -euo pipefail
bench="$1/bench/npairs_bench"
args=(--backend cpu --rows 2048,4096 --input similarity --symmetric both --dtau --no-baselines --repeats 7 --threads 1)
for round in 1 2 3 4 5 6; do
  for lib in "$2" "$3"; do
    echo "round $round lib $lib"
    LD_LIBRARY_PATH="$lib" "$bench" "${args[@]}" 2>&1 | grep "symmetric /"
  done
done
