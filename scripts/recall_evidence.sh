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
# has seed r), in pieces short enough to finish within a working session. Two seeds started as
# two processes at once (SEEDS=0 ... & SEEDS=1 ...) gave 1.19x the throughput of one for the
# introspective model but 1.00x for the LRU (docs/results/scaling.md): measure first.
#
# STEPS may list stages, "4000 6000": each run trains to the first, is evaluated, resumes to the
# next, and so on; every stage's evaluation.json and samples.png are kept in the run directory as
# evaluation-step-N.json and samples-step-N.png (a run keeps only its last few checkpoints, so an
# earlier stage cannot be evaluated afterwards). A stage whose evaluation-step-N.json every run
# already has is skipped, so the same command picks up where a killed one stopped.
# KEEP_EVERY=N also keeps every N-th step's checkpoint (`gtmm train --keep-every`), so a run that
# loses its recall can be examined from a checkpoint before the loss; it changes no number.
# LR_DROPS="12000:3e-4 ..." trains the steps after 12,000 at 3e-4 (`gtmm train --lr-drop`; not the
# protocol of the runs in docs/results/perfect-recall-15.md, which kept 1e-3 throughout): use a
# new OUT_DIR, since a run directory holds one schedule.
# CLIP_MEMORY=C also clips the memory's gradient alone to norm C (`gtmm train --clip-memory-grad-norm`;
# not the protocol of the runs in docs/results/perfect-recall-15.md): a new OUT_DIR as well.
# RESULTS=DIR also copies each stage's evaluation to DIR/MODEL-seed-S/step-N.json as soon as it is
# made (e.g. a folder under docs/results/ to commit), since run directories may not outlive the
# machine they were trained on (they did not on 2026-12-07).
# Usage: GTMM_DATA=../shared/data [SEEDS="0 1 2"] [KEEP_EVERY=N] [LR_DROPS="S:LR ..."] [CLIP_MEMORY=C] [RESULTS=DIR] scripts/recall_evidence.sh OUT_DIR ["STEPS ..."] ["MODELS"]
set -euo pipefail
out=${1:?output directory}; steps=${2:-4000}; models=${3:-"introspective vrnn ntm lru dnc"}
gtmm=${GTMM:-gtmm}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=2"
done_in() {  # STAGE RUN...: whether every run already has this stage's evaluation
  local stage=$1; shift
  for run in "$@"; do [[ -f "$run/evaluation-step-$stage.json" ]] || return 1; done
}
evaluate() {  # RUN STAGE NAME: evaluate the run's last checkpoint and keep a copy named by the stage
  "$gtmm" evaluate "$1" > /dev/null
  cp "$1/evaluation.json" "$1/evaluation-step-$2.json"
  cp "$1/samples.png" "$1/samples-step-$2.png"
  if [[ -n "${RESULTS:-}" ]]; then
    mkdir -p "$RESULTS/$3"
    cp "$1/evaluation.json" "$RESULTS/$3/step-$2.json.tmp" && mv "$RESULTS/$3/step-$2.json.tmp" "$RESULTS/$3/step-$2.json"
  fi
}
for model in $models; do
  extra=()
  case $model in
    introspective) extra=(--context-with-controller) ;;
    ntm) extra=(--ntm-walk-bias 3) ;;
  esac
  common=(--model "$model" --task perfect-recall --l 15 --k 5 --clip-grad-norm 5000
          --checkpoint-every 100 --devices 2 "${extra[@]}" --no-progress)
  if [[ -n "${KEEP_EVERY:-}" ]]; then common+=(--keep-every "$KEEP_EVERY"); fi
  for drop in ${LR_DROPS:-}; do common+=(--lr-drop "$drop"); done
  if [[ -n "${CLIP_MEMORY:-}" ]]; then common+=(--clip-memory-grad-norm "$CLIP_MEMORY"); fi
  for stage in $steps; do
    if [[ -n "${SEEDS:-}" ]]; then
      for seed in $SEEDS; do
        done_in "$stage" "$out/$model/replica-$seed" && continue
        "$gtmm" train "${common[@]}" --steps "$stage" --seed "$seed" --out "$out/$model/replica-$seed"
        evaluate "$out/$model/replica-$seed" "$stage" "$model-seed-$seed"
      done
    else
      runs=()
      for r in 0 1 2; do runs+=("$out/$model/replica-$r"); done
      done_in "$stage" "${runs[@]}" && continue
      "$gtmm" train "${common[@]}" --steps "$stage" --replicas 3 --out "$out/$model"
      for r in 0 1 2; do  # replica r has seed r
        evaluate "$out/$model/replica-$r" "$stage" "$model-seed-$r"
      done
    fi
  done
done
python "$(dirname "$0")/summarize_seeds.py" "$out"
