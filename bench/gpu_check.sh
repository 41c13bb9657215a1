#!/usr/bin/env bash
# The GPU check, prepared for a machine with a CUDA GPU, PyTorch, numpy, scipy, matplotlib, opt_einsum, tqdm, pytest
# and hypothesis installed and no network (TensorLy, tensorly-torch and tntorch may come along as wheels in .whl/;
# teneva is NumPy-only, so its rows are CPU-only).
# Runs the GPU-marked tests and every benchmark with --device cuda, in well under 6 minutes, and writes what it measured
# into the folder given as its argument (default: bench/results/<date>-<device>):
#   bash bench/gpu_check.sh "$OUT"
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then   # peers brought as wheels (TensorLy, tensorly-torch, tntorch)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
device=$(python3 -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-') if torch.cuda.is_available() else 'no-cuda')")
out=${1:-bench/results/$(date -u +%Y-%m-%d)-$device}
mkdir -p "$out"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| TF32 in float32 matmul:', torch.backends.cuda.matmul.allow_tf32)"; } > "$out/device.txt"
status=0
# every GPU-marked test of the suite (tests/test_gpu.py and the chapters' CUDA tests)
gpu_tests=$(grep -l "mark.gpu" tests/test_*.py)
timeout 150 python3 -m pytest $gpu_tests -m gpu -q -p no:cacheprovider > "$out/test_gpu.txt" 2>&1 || status=1
timeout 90 python3 bench/cp_als.py --device cuda --size 200 --rank 16 > "$out/cp_als_float32.txt" 2>&1 || status=1
timeout 90 python3 bench/cp_als.py --device cuda --size 200 --rank 16 --dtype float64 > "$out/cp_als_float64.txt" 2>&1 || status=1
timeout 90 python3 bench/cp_als.py --device cuda --size 400 --rank 32 > "$out/cp_als_400_float32.txt" 2>&1 || status=1
timeout 90 python3 bench/layers.py --device cuda > "$out/layers.txt" 2>&1 || status=1
timeout 60 python3 bench/tt_plans.py --device cuda --set quick > "$out/tt_plans.txt" 2>&1 || status=1
timeout 45 python3 bench/tt_sweep_steps.py --device cuda --set quick > "$out/tt_sweep_steps.txt" 2>&1 || status=1
timeout 90 python3 bench/hosvd_tt.py --device cuda > "$out/hosvd_tt.txt" 2>&1 || status=1
timeout 90 python3 bench/cp_batched.py --device cuda --batch 200 --repeats 1 > "$out/cp_batched.txt" 2>&1 || status=1
tail -n 3 "$out"/*.txt
exit $status
