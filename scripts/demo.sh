#!/usr/bin/env bash
# The main job: installs flash-kda and runs the demo, which builds a realistic
# problem, runs the forward on the best device present (the GPU if one with
# kernels is there, else the CPU backend at a size that finishes in seconds),
# checks it against the float64 reference and prints time, tokens/s and
# bandwidth. Arguments go to the demo (python -m flash_kda.demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -r requirements/test.txt
python3 -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps .
exec python3 -m flash_kda.demo "$@"
