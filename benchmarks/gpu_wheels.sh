#!/usr/bin/env bash
# Wheels for the lent GPU machine (Python 3.12, x86-64, no network there): what gpu_smoke.py needs beyond the
# machine's own image (torch, accelerate, safetensors, numpy, tqdm, pyyaml, huggingface_hub and tokenizers are
# in it). Run here, in the repository root; `.whl/` is git-ignored and travels with `carry: [".whl"]`.
# docs/benchmarks.md ("The first GPU run") gives the device command that installs them and runs the smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl \
    miditok==3.1.0 symusic==0.6.0 pySmartDL==1.3.4 platformdirs==4.14.8
ls -1 .whl
du -sh .whl
