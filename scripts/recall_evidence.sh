#!/usr/bin/env bash
# The MNIST evidence issues 2 and 3 ask for: perfect recall (l = 15, k = 5) with 3 replicas per
# model, trained together on 2 forced CPU devices, with the settings the reduced setting found
# necessary (docs/results/recall-diagnostic.md): gradient clipping at 5,000 (about twice MNIST's
# typical norm), the controller state in the introspective context, the NTM's walk bias. Each
# run resumes from its last checkpoint when the script is started again; then every replica is
# evaluated and the table of KL before and during recall printed.
#
# SEEDS="0 1" trains those seeds one at a time instead (each alone, into OUT/MODEL/replica-S,
# evaluated as soon as it finishes): the same numbers as replicas trained together (replica r
# has seed r), in pieces short enough to finish within a working session.
# Usage: GTMM_DATA=../shared/data [SEEDS="0 1 2"] scripts/recall_evidence.sh OUT_DIR [STEPS] ["MODELS"]
set -euo pipefail
out=${1:?output directory}; steps=${2:-4000}; models=${3:-"introspective vrnn ntm lru dnc"}
gtmm=${GTMM:-gtmm}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=2"
for model in $models; do
  extra=()
  case $model in
    introspective) extra=(--context-with-controller) ;;
    ntm) extra=(--ntm-walk-bias 3) ;;
  esac
  common=(--model "$model" --task perfect-recall --l 15 --k 5 --steps "$steps" --clip-grad-norm 5000
          --checkpoint-every 100 --devices 2 "${extra[@]}" --no-progress)
  if [[ -n "${SEEDS:-}" ]]; then
    for seed in $SEEDS; do
      "$gtmm" train "${common[@]}" --seed "$seed" --out "$out/$model/replica-$seed"
      "$gtmm" evaluate "$out/$model/replica-$seed" > /dev/null
    done
  else
    "$gtmm" train "${common[@]}" --replicas 3 --out "$out/$model"
    for run in "$out/$model"/replica-*; do
      "$gtmm" evaluate "$run" > /dev/null
    done
  fi
done
python "$(dirname "$0")/summarize_seeds.py" "$out"
