"""adamjax's newer members against the independent float64 references, closed loop.

The references are NumPy transcriptions that import neither JAX nor adamjax:
``tests/family_reference.py`` (the papers' algorithms, with the frameworks'
conventions as switches), ``tests/numpy_reference.py`` (the classic variants)
and the recorded ``torch.optim.RAdam`` / ``torch.optim.NAdam`` runs of
``tests/family_torch.py`` (live when torch is installed). Each run is at least
60 steps of a least-squares loss over a matrix, a vector and a scalar, whose
gradient couples every parameter to every other, so a difference in one step
of one array moves every later step of all of them. The loss is smooth: on an
oscillating loss NAdam is chaotic and no tolerance would be meaningful.

Tolerances: 1e-12 relative against the NumPy references (both sides compute
in float64, the differences are reorderings of the same operations); 1e-10
against torch, which sums, squares and takes roots in its own order (as
``tests/test_family_reference.py`` holds the transcription to torch).
"""

from __future__ import annotations

import math

import family_reference as fam
import family_torch
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import pytest
import torch_reference as tr

import adamjax
from adamjax import optimizers

STEPS = 64
RTOL = 1e-12
ATOL = 1e-14  # for entries that pass through 0
TORCH_RTOL = 1e-10
TORCH_ATOL = 1e-13

# --------------------------------------------------------------------------------------------------------------
# The problem: 0.5 * mean((X theta - y)^2) over the flattened parameters (a 3x4 matrix, a 5-vector, a scalar).
# --------------------------------------------------------------------------------------------------------------

SHAPES = {"m": (3, 4), "v": (5,), "s": ()}
_RNG = np.random.RandomState(1313)
_SIZE = sum(math.prod(shape) for shape in SHAPES.values())
X = _RNG.standard_normal((2 * _SIZE, _SIZE)) / math.sqrt(_SIZE)
Y = _RNG.standard_normal(2 * _SIZE)
START = {key: _RNG.uniform(-1.0, 1.0, shape) for key, shape in SHAPES.items()}


def flatten(params: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.reshape(np.asarray(params[key], np.float64), -1) for key in SHAPES])


def unflatten(vector: np.ndarray) -> dict[str, np.ndarray]:
    out, offset = {}, 0
    for key, shape in SHAPES.items():
        size = math.prod(shape)
        out[key] = vector[offset : offset + size].reshape(shape)
        offset += size
    return out


def least_squares_grad(params: dict[str, np.ndarray], t: int = 0) -> dict[str, np.ndarray]:
    """The gradient of ``0.5 * mean((X theta - y)^2)``, in NumPy float64."""
    residual = X @ flatten(params) - Y
    return unflatten(X.T @ residual / len(Y))


def jumping_grad(params: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    """The same loss scaled by 20 from step 30 on: the gradient outruns its second moment (StableAdamW clips)."""
    scale = 20.0 if t >= 30 else 1.0
    return {key: scale * value for key, value in least_squares_grad(params).items()}


def test_the_gradient_is_jax_grad_of_the_loss():
    def loss(params):
        theta = jnp.concatenate([jnp.reshape(params[key], -1) for key in SHAPES])
        residual = jnp.asarray(X) @ theta - jnp.asarray(Y)
        return 0.5 * jnp.mean(residual * residual)

    expected = jax.jit(jax.grad(loss))({k: jnp.asarray(v, jnp.float64) for k, v in START.items()})  # one program
    for key, value in least_squares_grad(START).items():
        np.testing.assert_allclose(value, np.asarray(expected[key]), rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------------------------------------------
# Runners: adamjax through both APIs, the references, and the comparison.
# --------------------------------------------------------------------------------------------------------------


def run_transformation(tx, grad_fn=least_squares_grad, steps=STEPS, start=None):
    """adamjax's closed loop: the gradient at the current parameters, one ``update`` per step (jitted)."""
    params = {k: jnp.asarray(v, jnp.float64) for k, v in (start or START).items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    path = []
    for t in range(1, steps + 1):
        grads = grad_fn({k: np.asarray(v) for k, v in params.items()}, t)
        updates, state = update({k: jnp.asarray(v, jnp.float64) for k, v in grads.items()}, state, params)
        params = optax.apply_updates(params, updates)
        path.append({k: np.asarray(v) for k, v in params.items()})
    return path, state


def run_triple(triple, grad_fn=least_squares_grad, steps=STEPS):
    """The same loop through an ``(init, update, get_params)`` triple."""
    init, update, get_params = triple
    state = init({k: jnp.asarray(v, jnp.float64) for k, v in START.items()})
    path = []
    for i in range(steps):
        params = {k: np.asarray(v) for k, v in get_params(state).items()}
        grads = grad_fn(params, i + 1)
        state = update(i, {k: jnp.asarray(v, jnp.float64) for k, v in grads.items()}, state)
        path.append({k: np.asarray(v) for k, v in get_params(state).items()})
    return path


def run_reference(name, grad_fn=least_squares_grad, steps=STEPS, **hyper):
    return fam.run(name, grad_fn, dict(START), steps, **hyper)


def run_classic_cautious(variant, learning_rate, decoupled=0.0, steps=STEPS):
    """numpy_reference's classic variant with the cautious mask of family_reference on its direction.

    ``theta <- theta - lr (phi(u) + decoupled * theta)``, with ``u`` the variant's
    direction and :func:`family_reference.cautious_mask` (the ``"count"``
    rescaling, Liang et al. 2024) applied per array.
    """
    theta = {k: np.asarray(v, np.float64) for k, v in START.items()}
    moments = {k: ref.zeros_like(v) for k, v in theta.items()}
    path = []
    for t in range(1, steps + 1):
        grads = least_squares_grad(theta)
        new = {}
        for key, value in theta.items():
            step = ref.step(grads[key], moments[key], t, variant)
            moments[key] = ref.Moments(step.mu, step.nu, step.nu_max)
            direction = step.update * fam.cautious_mask(step.update, grads[key], rescale="count")
            new[key] = value - learning_rate * (direction + decoupled * value)
        theta = new
        path.append(theta)
    return path


def max_relative_difference(a, b):
    return max(
        float(np.max(np.abs(x[k] - y[k]) / np.maximum(np.abs(y[k]), 1e-300)))
        for x, y in zip(a, b, strict=True)
        for k in y
    )


def assert_same_path(ours, theirs, rtol=RTOL, atol=ATOL):
    assert len(ours) == len(theirs) >= 60
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1):
        for key in b:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=f"step {t}, array {key!r}")
    # ... and the run went somewhere: a comparison of two motionless runs would prove nothing.
    assert max(float(np.max(np.abs(theirs[-1][k] - START[k]))) for k in START) > 0.05


# --------------------------------------------------------------------------------------------------------------
# The members against family_reference (1e-12)
# --------------------------------------------------------------------------------------------------------------


def wd_schedule(count):
    """A weight-decay schedule both sides can call: ``0.2 * (1 - count / 80)`` for ``count`` steps taken."""
    return 0.2 * (1.0 - jnp.asarray(count, jnp.float64) / 80.0)


def alpha_schedule(count):
    """AdEMAMix's alpha warm-up, ``min(t alpha / T, alpha)`` (alpha = 8, T = 40), in JAX."""
    return jnp.minimum(jnp.asarray(count, jnp.float64) * 8.0 / 40.0, 8.0)


def b3_schedule(count):
    """AdEMAMix's beta3 warm-up (linear in the half-life), beta_start = 0.9, beta3 = 0.999, T = 40, in JAX."""
    a = jnp.asarray(count, jnp.float64) / 40.0
    log_start, log_end = math.log(0.9), math.log(0.999)
    return jnp.minimum(jnp.exp(log_start * log_end / ((1.0 - a) * log_end + a * log_start)), 0.999)


def clip_fn(count):
    """An ADOPT clipping bound both sides can call: ``0.5 + 0.1 count`` for ``count`` steps taken."""
    return 0.5 + 0.1 * jnp.asarray(count, jnp.float64)


MASK = {"m": True, "v": False, "s": True}

# name -> (adamjax optimizer, the reference member, its hyperparameters, the gradient)
MEMBERS = {
    "stable_adamw_decay": (
        lambda: adamjax.stable_adamw(0.05, weight_decay=0.1),
        "stable_adamw",
        dict(learning_rate=0.05, weight_decay=0.1),
        jumping_grad,
    ),
    "stable_adamw_decay_schedule": (
        lambda: adamjax.stable_adamw(0.05, b2=0.99, weight_decay=wd_schedule),
        "stable_adamw",
        dict(learning_rate=0.05, b2=0.99, weight_decay=wd_schedule),
        jumping_grad,
    ),
    "stable_adamw_mask": (
        lambda: adamjax.stable_adamw(0.05, weight_decay=0.1, mask=MASK),
        "stable_adamw",
        dict(learning_rate=0.05, weight_decay=0.1, decay_mask=MASK),
        jumping_grad,
    ),
    "stable_adamw_callable_mask": (
        lambda: adamjax.stable_adamw(
            0.05, weight_decay=wd_schedule, mask=lambda p: {k: jnp.ndim(v) != 1 for k, v in p.items()}
        ),
        "stable_adamw",
        dict(learning_rate=0.05, weight_decay=wd_schedule, decay_mask=MASK),
        jumping_grad,
    ),
    "adam_mini": (
        lambda: adamjax.adam_mini(0.05, weight_decay=0.05),
        "adam_mini",
        dict(learning_rate=0.05, weight_decay=0.05),
        least_squares_grad,
    ),
    "adam_mini_rows": (
        lambda: adamjax.adam_mini(0.05, weight_decay=0.0),  # the default blocks
        "adam_mini",
        dict(learning_rate=0.05, blocks="rows"),
        least_squares_grad,
    ),
    # The docstring's flax `Dense` option: one block per index of the last axis.
    "adam_mini_columns": (
        lambda: adamjax.adam_mini(0.05, weight_decay=0.0, block_axes=lambda p: (0,)),
        "adam_mini",
        dict(learning_rate=0.05, blocks="columns"),
        least_squares_grad,
    ),
    "adam_mini_whole": (
        lambda: adamjax.adam_mini(0.05, weight_decay=0.0, block_axes=lambda p: tuple(range(jnp.ndim(p)))),
        "adam_mini",
        dict(learning_rate=0.05, blocks="whole"),
        least_squares_grad,
    ),
    "adam_mini_elements": (
        lambda: adamjax.adam_mini(0.05, weight_decay=0.0, block_axes=lambda p: ()),
        "adam_mini",
        dict(learning_rate=0.05, blocks="elements"),
        least_squares_grad,
    ),
    "adopt": (lambda: adamjax.adopt(0.02), "adopt", dict(learning_rate=0.02), least_squares_grad),
    "adopt_unclipped": (
        lambda: adamjax.adopt(0.02, use_clipping=False),
        "adopt",
        dict(learning_rate=0.02, use_clipping=False),
        least_squares_grad,
    ),
    "adopt_clip_fn_nesterov": (
        lambda: adamjax.adopt(0.02, b2=0.99, nesterov=True, clip_value_fn=clip_fn),
        "adopt",
        dict(learning_rate=0.02, b2=0.99, nesterov=True, clip_value_fn=clip_fn),
        least_squares_grad,
    ),
    "ademamix": (
        lambda: adamjax.ademamix(0.02, b3=0.999, weight_decay=0.01),
        "ademamix",
        dict(learning_rate=0.02, b3=0.999, weight_decay=0.01),
        least_squares_grad,
    ),
    "ademamix_schedules": (
        lambda: adamjax.ademamix(0.02, b2=0.99, b3=b3_schedule, alpha=alpha_schedule, weight_decay=0.01),
        "ademamix",
        dict(
            learning_rate=0.02,
            b2=0.99,
            b3=fam.ademamix_b3_schedule(0.999, 40, 0.9),
            alpha=fam.ademamix_alpha_schedule(8.0, 40),
            weight_decay=0.01,
        ),
        least_squares_grad,
    ),
    "lamb": (lambda: adamjax.lamb(0.02), "lamb", dict(learning_rate=0.02), least_squares_grad),
    "lamb_decay_mask": (
        lambda: adamjax.lamb(0.02, weight_decay=0.1, mask=MASK),
        "lamb",
        dict(learning_rate=0.02, weight_decay=0.1, decay_mask=MASK),
        least_squares_grad,
    ),
    "radam_optax": (
        lambda: adamjax.radam(0.05, eps=1e-3),
        "radam",
        dict(learning_rate=0.05, eps=1e-3, convention="optax"),
        least_squares_grad,
    ),
    "radam_optax_nesterov": (
        lambda: adamjax.radam(0.05, b2=0.95, nesterov=True),
        "radam",
        dict(learning_rate=0.05, b2=0.95, nesterov=True, convention="optax"),
        least_squares_grad,
    ),
    "radam_torch": (
        lambda: adamjax.radam(0.05, eps=1e-3, eps_placement="torch"),
        "radam",
        dict(learning_rate=0.05, eps=1e-3, convention="torch"),
        least_squares_grad,
    ),
    "radam_torch_l2": (
        lambda: adamjax.radam(0.05, b2=0.95, eps_placement="torch", weight_decay=0.1),
        "radam",
        dict(learning_rate=0.05, b2=0.95, convention="torch", weight_decay=0.1),
        least_squares_grad,
    ),
    "nadam_momentum_decay": (
        lambda: adamjax.nadam(0.02, momentum_decay=4e-3),
        "nadam",
        dict(learning_rate=0.02, momentum_decay=4e-3),
        least_squares_grad,
    ),
    "nadam_momentum_decay_hyper": (
        lambda: adamjax.nadam(0.02, b1=0.8, b2=0.95, eps=1e-6, momentum_decay=0.05, weight_decay=0.1),
        "nadam",
        dict(learning_rate=0.02, b1=0.8, b2=0.95, eps=1e-6, momentum_decay=0.05, weight_decay=0.1),
        least_squares_grad,
    ),
}


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_member_matches_its_reference_closed_loop(name):
    make, member, hyper, grad_fn = MEMBERS[name]
    ours, _ = run_transformation(make(), grad_fn)
    assert_same_path(ours, run_reference(member, grad_fn, **hyper))


def test_radam_placements_differ_and_each_matches_its_convention():
    optax_form = run_reference("radam", learning_rate=0.05, eps=1e-3, convention="optax")
    torch_form = run_reference("radam", learning_rate=0.05, eps=1e-3, convention="torch")
    assert max_relative_difference(optax_form, torch_form) > 1e-6  # the pairing above is not vacuous


def test_stable_adamw_clipping_triggers_on_the_jump_and_scales_the_decay():
    """The clipped runs above do clip: RMS_t > 1 after the jump (from the reference's own moments)."""
    opt = fam.make("stable_adamw", learning_rate=0.05, weight_decay=0.1)
    theta = {k: np.asarray(v, np.float64) for k, v in START.items()}
    state = opt.init(theta)
    clipped_steps = set()
    for t in range(1, STEPS + 1):
        grads = jumping_grad(theta, t)
        delta, state = opt.update(grads, state, theta)
        for key, g in grads.items():
            nu_hat = state["arrays"][key]["nu"] / (1 - 0.999**t)
            if fam.stable_adamw_rms(g, nu_hat, 1e-8) > 1.0 + 1e-6:
                clipped_steps.add(t)
        theta = {k: theta[k] + delta[k] for k in theta}
    # The jump is clipped, and so are a few steps where the shrinking gradient's direction turns; most are not.
    assert 30 in clipped_steps and len(clipped_steps) < STEPS // 2
    # Clipping the decay matters at this size: AdamW (the unclipped step) ends elsewhere.
    stable = run_reference("stable_adamw", jumping_grad, learning_rate=0.05, weight_decay=0.1)
    adamw = run_reference("adamw", jumping_grad, learning_rate=0.05, weight_decay=0.1)
    assert max_relative_difference(stable, adamw) > 1e-3


def test_stable_adamw_state_has_no_separate_decay_member():
    state = adamjax.stable_adamw(0.05, weight_decay=wd_schedule, mask=MASK).init(
        {k: jnp.asarray(v, jnp.float64) for k, v in START.items()}
    )
    assert [type(part).__name__ for part in state] == ["ScaleByAdamState", "EmptyState"]


def test_adopt_clipping_is_active_in_the_clipped_run():
    clipped = run_reference("adopt", learning_rate=0.02)
    unclipped = run_reference("adopt", learning_rate=0.02, use_clipping=False)
    assert max_relative_difference(clipped, unclipped) > 1e-6


def test_ademamix_schedules_are_the_papers():
    for count in (0, 1, 7, 39, 40, 63):
        assert float(alpha_schedule(count)) == pytest.approx(fam.ademamix_alpha_schedule(8.0, 40)(count), rel=1e-14)
        assert float(b3_schedule(count)) == pytest.approx(fam.ademamix_b3_schedule(0.999, 40, 0.9)(count), rel=1e-14)


def test_nadam_optax_form_matches_numpy_reference():
    ours, _ = run_transformation(adamjax.nadam(0.02))
    theirs = ref.closed_loop(least_squares_grad, START, ref.Variant(nesterov=True), 0.02, STEPS)
    assert_same_path(ours, theirs)


# --------------------------------------------------------------------------------------------------------------
# cautious=True on every alias that takes it (the "count" rescaling: n / (kept + 1), the authors' code)
# --------------------------------------------------------------------------------------------------------------

CLASSIC_CAUTIOUS = {
    "adam": (lambda: adamjax.adam(0.02, cautious=True), ref.Variant(), 0.0),
    "adamw": (lambda: adamjax.adamw(0.02, weight_decay=0.1, cautious=True), ref.Variant(), 0.1),
    "nadam": (lambda: adamjax.nadam(0.02, cautious=True), ref.Variant(nesterov=True), 0.0),
    "nadamw": (lambda: adamjax.nadamw(0.02, weight_decay=0.1, cautious=True), ref.Variant(nesterov=True), 0.1),
    "amsgrad": (lambda: adamjax.amsgrad(0.02, cautious=True), ref.Variant(amsgrad=True), 0.0),
    "adamax": (lambda: adamjax.adamax(0.02, cautious=True), ref.Variant(power=math.inf, eps=0.0, eps_root=1e-8), 0.0),
    "adamaxw": (
        lambda: adamjax.adamaxw(0.02, weight_decay=0.1, cautious=True),
        ref.Variant(power=math.inf, eps=0.0, eps_root=1e-8),
        0.1,
    ),
    "adabelief": (
        lambda: adamjax.adabelief(0.02, cautious=True),
        ref.Variant(centered=True, eps=1e-16, eps_root=1e-16),
        0.0,
    ),
}


@pytest.mark.parametrize("name", sorted(CLASSIC_CAUTIOUS))
def test_cautious_classic_alias_matches_numpy_reference_with_the_mask(name):
    make, variant, decoupled = CLASSIC_CAUTIOUS[name]
    ours, _ = run_transformation(make())
    theirs = run_classic_cautious(variant, 0.02, decoupled)
    assert_same_path(ours, theirs)
    # The mask did something: the plain variant ends elsewhere.
    plain = ref.closed_loop(least_squares_grad, START, variant, 0.02, STEPS, decoupled_decay=decoupled)
    assert max_relative_difference(theirs, plain) > 1e-6


FAMILY_CAUTIOUS = {
    "adam_as_adamw": (lambda: adamjax.adam(0.02, cautious=True), "adamw", dict(weight_decay=0.0)),
    "adamw": (lambda: adamjax.adamw(0.02, weight_decay=0.1, cautious=True), "adamw", dict(weight_decay=0.1)),
    "radam": (lambda: adamjax.radam(0.02, cautious=True), "radam", {}),
    "radam_torch": (
        lambda: adamjax.radam(0.02, eps_placement="torch", weight_decay=0.1, cautious=True),
        "radam",
        dict(convention="torch", weight_decay=0.1),
    ),
    "nadam_momentum_decay": (
        lambda: adamjax.nadam(0.02, momentum_decay=4e-3, cautious=True),
        "nadam",
        dict(momentum_decay=4e-3),
    ),
    "adopt": (lambda: adamjax.adopt(0.02, cautious=True), "adopt", {}),
    "ademamix": (
        lambda: adamjax.ademamix(0.02, b3=0.999, weight_decay=0.01, cautious=True),
        "ademamix",
        dict(b3=0.999, weight_decay=0.01),
    ),
    "lamb": (lambda: adamjax.lamb(0.02, weight_decay=0.1, cautious=True), "lamb", dict(weight_decay=0.1)),
    "stable_adamw": (
        lambda: adamjax.stable_adamw(0.02, weight_decay=0.1, cautious=True),
        "stable_adamw",
        dict(weight_decay=0.1),
    ),
    "adam_mini": (
        lambda: adamjax.adam_mini(0.02, weight_decay=0.1, cautious=True),
        "adam_mini",
        dict(weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("name", sorted(FAMILY_CAUTIOUS))
def test_cautious_member_matches_family_reference(name):
    make, member, hyper = FAMILY_CAUTIOUS[name]
    grad_fn = jumping_grad if member == "stable_adamw" else least_squares_grad
    ours, _ = run_transformation(make(), grad_fn)
    theirs = run_reference(member, grad_fn, learning_rate=0.02, cautious=True, cautious_rescale="count", **hyper)
    assert_same_path(ours, theirs)
    plain = run_reference(member, grad_fn, learning_rate=0.02, **hyper)
    assert max_relative_difference(theirs, plain) > 1e-6


# --------------------------------------------------------------------------------------------------------------
# The triple API: each member's `adamjax.optimizers` triple against the reference, and equal to the alias
# --------------------------------------------------------------------------------------------------------------

TRIPLES = {
    "radam": (lambda: optimizers.radam(0.05, eps_placement="torch"), "radam_torch"),
    "nadam": (lambda: optimizers.nadam(0.02, momentum_decay=4e-3), "nadam_momentum_decay"),
    "adopt": (lambda: optimizers.adopt(0.02), "adopt"),
    "ademamix": (lambda: optimizers.ademamix(0.02, b3=0.999, weight_decay=0.01), "ademamix"),
    "lamb": (lambda: optimizers.lamb(0.02, weight_decay=0.1, mask=MASK), "lamb_decay_mask"),
    "stable_adamw": (lambda: optimizers.stable_adamw(0.05, weight_decay=0.1, mask=MASK), "stable_adamw_mask"),
    "adam_mini": (lambda: optimizers.adam_mini(0.05, weight_decay=0.05), "adam_mini"),
    "cautious_adamw": (
        lambda: optimizers.from_transformation(adamjax.adamw(0.02, weight_decay=0.1, cautious=True)),
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(TRIPLES))
def test_triple_matches_the_reference_and_the_alias(name):
    make, row = TRIPLES[name]
    if row is None:
        alias = adamjax.adamw(0.02, weight_decay=0.1, cautious=True)
        member, hyper, grad_fn = "adamw", dict(learning_rate=0.02, weight_decay=0.1, cautious=True), least_squares_grad
    else:
        alias_make, member, hyper, grad_fn = MEMBERS[row]
        alias = alias_make()
        if row == "radam_torch":  # the triple keeps eps at its default
            alias = adamjax.radam(0.05, eps_placement="torch")
            hyper = dict(learning_rate=0.05, convention="torch")
    ours = run_triple(make(), grad_fn)
    assert_same_path(ours, run_reference(member, grad_fn, **hyper))
    via_alias, _ = run_transformation(alias, grad_fn)
    # The triple runs the same transformation inside its own jitted step, whose fusion rounds differently:
    # equal to the last few bits (1e-13 relative; 1e-15 absolute for entries near 0).
    assert_same_path(ours, via_alias, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------------------------------------------
# torch.optim.RAdam / NAdam: the recorded float64 runs of tests/family_torch.py (1e-10)
# --------------------------------------------------------------------------------------------------------------

_DATA = {key: jnp.asarray(value, jnp.float64) for key, value in tr.problem_data().items()}


@jax.jit
def _torch_problem_grad(params):
    return jax.grad(lambda p: tr.objective(p["w"], p["M"], _DATA, jnp))(params)


def torch_equivalent(case: family_torch.FamilyCase):
    """adamjax's optimizer for a recorded torch run, with torch's hyperparameters.

    torch's coupled ``weight_decay`` is adamjax's ``weight_decay``; torch's
    ``decoupled_weight_decay=True`` (``theta <- theta (1 - lr lambda)`` before the
    step) is ``optax.add_decayed_weights(-lr lambda)`` after the alias, whose
    update is already ``-lr u``.
    """
    coupled = case.weight_decay if case.weight_decay and not case.decoupled_weight_decay else None
    common = dict(b1=case.b1, b2=case.b2, eps=case.eps, weight_decay=coupled)
    if case.optimizer == "RAdam":
        tx = adamjax.radam(case.lr, eps_placement="torch", **common)
    else:
        tx = adamjax.nadam(case.lr, momentum_decay=case.momentum_decay, **common)
    if case.decoupled_weight_decay:
        tx = optax.chain(tx, optax.add_decayed_weights(-case.lr * case.weight_decay))
    return tx


@pytest.mark.parametrize("case", family_torch.FAMILY_CASES, ids=lambda c: c.name)
def test_matches_the_recorded_torch_run(case):
    recorded = family_torch.torch_trajectory(case.name)
    tx = torch_equivalent(case)
    params = {name: jnp.asarray(recorded.params[name][0], jnp.float64) for name in tr.PARAM_NAMES}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for t in range(1, case.steps + 1):
        updates, state = update(_torch_problem_grad(params), state, params)
        params = optax.apply_updates(params, updates)
        for name in tr.PARAM_NAMES:
            np.testing.assert_allclose(
                np.asarray(params[name]),
                recorded.params[name][t],
                rtol=TORCH_RTOL,
                atol=TORCH_ATOL,
                err_msg=f"{case.name}: step {t}, {name}",
            )
    assert max(float(np.max(np.abs(recorded.params[n][-1] - recorded.params[n][0]))) for n in tr.PARAM_NAMES) > 0.05
    core = state[0] if case.decoupled_weight_decay else state
    core = next(s for s in jax.tree.leaves(core, is_leaf=adamjax_core) if adamjax_core(s))
    for name in tr.PARAM_NAMES:
        for ours, key in ((core.mu[name], "exp_avg"), (core.nu[name], "exp_avg_sq")):
            np.testing.assert_allclose(
                np.asarray(ours), recorded.state[key][name][-1], rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=key
            )
        if case.optimizer == "NAdam":
            assert float(core.mu_product) == pytest.approx(float(recorded.state["mu_product"][name][-1]), rel=1e-13)


def adamjax_core(node):
    return isinstance(node, optax.ScaleByAdamState | adamjax.NadamState)
