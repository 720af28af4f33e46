"""Seed 003: a from-scratch NumPy Adam on (w - 1)^2, and the weights it printed.

The notebook starts at ``w = 0``, takes the gradient ``2w - 2``, runs Adam with
``eta=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8`` in float64 and prints the
weight after each update (``iteration t`` is the weight after ``t`` updates).
``adamjax.adam(0.01)`` with ``optax.apply_updates`` must reproduce those
numbers. (Its bias update divides ``db``, not ``db**2``, by the root; only the
weight is checked.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

# Copied from the seed's output, iteration -> weight.
PRINTED = {
    257: 0.9983202346112277,
    258: 0.9983944097882684,
    259: 0.9984656928634669,
    260: 0.998534181613794,
    264: 0.9987820538236523,
    270: 0.9990849986466379,
    275: 0.9992847491880505,
    279: 0.999415946296171,
    280: 0.9994452529521384,
}


def grad(w):
    return 2 * w - 2


@functools.cache
def weights_by_scan(num_steps: int) -> np.ndarray:
    tx = adamjax.adam(0.01)

    def body(carry, _):
        w, state = carry
        updates, state = tx.update(grad(w), state)
        w = optax.apply_updates(w, updates)
        return (w, state), w

    w0 = jnp.zeros((), jnp.float64)
    _, weights = jax.lax.scan(body, (w0, tx.init(w0)), length=num_steps)
    return np.asarray(weights)


def test_weight_after_iteration_257():
    weights = weights_by_scan(max(PRINTED))
    assert weights.dtype == np.float64
    assert abs(weights[256] - 0.9983202346112277) <= 1e-12


@pytest.mark.parametrize("iteration", sorted(PRINTED))
def test_printed_tail(iteration):
    weights = weights_by_scan(max(PRINTED))
    assert abs(weights[iteration - 1] - PRINTED[iteration]) <= 1e-12


def test_notebook_loop_with_a_jitted_step():
    # The notebook's own shape: a Python loop, one update per iteration.
    tx = adamjax.adam(0.01)

    @jax.jit
    def step(w, state):
        updates, state = tx.update(grad(w), state)
        return optax.apply_updates(w, updates), state

    w = jnp.zeros((), jnp.float64)
    state = tx.init(w)
    printed = {}
    for t in range(1, max(PRINTED) + 1):
        w, state = step(w, state)
        if t in PRINTED:
            printed[t] = float(w)
    assert int(optax.tree.get(state, "count")) == max(PRINTED)
    np.testing.assert_allclose(list(printed.values()), list(PRINTED.values()), rtol=0, atol=1e-12)


def test_notebook_transcription_agrees_with_its_printout():
    # The seed's AdamOptim.update for the weight, transcribed, reproduces the
    # printout -- so the numbers above are the notebook's Adam, not a typo.
    m = v = 0.0
    w = 0.0
    for t in range(1, 258):
        dw = 2 * w - 2
        m = 0.9 * m + (1 - 0.9) * dw
        v = 0.999 * v + (1 - 0.999) * dw**2
        m_corr = m / (1 - 0.9**t)
        v_corr = v / (1 - 0.999**t)
        w = w - 0.01 * (m_corr / (np.sqrt(v_corr) + 1e-8))
    assert abs(w - PRINTED[257]) <= 1e-15
