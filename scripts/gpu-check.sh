#!/usr/bin/env bash
# One short GPU check of the torch backend (daemon/backends/torch/gpu_check.py): random-initialised
# Qwen3-0.6B- and Qwen3-8B-shaped models (no download, no network), driven through the worker's
# protocol generate -> score -> train -> save -> reload, then a markdown table of train tokens/s,
# MFU, peak memory and generate tokens/s to set beside DESIGN.md's baseline table.
# Needs a Python with torch and transformers (CLAWRL_PYTHON, default python3) and one GPU; about
# 5 minutes on one H100, cut off at 9. Each model's row prints as soon as it is measured.
# `--dry-run` runs the same path on the CPU at small sizes: with the torch-only test model (any
# machine with torch), or `--dry-run --models tiny-qwen3` through transformers. `--models 0.6b`
# runs one model; `--gpus N` runs the worker under torchrun (FSDP), as the daemon's --gpus N.
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 540 "${CLAWRL_PYTHON:-python3}" -B daemon/backends/torch/gpu_check.py "$@"
