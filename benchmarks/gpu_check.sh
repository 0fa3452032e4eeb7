#!/usr/bin/env bash
# The GPU session, in one script (about 10 minutes on an H100/H200): run from the repository root.
#   1. CUDA-only tests: no sync in a training step, Triton kernels vs the PyTorch fused LIF;
#   2. training-step speed of ours (loop, fused, compiled) vs SpikingJelly at T=1 and T=4;
#   3. time to the paper's 93.39 % on full Fashion-MNIST at T=1, all binary.
# Results: runs/train_speed_gpu.json, runs/tta_gpu.json; record them in docs/performance.md.
set -euo pipefail
PY=${PY:-python}
DATA=${DATA:-../shared/data}
export PYTHONPATH=$PWD
mkdir -p runs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    || echo "Triton missing: lif_backend=auto falls back to the PyTorch fused LIF"
$PY -m pytest -q -p no:cacheprovider -rs tests/test_hot_path.py tests/test_fused_lif.py -k "gpu or triton" \
    || echo "CUDA TESTS FAILED (the benchmarks still run)"
$PY -m pip install -q --no-deps spikingjelly==2.0.0 loguru
$PY benchmarks/train_speed.py --device cuda --data-dir "$DATA" --time-steps 1 4 --json runs/train_speed_gpu.json
$PY benchmarks/time_to_accuracy.py --data-dir "$DATA" --target 93.39 \
    --set device=cuda --set width=1.0 --set epochs=20 --set batch_size=256 --set channels_last=true \
    --json runs/tta_gpu.json
