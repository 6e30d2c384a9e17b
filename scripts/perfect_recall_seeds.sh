#!/usr/bin/env bash
# Perfect recall (l=15, k=5) for the VRNN and the introspective model over several seeds, then
# evaluation, samples, and one KL-per-step plot with mean and standard error across seeds.
# Usage: GTMM_DATA=../shared/data scripts/perfect_recall_seeds.sh OUT_DIR STEPS "SEEDS"
set -euo pipefail
out=${1:?output directory}; steps=${2:-500}; seeds=${3:-"0 1 2"}
gtmm=${GTMM:-gtmm}
runs=()
for seed in $seeds; do
  for model in introspective vrnn; do
    run="$out/$model-s$seed"
    "$gtmm" train --model "$model" --task perfect-recall --l 15 --k 5 --steps "$steps" --seed "$seed" \
      --checkpoint-every 50 --out "$run" --no-progress
    "$gtmm" evaluate "$run"
    "$gtmm" sample "$run"
    runs+=("$run")
    "$gtmm" plot "${runs[@]}" --out "$out/kl_per_step.png"
  done
done
