"""apply_step fuses the chains people write: clipping + AdamW with schedules, inject_hyperparams.

For each, the compiled step names the native kernel and the numbers equal
the two-call path (``tx.update`` + ``optax.apply_updates``, float32, 1e-6)
and optax's own optimizer; ``native_status(tx, params)`` says when and why a
step cannot be fused.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

KERNEL = 'custom_call_target="adamjax_adam_step"'
SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 30)

# The native marker: skipped with native_status()'s reason where the kernel was not
# built, failed instead under ADAMJAX_REQUIRE_NATIVE=1, which CI sets (tests/conftest.py).
pytestmark = pytest.mark.native


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax's own clipping and schedules are not clean under the suite's strict promotion."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def make_params():
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(40, 30)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=30), jnp.float32),
    }


def loss(params, x):
    return jnp.sum(jnp.tanh(x @ params["w"] + params["b"]) ** 2)


X = jnp.asarray(np.random.default_rng(1).normal(size=(16, 40)) * 3.0, jnp.float32)

CHAINS = {
    "clip+adamw(schedule)": (
        lambda: optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(SCHEDULE, weight_decay=0.1)),
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(SCHEDULE, weight_decay=0.1)),
    ),
    "clip+adam": (
        lambda: optax.chain(optax.clip_by_global_norm(0.5), adamjax.adam(1e-2)),
        lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2)),
    ),
    "inject(adamw)": (
        lambda: optax.inject_hyperparams(adamjax.adamw)(learning_rate=1e-2, weight_decay=0.05),
        lambda: optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2, weight_decay=0.05),
    ),
    "adamw(mask)": (
        lambda: adamjax.adamw(1e-2, weight_decay=0.1, mask={"w": True, "b": False}),
        lambda: optax.adamw(1e-2, weight_decay=0.1, mask={"w": True, "b": False}),
    ),
    "clip+adamw(schedule, callable mask)": (
        lambda: optax.chain(
            optax.clip_by_global_norm(1.0),
            adamjax.adamw(SCHEDULE, weight_decay=SCHEDULE, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
        ),
        lambda: optax.chain(
            optax.clip_by_global_norm(1.0),
            optax.adamw(SCHEDULE, weight_decay=SCHEDULE, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
        ),
    ),
    "clip+inject(adam)": (
        lambda: optax.chain(
            optax.clip_by_global_norm(1.0), optax.inject_hyperparams(adamjax.adam)(learning_rate=SCHEDULE)
        ),
        lambda: optax.chain(
            optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.adam)(learning_rate=SCHEDULE)
        ),
    ),
}


def fused_step(tx):
    @jax.jit
    def step(params, state):
        grads = jax.grad(loss)(params, X)
        return adamjax.apply_step(tx, grads, state, params)

    return step


def two_call_step(tx):
    @jax.jit
    def step(params, state):
        grads = jax.grad(loss)(params, X)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_is_fused_and_equals_the_two_call_path_and_optax(name):
    make, make_optax = CHAINS[name]
    tx, reference = make(), make_optax()
    params = make_params()
    assert adamjax.native_status(tx, params).startswith("fused")
    fused, two_calls, theirs = fused_step(tx), two_call_step(tx), two_call_step(reference)
    assert fused.lower(params, tx.init(params)).compile().as_text().count(KERNEL) >= 1
    # tx.update alone runs the kernel too, returning the updates for optax.apply_updates to add.
    two_call_text = two_calls.lower(params, tx.init(params)).compile().as_text()
    assert KERNEL in two_call_text and "updates = true" in two_call_text
    a, c = (params, tx.init(params)), (params, reference.init(params))
    for _ in range(12):
        # Each step from the same point: the kernel's step equals the two-call step
        # (a closed loop would compound the kernel's ~1e-7 reciprocal rounding).
        b = two_calls(*a)
        a, c = fused(*a), theirs(*c)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    for x, y in zip(jax.tree.leaves(a[0]), jax.tree.leaves(c[0]), strict=True):
        # optax computes 1 - b**t in float32 (1e-5 relative at t = 1), and the loop compounds it
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)


def test_injected_values_change_without_retracing():
    tx = optax.inject_hyperparams(adamjax.adam)(learning_rate=1e-2)
    params = make_params()
    state = tx.init(params)
    step = fused_step(tx)
    for rate in (1e-2, 3e-3, 1e-3):
        state = adamjax.set_hyperparams(state, learning_rate=rate)
        params, state = step(params, state)
    assert step._cache_size() == 1


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: optax.sgd(0.1), "no adamjax Adam or AdamW alias"),
        (lambda: adamjax.amsgrad(0.1), "amsgrad: the amsgrad variant has no native kernel"),
        (lambda: optax.apply_if_finite(adamjax.adam(0.1), 3), "changes the adamjax alias's updates"),
        (lambda: optax.MultiSteps(adamjax.adam(0.1), 2), "the native kernel computes the updates of adam"),
        (lambda: adamjax.adam(0.1, mu_dtype=jnp.float16), "are not the kernel's"),
        # StableAdamW's decay is inside the core (the clipping scales it): not the kernel's AdamW.
        (lambda: adamjax.stable_adamw(0.1), "stable_adamw: the clipped decoupled decay variant has no native kernel"),
    ],
)
def test_native_status_names_why_a_step_is_not_fused(make, reason):
    status = adamjax.native_status(make(), make_params())
    assert status.startswith("not fused: ") and reason in status, status


def test_a_step_that_is_not_fused_still_equals_optax():
    tx, reference = optax.apply_if_finite(adamjax.adam(1e-2), 3), optax.apply_if_finite(optax.adam(1e-2), 3)
    params = make_params()
    a, c = (params, tx.init(params)), (params, reference.init(params))
    fused, theirs = fused_step(tx), two_call_step(reference)  # built once: a new closure per step would retrace it
    for _ in range(5):
        a, c = fused(*a), theirs(*c)
    for x, y in zip(jax.tree.leaves(a[0]), jax.tree.leaves(c[0]), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


WRAPPED = {
    "apply_if_finite(adam)": lambda: optax.apply_if_finite(adamjax.adam(1e-2), 3),
    "apply_if_finite(clip+adamw(schedule))": lambda: optax.apply_if_finite(
        optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(SCHEDULE, weight_decay=0.1)), 3
    ),
    "MultiSteps(adamw)": lambda: optax.MultiSteps(adamjax.adamw(1e-2, weight_decay=0.1), 2).gradient_transformation(),
}


@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_a_wrapper_that_changes_the_updates_runs_the_kernel_inside_it(name):
    # The wrapper's lax.cond returns updates (zeros on a skipped step), so apply_step runs the
    # kernel inside it for the updates and optax.apply_updates adds them: two passes, and a
    # skipped step leaves the parameters and the inner state bit for bit as they were.
    tx = WRAPPED[name]()
    params = make_params()
    status = adamjax.native_status(tx, params)
    assert status.startswith("not fused: ") and status.endswith("(two passes)"), status

    @jax.jit
    def fused(params, state, grads):
        return adamjax.apply_step(tx, grads, state, params)

    @jax.jit
    def two_calls(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    text = fused.lower(params, tx.init(params), params).compile().as_text()
    assert text.count(KERNEL) == 1 and "updates = true" in text  # the first trace's step is gone
    grads = jax.grad(loss)(params, X)
    nan_grads = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads)
    a = b = (params, tx.init(params))
    for i in range(8):
        g = nan_grads if i in (3, 4) else jax.tree.map(lambda x, i=i: x * (1.0 + 0.1 * i), grads)
        before = a
        a, b = fused(*a, g), two_calls(*b, g)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
        if i in (3, 4) and name.startswith("apply_if_finite"):
            for x, y in zip(
                jax.tree.leaves((before[0], before[1].inner_state)),
                jax.tree.leaves((a[0], a[1].inner_state)),
                strict=True,
            ):
                np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0]["w"], params["w"])


def test_native_status_needs_params_with_a_transformation():
    with pytest.raises(TypeError, match=r"`native_status\(tx, params\)`: give the parameters"):
        adamjax.native_status(adamjax.adam(0.1))


# ---------------------------------------------------------------- flax nnx (adamjax.nnx.Optimizer)


def _nnx_run(optimizer_class, make_tx, steps=6):
    from flax import nnx  # in the `test` extra (through `examples`)

    model = nnx.Sequential(nnx.Linear(40, 30, rngs=nnx.Rngs(0)), nnx.tanh, nnx.Linear(30, 1, rngs=nnx.Rngs(1)))
    optimizer = optimizer_class(model, make_tx(), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x):
        grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
        optimizer.update(model, grads)

    for _ in range(steps):
        train_step(model, optimizer, X)
    return model, optimizer, train_step


@pytest.mark.parametrize("name", sorted(set(CHAINS) - {"adamw(mask)"}))  # that mask names make_params()'s arrays
def test_nnx_optimizer_is_one_fused_step_equal_to_nnx_and_optax(name):
    """``adamjax.nnx.Optimizer`` (a one-line change) fuses; the numbers are ``nnx.Optimizer``'s."""
    from flax import nnx

    import adamjax.nnx

    make, make_optax = CHAINS[name]
    model, optimizer, train_step = _nnx_run(adamjax.nnx.Optimizer, make)
    reference_model, reference, _ = _nnx_run(nnx.Optimizer, make)
    optax_model, _, _ = _nnx_run(nnx.Optimizer, make_optax)
    hlo = train_step.lower(model, optimizer, X).compile().as_text()
    assert hlo.count(KERNEL) >= 1
    # The fused step writes the parameters itself: no separate add of the updates to them.
    assert isinstance(optimizer, nnx.Optimizer) and int(optimizer.step[...]) == 6
    assert jax.tree.structure(nnx.state(optimizer)) == jax.tree.structure(nnx.state(reference))
    for x, y in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(reference_model)), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    for x, y in zip(jax.tree.leaves(nnx.state(optimizer)), jax.tree.leaves(nnx.state(reference)), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    for x, y in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(optax_model)), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)


def test_nnx_optimizer_returns_the_updates_and_passes_extra_arguments_on():
    from flax import nnx

    import adamjax.nnx

    def scaled_by_extra_argument():
        def update(updates, state, params=None, *, scale):
            return jax.tree.map(lambda u: scale * u, updates), state

        return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)

    results = []
    extra = optax.chain(adamjax.adam(0.1), scaled_by_extra_argument())
    for optimizer_class, tx, kwargs in (
        (adamjax.nnx.Optimizer, adamjax.adam(0.1), {}),
        (nnx.Optimizer, adamjax.adam(0.1), {}),
        (adamjax.nnx.Optimizer, extra, {"scale": 0.5}),
        (nnx.Optimizer, extra, {"scale": 0.5}),
    ):
        model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
        before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
        optimizer = optimizer_class(model, tx, wrt=nnx.Param)
        grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((1, 3))) ** 2))(model)
        updates = optimizer.update(model, grads, **kwargs)
        after = nnx.state(model, nnx.Param)
        for u, b, a in zip(jax.tree.leaves(updates), jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
            np.testing.assert_allclose(a - b, u, rtol=1e-6, atol=1e-7)  # the updates it returns are the ones taken
        results.append(jax.tree.leaves(after))
    for ours, theirs in ((results[0], results[1]), (results[2], results[3])):
        for x, y in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    # The extra argument reached the chain: half of Adam's first step of 0.1.
    np.testing.assert_allclose(np.abs(results[2][0] - results[0][0]), 0.05, rtol=1e-5)
