"""Seed 001: the notebook's two-layer MLP, trained by adamjax.adam and by torch.optim.Adam.

``N, D_in, H, D_out = 64, 1000, 100, 10``; ``Linear(D_in, H) -> ReLU ->
Linear(H, D_out)``, ``MSELoss(reduction='sum')``, ``lr=1e-4``, 500 steps. The
model is written here in plain ``jax.numpy`` from the very weights
``nn.Linear`` initialised in torch (layout ``[out, in]``), on the same data;
the torch losses come from ``torch_reference`` (live when torch is installed,
recorded otherwise).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch_reference as ref

import adamjax

CHECKPOINTS = [99, 199, 299, 399, 499]  # where the notebook prints the loss


def mlp_loss(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    """torch's ``Sequential(Linear, ReLU, Linear)`` and ``MSELoss(reduction='sum')``."""
    hidden = jax.nn.relu(x @ params["W1"].T + params["b1"])
    prediction = hidden @ params["W2"].T + params["b2"]
    return jnp.sum((prediction - y) ** 2)


@functools.cache
def adamjax_losses(dtype: type) -> np.ndarray:
    """adamjax.adam(1e-4) on the notebook's loop: the loss before each of the 500 steps."""
    params = {name: jnp.asarray(w, dtype) for name, w in ref.mlp_initial_weights().items()}
    x, y = (jnp.asarray(a, dtype) for a in ref.mlp_data())
    tx = adamjax.adam(ref.MLP_LR)

    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    _, losses = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), length=ref.MLP_STEPS))(params)
    assert losses.dtype == dtype
    return np.asarray(losses, np.float64)


def test_initial_weights_have_torch_linear_layout():
    _, d_in, hidden, d_out = ref.MLP_SIZES
    weights = ref.mlp_initial_weights()
    shapes = {name: w.shape for name, w in weights.items()}
    assert shapes == {"W1": (hidden, d_in), "b1": (hidden,), "W2": (d_out, hidden), "b2": (d_out,)}
    # nn.Linear's default init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
    for name, fan_in in (("W1", d_in), ("b1", d_in), ("W2", hidden), ("b2", hidden)):
        assert weights[name].dtype == np.float32
        bound = 1 / np.sqrt(fan_in)
        assert 0.9 * bound < np.max(np.abs(weights[name])) <= bound, name


def test_float64_losses_match_torch_at_every_step():
    expected = ref.mlp_torch_losses()
    ours = adamjax_losses(jnp.float64)
    assert ours.shape == expected.shape == (ref.MLP_STEPS,)
    relative = np.abs(ours - expected) / expected
    assert np.max(relative) < 1e-8
    # Also the same loss before the first step: same weights, same data, same model.
    assert relative[0] < 1e-14


def test_losses_fall_like_the_notebooks():
    """The notebook prints 63, 1.7, 9.8e-3, 1.4e-4, 1.4e-5 at steps 99..499 (its own data)."""
    for losses in (ref.mlp_torch_losses(), adamjax_losses(jnp.float64)):
        at = losses[CHECKPOINTS]
        assert losses[99] < 0.5 * losses[0]
        assert np.all(np.diff(at) < 0)
        assert at[-1] < 1e-2 * at[0]
        assert at[-1] < 1e-3


def test_float32_follows_float64():
    """The same training in float32 keeps to the float64 losses while they are large."""
    single = adamjax_losses(jnp.float32)
    double = adamjax_losses(jnp.float64)
    relative = np.abs(single - double) / double
    assert relative[99] < 1e-3
    assert np.max(relative[:100]) < 1e-3
    assert single[499] < 1e-2 * single[99]
