#!/usr/bin/env bash
# On the GPU machine: install the carried wheels, then run the JAX benchmarks into $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m benchmarks.bench_train --only "default (batch 128, cosine)" "batch 256, lr 0.1" \
  --seeds 0 1 2 3 4 --no-mlflow --save-model models/seed_0/model.keras
python3 -m benchmarks.bench_oip --full
python3 -m benchmarks.bench_precursor --all-maps
cp benchmarks/results/*.md benchmarks/results/*.json "$OUT"/
