#!/bin/bash
# A/B: NPX unset (exp_in_grad, current) vs NPX=1 (recompute exp in the gradient sweep)
cd /work/main
for round in 1 2 3 4 5 6; do
  for t in 1 2; do
    for x in 0 1; do
      if [ $x = 1 ]; then export NPX=1; else unset NPX; fi
      build/cpu-only/bench/npairs_bench --backend cpu --rows 2048,4096 --input similarity --symmetric both --dtau --no-baselines --repeats 7 --threads $t 2>&1 | grep "symmetric /" | sed "s/^/round=$round t=$t NPX=$x /; s/cpu f32 similarity labels sym:dS+dtau//"
    done
  done
done
