#!/usr/bin/env bash
# The test suite on the oldest releases adamjax declares it supports.
#
# pyproject.toml's floors: jax 0.10.1, optax 0.2.8 (0.2.7 is the first whose amsgrad
# takes bias_correction_mu/nu, the signature adamjax mirrors, but it sets a jax config
# option that jax 0.10 no longer has), and the extras' flax 0.12.7
# (the first with nnx.as_pure, which adamjax.nnx uses; it needs jax>=0.10.0) and
# orbax-checkpoint 0.12.0 (numpy's floor is jax's). jax 0.10.1 rather than 0.10.0: on
# 0.10.0, three kernel tests failed, XLA's pure-JAX quantized step differing from the native
# kernel in the last bit of a few elements (the suite checks they are equal).
# Found by running this script: on jax 0.7.2, optax 0.2.5 and flax 0.12.0, 28 tests
# failed (optax 0.2.5's amsgrad signature and schedule state, flax's missing
# nnx.as_pure, jax 0.7.2's sharding printouts). This installs exactly those into a virtualenv
# that sees the rest of this environment (--system-site-packages: torch,
# matplotlib, pytest), builds the native kernel against that jaxlib's headers in
# a copy of the checkout, and runs the whole suite there.
#
# Last run (2026-12-07, jax 0.10.1, optax 0.2.8, flax 0.12.7, orbax-checkpoint 0.12.0):
# all 4,160 passed in 6 min 18 s (7 min with the installs). The TPU quickstart notebook's
# committed losses are compared digit for digit only on the jax that recorded them.
#
# Run: bash .ci/floors.sh   (about 10 minutes on 2 cores, plus the downloads)
set -euo pipefail
cd "$(dirname "$0")/.."
FLOORS=("setuptools>=77" "jax==0.10.1" "jaxlib==0.10.1" "optax==0.2.8" "flax==0.12.7" "orbax-checkpoint==0.12.0")  # setuptools: to build the kernel there
work="${ADAMJAX_FLOORS_DIR:-$(mktemp -d)}"
python -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet "${FLOORS[@]}"
mkdir -p "$work/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$work/src/"
cd "$work/src"
ADAMJAX_REQUIRE_NATIVE=1 "$work/venv/bin/python" setup.py --quiet build_ext --inplace
"$work/venv/bin/python" -c "import jax, optax, adamjax; print('floors:', jax.__version__, optax.__version__, adamjax.native_status())"
ADAMJAX_REQUIRE_NATIVE=1 "$work/venv/bin/python" -m pytest -n auto -q -p no:cacheprovider
