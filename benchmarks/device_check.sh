#!/usr/bin/env bash
# The GPU check of a session lent a device (benchmarks/README.md): one JSON of the CUDA tests,
# the update oracle cases on CUDA (TF32 off), forward and training-step times at 500 x 500,
# the official reader's throughput and the hours each voc2011.sh stage would take.
#   bash benchmarks/device_check.sh [--out device_check.json] [--dry-run]
# It runs from any folder; --dry-run checks the script on the CPU at a small size.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export NVIDIA_TF32_OVERRIDE=0  # no TF32 in any cuBLAS/cuDNN call: float32 as Caffe computes it
exec "${PYTHON:-python}" "$here/device_check.py" "$@"
