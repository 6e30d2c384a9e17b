#!/usr/bin/env bash
# Issue 7's GPU figures, step 2 of 2, on the lent GPU machine (one call of the device tool, after
# benchmarks/gpu_prepare.sh here): `gtmm bench` for every model on the digits and the 3D
# configurations, and the PyTorch twin and `dnc` package on the same GPU. Every result is a file in
# $OUT, six in all (the device tool returns at most 8), every command's errors in stderr.txt. Each
# command has its own time limit, and nothing new starts after BUDGET seconds (default 480), so a
# slow compile costs only what comes last: the digits, the twin, XLA's convolutions against gtmm's
# forms (benchmarks/networks_ab.py), then 3D.
#
#   run(command="bash benchmarks/gpu_session.sh", carry=[".device"], timeout_s=560)
#
# MODELS, DIGITS_STEPS, THREED_STEPS, TWIN_STEPS, AB_STEPS and WARM_CACHE=1 (a second process per digits
# model, for the warm-cache first step) change it; a dry run on a CPU:
# MODELS=vrnn DIGITS_STEPS=1 THREED_STEPS=1 TWIN_STEPS=0 AB_STEPS=1 OUT=/tmp/o PY=.venv/bin/python bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder for the results}
MODELS=${MODELS:-vrnn introspective ntm lru dnc associative}
DIGITS_STEPS=${DIGITS_STEPS:-20}
THREED_STEPS=${THREED_STEPS:-10}
TWIN_STEPS=${TWIN_STEPS:-10}
AB_STEPS=${AB_STEPS:-10}
WARM_CACHE=${WARM_CACHE:-0}
BUDGET=${BUDGET:-480}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 GTMM_DATA=$PWD/.device/data GTMM_OFFLINE=1 GTMM_COMPILE_CACHE=/tmp/gtmm-jax-cache
site=/tmp/gtmm-site
ERR=$OUT/stderr.txt
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .device/whl/*.whl \
  || { echo "installing the carried wheels failed"; exit 1; }
export PYTHONPATH=$PWD/src:$PWD/benchmarks:$site
{ nvidia-smi; "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
bench() {  # task, steps, extra flags...
  local task=$1 steps=$2; shift 2
  for m in $MODELS; do
    if [ "$SECONDS" -gt "$BUDGET" ]; then echo "skipped: bench $m $task (past ${BUDGET} s)" | tee -a "$ERR"; continue; fi
    timeout 120 "$PY" -m gtmm bench --model "$m" --task "$task" --steps "$steps" "$@" >> "$OUT/bench-$task.jsonl" 2>> "$ERR" \
      || echo "bench $m $task failed or timed out ($?)" | tee -a "$ERR"
  done
  cat "$OUT/bench-$task.jsonl" 2>/dev/null
}
warm=(); [ "$WARM_CACHE" = 1 ] && warm=(--warm-cache)
[ "$DIGITS_STEPS" -gt 0 ] && bench perfect-recall "$DIGITS_STEPS" "${warm[@]}"
if [ "$TWIN_STEPS" -gt 0 ] && [ "$SECONDS" -le "$BUDGET" ]; then
  device=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  # JAX would otherwise take 75% of the GPU's memory up front, leaving PyTorch the rest
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 240 "$PY" benchmarks/torch_twin.py --steps "$TWIN_STEPS" --device "$device" > "$OUT/torch-twin.json" 2>> "$ERR" \
    || echo "torch_twin failed or timed out ($?)" | tee -a "$ERR"
  cat "$OUT/torch-twin.json"
fi
# gtmm's convolution forms were chosen for XLA's CPU backend; on a GPU, are XLA's own faster?
if [ "$AB_STEPS" -gt 0 ] && [ "$SECONDS" -le "$BUDGET" ]; then
  timeout 150 "$PY" benchmarks/networks_ab.py --model vrnn --steps "$AB_STEPS" > "$OUT/networks-ab.json" 2>> "$ERR" \
    || echo "networks_ab failed or timed out ($?)" | tee -a "$ERR"
  cat "$OUT/networks-ab.json"
fi
[ "$THREED_STEPS" -gt 0 ] && bench rotation-3d "$THREED_STEPS"
echo "done in $SECONDS s"
tail -n 5 "$ERR" 2>/dev/null
