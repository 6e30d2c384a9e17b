#!/usr/bin/env bash
# Issue 7's GPU figures, step 1 of 2, on the CPU machine: gather into .device/ (git-ignored) what the
# lent GPU machine lacks and cannot fetch (it has no network; its image has JAX with CUDA, Equinox,
# Optax, PyTorch): the wheels gtmm and the `dnc` package need there, the MNIST test set, and 40
# rendered rotation-3d episodes. About 7 MB, under the device tool's 64 MiB for a call.
#
#   bash benchmarks/gpu_prepare.sh            # needs pip and gtmm's 3d extra here; ../shared/data beside the project
#
# Step 2, in one call of the device tool: run(command="bash benchmarks/gpu_session.sh", carry=[".device"]).
set -euo pipefail
cd "$(dirname "$0")/.."
GTMM=${GTMM:-.venv/bin/gtmm}
PIP=${PIP:-.venv/bin/pip}
rm -rf .device.tmp && mkdir -p .device.tmp/whl .device.tmp/data/mnist
# pure-Python wheels the device image lacks (its pip list: ../.library/device/KINDS.md); flann is
# imported by dnc's sparse memories only, which the benchmark does not build
"$PIP" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .device.tmp/whl \
  platformdirs mlxtend dnc==1.1.0
cp "${SHARED_DATA:-../shared/data}"/mnist/t10k-*-ubyte.gz .device.tmp/data/mnist/
GTMM_DATA=.device.tmp/data "$GTMM" data generate-3d --episodes 40 --out .device.tmp/data/rotation-3d
rm -rf .device && mv .device.tmp .device
du -sh .device
