#!/bin/bash
# The cost of dL/dtau on the CPU symmetric call: the same call with and
# without --dtau, alternated six rounds in one session.
# Usage: bash run.sh BUILD_DIR > raw.txt
B=${1:-build/cpu-only}/bench/npairs_bench
for round in 1 2 3 4 5 6; do
  for dtau in "" "--dtau"; do
    echo "== round $round ${dtau:-no-dtau}"
    "$B" --backend cpu --rows 2048,4096 --input similarity --symmetric both \
      --no-baselines --repeats 7 --threads 1 $dtau 2>&1 | grep -E "^npairs_bench: \["
  done
done
