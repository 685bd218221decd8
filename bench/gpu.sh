#!/usr/bin/env bash
# The checks that need a CUDA GPU, for a machine that has one (CI has none):
#
#   bash bench/gpu.sh tests [OUT_DIR]   # tests/models/test_cuda.py (tiny encoder, seconds)
#   bash bench/gpu.sh bench [OUT_DIR]   # bench/classifier.py, every CPU and CUDA mode (minutes)
#   bash bench/gpu.sh all   [OUT_DIR]   # both
#
# Runs under $PYTHON (default python3), which needs torch with CUDA and the project's
# imports (pip install -e . does it; on a machine that cannot reach PyPI, carry
# wheels and put them on PYTHONPATH). Where the bundled base is not installed as a
# package, point FINSENTRY_MODEL_BASE_MODEL_DIR at a copy of it: the registry checks
# its hash. Logs and the benchmark's JSON go to OUT_DIR (default bench/results).
set -uo pipefail
what=${1:-all}
out=${2:-bench/results}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
status=0
if [[ $what == tests || $what == all ]]; then
    "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider tests/models/test_cuda.py 2>&1 | tee "$out/gpu_tests.log"
    status=$(( status || PIPESTATUS[0] ))
fi
if [[ $what == bench || $what == all ]]; then
    "${PYTHON:-python3}" bench/classifier.py --out "$out/classifier.cuda.json" 2>&1 | tee "$out/classifier_cuda.log"
    status=$(( status || PIPESTATUS[0] ))
fi
exit "$status"
