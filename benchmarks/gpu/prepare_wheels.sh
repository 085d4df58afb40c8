#!/usr/bin/env bash
# Download the pure-Python (and cp312 binary) wheels the GPU machine lacks into .whl/ (git-ignored).
# The device image has numpy, scipy, matplotlib, pillow, pyyaml, h5py, rich, absl-py, ml-dtypes,
# packaging and JAX; it lacks keras and Hydra. Python there is 3.12.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
pip_download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$@"
}
pip_download keras==3.15.1 namex==0.1.0 optree==0.20.0 omegaconf==2.3.1 hydra-core==1.3.8
# antlr4 4.9.3 (Hydra's pin) ships as an sdist only: build its wheel here.
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
du -sh .whl && ls .whl
