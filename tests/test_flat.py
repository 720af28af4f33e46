"""Flat parameters with gradients taken through ``FlatParams.unflatten``: cost and numbers.

The gradient of a loss of ``flat.unflatten()`` must compile to one
concatenation per dtype buffer (no padded full-size buffer per array, summed:
that costs arrays x parameters), must equal ``jax.grad`` of the same loss on
the tree, and the flat triple fed those gradients must follow optax's Adam and
the tree triple step for step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import optimizers


def _model(arrays: int = 40, *, mixed: bool = False, seed: int = 0) -> dict:
    """``arrays`` parameter arrays of a few shapes (some repeated, as in a transformer)."""
    rng = np.random.default_rng(seed)
    shapes = [(6, 5), (5,), (5, 12), (12,), (), (3, 2, 2)]
    tree = {f"p{i:03d}": jnp.asarray(rng.normal(size=shapes[i % len(shapes)]), jnp.float32) for i in range(arrays)}
    if mixed:
        tree["half_a"] = jnp.asarray(rng.normal(size=(4, 3)), jnp.bfloat16)
        tree["half_b"] = jnp.asarray(rng.normal(size=5), jnp.bfloat16)
        tree["wide"] = jnp.asarray(rng.normal(size=7), jnp.float16)
    return tree


def _loss(tree):
    # Different per-array terms so that a gradient landing in the wrong slot shows.
    total = jnp.zeros((), jnp.float32)
    for index, leaf in enumerate(jax.tree.leaves(tree)):
        x = leaf.astype(jnp.float32)
        total = total + jnp.sum(jnp.sin(x + 0.1 * index) * (index + 1)) + 0.5 * jnp.sum(x * x)
    return total


def _flat_grad(flat):
    return jax.grad(lambda f: _loss(f.unflatten()))(flat)


# The references (the gradient on the tree) are compiled: eagerly, every one of
# the loss's per-array operations is dispatched (and differentiated) separately.
_tree_grad = jax.jit(jax.grad(_loss))


def _op_count(hlo: str, op: str) -> int:
    return hlo.count(f" {op}(")


def test_unflatten_gradient_is_one_concatenate_per_buffer():
    params = _model(60, mixed=True)
    flat = adamjax.FlatParams.from_tree(params)
    assert flat.layout.dtypes == ("bfloat16", "float32", "float16")  # in tree order
    hlo = jax.jit(_flat_grad).lower(flat).compile().as_text()
    assert _op_count(hlo, "pad") == 0
    # One per buffer holding several arrays (float16 holds one: its gradient is that array's).
    assert _op_count(hlo, "concatenate") == 2
    # No full-buffer additions: every add works on one array's elements (the
    # loss's own sums), none on a whole dtype buffer.
    f32_size = flat.layout.sizes[1]
    assert f"f32[{f32_size}]{{0}} add(" not in hlo


def test_unflatten_gradient_equals_the_tree_gradient():
    params = _model(30, mixed=True)
    flat = adamjax.FlatParams.from_tree(params)
    expected = _tree_grad(params)
    for got in (_flat_grad(flat), jax.jit(_flat_grad)(flat)):
        assert isinstance(got, adamjax.FlatParams)
        assert got.layout == flat.layout
        for key, leaf in got.unflatten().items():
            want = expected[key]
            assert leaf.dtype == want.dtype and leaf.shape == want.shape
            np.testing.assert_allclose(np.asarray(leaf, np.float64), np.asarray(want, np.float64), rtol=1e-6)


def test_unflatten_gives_the_arrays_back_eagerly_jitted_and_vmapped():
    params = _model(20, mixed=True)
    flat = adamjax.FlatParams.from_tree(params)
    for tree in (flat.unflatten(), jax.jit(lambda f: f.unflatten())(flat)):
        assert jax.tree.structure(tree) == jax.tree.structure(params)
        for key, leaf in tree.items():
            assert leaf.dtype == params[key].dtype
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(params[key]))
    # A batch of three models: buffers with a leading axis.
    batch = jax.tree.map(lambda b: jnp.stack([b, 2 * b, -b]), flat)
    trees = jax.vmap(lambda f: f.unflatten())(batch)
    for key, leaf in trees.items():
        np.testing.assert_array_equal(np.asarray(leaf[1]), np.asarray(2 * params[key]))
    grads = jax.jit(jax.vmap(_flat_grad))(batch)  # the gradient through vmap's batched unflatten, compiled once
    negated = _tree_grad(jax.tree.map(lambda p: -p, params))
    for key, leaf in jax.vmap(lambda g: g.unflatten())(grads).items():
        np.testing.assert_allclose(
            np.asarray(leaf[2], np.float64), np.asarray(negated[key], np.float64), rtol=1e-6, atol=1e-6
        )


def test_unflatten_supports_forward_mode_and_second_derivatives():
    params = _model(8)
    flat = adamjax.FlatParams.from_tree(params)
    direction = jax.tree.map(jnp.ones_like, flat)
    ones = jax.tree.map(jnp.ones_like, params)
    # Each derivative compiled once (eagerly, every per-array operation is compiled on its own).
    _, tangent = jax.jit(lambda f, d: jax.jvp(lambda f: _loss(f.unflatten()), (f,), (d,)))(flat, direction)
    _, want = jax.jit(lambda p, d: jax.jvp(_loss, (p,), (d,)))(params, ones)
    np.testing.assert_allclose(float(tangent), float(want), rtol=1e-6)
    hvp = jax.jit(lambda f, d: jax.jvp(_flat_grad, (f,), (d,))[1])(flat, direction)
    want_hvp = jax.jit(lambda p, d: jax.jvp(jax.grad(_loss), (p,), (d,))[1])(params, ones)
    np.testing.assert_allclose(
        np.asarray(hvp.buffers[0]), np.asarray(adamjax.FlatParams.from_tree(want_hvp).buffers[0]), rtol=1e-5, atol=1e-6
    )


def test_flat_buffers_hold_the_leaves_in_order():
    params = _model(12, mixed=True)
    flat = adamjax.FlatParams.from_tree(params)
    f32 = [np.asarray(v).ravel() for v in params.values() if v.dtype == jnp.float32]
    np.testing.assert_array_equal(np.asarray(flat.buffers[1]), np.concatenate(f32))
    # Traced leaves go through XLA's concatenate instead of NumPy's: same buffers.
    traced = jax.jit(adamjax.FlatParams.from_tree)(params)
    for a, b in zip(traced.buffers, flat.buffers, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _adam_reference(params, steps, lr):
    """optax's Adam on the tree, gradients of the same loss (optax needs standard promotion)."""
    tx = optax.adam(lr)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(_loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    with jax.numpy_dtype_promotion("standard"):
        state = tx.init(params)
        for _ in range(steps):
            params, state = step(params, state)
    return params


@pytest.mark.parametrize("jit_step", [False, True], ids=["update", "user-jit-donated"])
def test_flat_triple_with_flat_gradients_follows_optax_and_the_tree_triple(jit_step):
    params, steps, lr = _model(40), 6, 1e-2
    flat = optimizers.from_transformation(adamjax.adam(lr), flat=True)
    tree = optimizers.from_transformation(adamjax.adam(lr))

    flat_grad = jax.jit(_flat_grad)  # the gradient compiled; without jit_step, update_fn is still called eagerly

    def flat_step(i, state):
        return flat.update_fn(i, flat_grad(state.params), state)

    if jit_step:
        flat_step = jax.jit(flat_step, donate_argnums=1)
    flat_state, tree_state = flat.init_fn(params), tree.init_fn(params)
    for t in range(steps):
        flat_state = flat_step(t, flat_state)
        tree_state = tree.update_fn(t, _tree_grad(tree.params_fn(tree_state)), tree_state)
    got, via_tree, reference = (
        flat.params_fn(flat_state),
        tree.params_fn(tree_state),
        _adam_reference(params, steps, lr),
    )
    for key in params:
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(via_tree[key]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(reference[key]), rtol=1e-6, atol=1e-7)
        assert not np.allclose(np.asarray(got[key]), np.asarray(params[key]))  # it did move


def test_flat_triple_with_mixed_dtypes_keeps_one_buffer_per_dtype():
    params = _model(10, mixed=True)
    flat = optimizers.from_transformation(adamjax.adamw(1e-2, weight_decay=0.1), flat=True)
    tree = optimizers.from_transformation(adamjax.adamw(1e-2, weight_decay=0.1))
    flat_state, tree_state = flat.init_fn(params), tree.init_fn(params)
    assert [b.dtype.name for b in flat_state.params.buffers] == ["bfloat16", "float32", "float16"]
    step = jax.jit(lambda s: flat.update_fn(0, _flat_grad(s.params), s))
    for t in range(3):
        flat_state = step(flat_state)
        tree_state = tree.update_fn(t, _tree_grad(tree.params_fn(tree_state)), tree_state)
    got, want = flat.params_fn(flat_state), tree.params_fn(tree_state)
    for key in params:
        assert got[key].dtype == params[key].dtype
        np.testing.assert_allclose(
            np.asarray(got[key], np.float64), np.asarray(want[key], np.float64), rtol=1e-6, atol=1e-7
        )


def test_flat_init_compiles_no_per_array_work():
    """Concrete parameters are concatenated by NumPy; inside ``jit`` by one XLA concatenate."""
    params = {f"p{i:03d}": jnp.full((3, 4), float(i), jnp.float32) for i in range(200)}
    init, _, get_params = optimizers.from_transformation(adamjax.adam(1e-3), flat=True)
    state = init(params)
    np.testing.assert_array_equal(np.asarray(state.params.buffers[0]), np.repeat(np.arange(200.0), 12))
    hlo = jax.jit(init).lower(params).compile().as_text()
    assert _op_count(hlo, "concatenate") == 1
    assert _op_count(hlo, "dynamic-update-slice") == 0 and _op_count(hlo, "scatter") == 0
    np.testing.assert_array_equal(np.asarray(get_params(state)["p123"]), np.full((3, 4), 123.0))
