"""The family transcriptions (tests/family_reference.py) checked on their own, before anything is compared to them.

Where a framework implements a member, the transcription must reproduce it in
float64 over 80 closed-loop steps: optax.radam, optax.contrib.adopt,
optax.contrib.ademamix, optax.lamb, optax.adamw, and torch.optim.RAdam /
torch.optim.NAdam through recorded trajectories (tests/family_torch.py, live
when torch is installed). Where none does (the cautious mask, StableAdamW,
Adam-mini), two or three steps are worked out by hand below.
"""

from __future__ import annotations

import math

import family_reference as fam
import family_torch
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch_reference as tr

STEPS = 80
RTOL = 1e-10
ATOL = 1e-13


# --------------------------------------------------------------------------
# The closed-loop problem of tests/torch_reference.py, its gradient in NumPy.
# --------------------------------------------------------------------------


def problem_grad(params: dict[str, np.ndarray], t: int = 0) -> dict[str, np.ndarray]:
    """The gradient of ``torch_reference.objective``, written out by hand."""
    data = tr.problem_data()
    w, M = params["w"], params["M"]
    X, y, C = data["X"], data["y"], data["C"]
    residual = X @ w - y
    cos_mean = np.mean(np.cos(M))
    return {
        "w": X.T @ residual / len(y) + 0.1 * w * cos_mean,
        "M": C * np.cos(M) + 0.1 * M - 0.05 * np.sum(w * w) * np.sin(M) / M.size,
    }


def start() -> dict[str, np.ndarray]:
    data = tr.problem_data()
    return {"w": data["w0"].copy(), "M": data["M0"].copy()}


def test_the_hand_written_gradient_is_jax_grad_of_the_objective():
    data = {k: jnp.asarray(v) for k, v in tr.problem_data().items()}
    params = start()
    expected = jax.jit(jax.grad(lambda p: tr.objective(p["w"], p["M"], data, jnp)))(  # one program, not op by op
        {k: jnp.asarray(v) for k, v in params.items()}
    )
    for key, value in problem_grad(params).items():
        np.testing.assert_allclose(value, np.asarray(expected[key]), rtol=1e-13, atol=1e-15)


def optax_run(tx: optax.GradientTransformation, steps: int = STEPS, *, jit: bool = True) -> list[dict[str, np.ndarray]]:
    """optax's float64 run of ``tx`` on the problem, each gradient from :func:`problem_grad`."""
    params = {k: jnp.asarray(v, jnp.float64) for k, v in start().items()}
    trajectory = []
    with jax.numpy_dtype_promotion("standard"):
        update = jax.jit(tx.update) if jit else tx.update
        state = tx.init(params)
        for t in range(1, steps + 1):
            grads = problem_grad({k: np.asarray(v) for k, v in params.items()}, t)
            updates, state = update({k: jnp.asarray(v) for k, v in grads.items()}, state, params)
            params = optax.apply_updates(params, updates)
            trajectory.append({k: np.asarray(v) for k, v in params.items()})
    return trajectory


def assert_same_trajectory(ours, theirs, rtol=RTOL, atol=ATOL):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1):
        for key in b:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=f"step {t}, {key}")


def max_relative_difference(ours, theirs) -> float:
    """The largest difference of any step's arrays, relative to that array's largest entry."""
    return max(
        float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k]))) for a, b in zip(ours, theirs, strict=True) for k in b
    )


def moved(trajectory) -> float:
    """How far the run went: a comparison of runs that never moved would prove nothing."""
    return max(float(np.max(np.abs(trajectory[-1][k] - start()[k]))) for k in start())


# --------------------------------------------------------------------------
# optax
# --------------------------------------------------------------------------

OPTAX_CASES = [
    ("adamw", dict(learning_rate=0.05, weight_decay=0.1), lambda: optax.adamw(0.05, weight_decay=0.1)),
    (
        "adamw",
        dict(learning_rate=0.03, b1=0.8, b2=0.95, eps=1e-4, eps_root=1e-6, weight_decay=0.0),
        lambda: optax.adamw(0.03, b1=0.8, b2=0.95, eps=1e-4, eps_root=1e-6, weight_decay=0.0),
    ),
    ("radam", dict(learning_rate=0.05), lambda: optax.radam(0.05)),
    (
        "radam",
        dict(learning_rate=0.02, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-5, threshold=6.0),
        lambda: optax.radam(0.02, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-5, threshold=6.0),
    ),
    ("radam", dict(learning_rate=0.05, nesterov=True), lambda: optax.radam(0.05, nesterov=True)),
    ("adopt", dict(learning_rate=0.05), lambda: optax.contrib.adopt(0.05)),
    (
        "adopt",
        dict(learning_rate=0.03, b1=0.8, b2=0.99, eps=1e-4, use_clipping=False),
        lambda: optax.contrib.adopt(0.03, b1=0.8, b2=0.99, eps=1e-4, use_clipping=False),
    ),
    (
        "adopt",
        dict(learning_rate=0.03, nesterov=True, clip_value_fn=lambda c: 0.5 * c**0.5),
        lambda: optax.contrib.adopt(0.03, nesterov=True, clip_value_fn=lambda c: 0.5 * c**0.5),
    ),
    ("ademamix", dict(learning_rate=0.02), lambda: optax.contrib.ademamix(0.02)),
    (
        "ademamix",
        dict(learning_rate=0.02, b1=0.8, b2=0.95, b3=0.99, alpha=2.0, eps=1e-6, eps_root=1e-8, weight_decay=0.1),
        lambda: optax.contrib.ademamix(
            0.02, b1=0.8, b2=0.95, b3=0.99, alpha=2.0, eps=1e-6, eps_root=1e-8, weight_decay=0.1
        ),
    ),
    ("lamb", dict(learning_rate=0.02), lambda: optax.lamb(0.02)),
    (
        "lamb",
        dict(
            learning_rate=0.02,
            b1=0.8,
            b2=0.95,
            eps=1e-4,
            eps_root=1e-8,
            weight_decay=0.3,
            decay_mask={"w": True, "M": False},
        ),
        lambda: optax.lamb(
            0.02, b1=0.8, b2=0.95, eps=1e-4, eps_root=1e-8, weight_decay=0.3, mask={"w": True, "M": False}
        ),
    ),
    # Adam-mini with one block per entry is Adam: optax checks the transcription's plumbing.
    ("adam_mini", dict(learning_rate=0.05, blocks="elements"), lambda: optax.adam(0.05)),
    (
        "adam_mini",
        dict(learning_rate=0.05, blocks="elements", weight_decay=0.2, b2=0.9),
        lambda: optax.adamw(0.05, b2=0.9, weight_decay=0.2),
    ),
]


@pytest.mark.parametrize(
    ("name", "hyper", "build"), OPTAX_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(OPTAX_CASES)]
)
def test_transcription_matches_optax_in_float64(name, hyper, build):
    ours = fam.run(name, problem_grad, start(), STEPS, **hyper)
    theirs = optax_run(build())
    assert moved(theirs) > 0.05
    assert_same_trajectory(ours, theirs)


def test_ademamix_schedules_match_optax_and_the_paper():
    alpha = fam.ademamix_alpha_schedule(5.0, warmup=40)
    b3 = fam.ademamix_b3_schedule(0.999, warmup=40, b_start=0.9)
    # alpha: linear from 0 to its final value, then constant.
    assert [alpha(t) for t in (0, 10, 20, 40, 70)] == [0.0, 1.25, 2.5, 5.0, 5.0]
    # b3: from b_start to b3 with the EMA's half-life ln(1/2)/ln(b) moving linearly.
    half_life = lambda b: math.log(0.5) / math.log(b)  # noqa: E731
    assert b3(0) == pytest.approx(0.9, rel=1e-14) and b3(40) == pytest.approx(0.999, rel=1e-14) and b3(90) == 0.999
    assert half_life(b3(10)) == pytest.approx(0.75 * half_life(0.9) + 0.25 * half_life(0.999), rel=1e-12)
    assert half_life(b3(20)) == pytest.approx(0.5 * half_life(0.9) + 0.5 * half_life(0.999), rel=1e-12)

    ours = fam.run("ademamix", problem_grad, start(), STEPS, learning_rate=0.02, alpha=alpha, b3=b3, b2=0.99)
    theirs = optax_run(
        optax.contrib.ademamix(
            0.02,
            b2=0.99,
            alpha=lambda count: jnp.asarray(alpha(int(count)), jnp.float64),
            b3=lambda count: jnp.asarray(b3(int(count)), jnp.float64),
        ),
        jit=False,
    )
    assert_same_trajectory(ours, theirs)


def test_adopt_first_step_only_initialises_the_second_moment():
    opt = fam.make("adopt", learning_rate=0.1)
    grad = np.array([3.0, -4.0])
    state = opt.init(np.zeros(2))
    update, state = opt.update(grad, state, np.zeros(2))
    np.testing.assert_array_equal(update, [0.0, 0.0])
    np.testing.assert_array_equal(state["arrays"][""]["nu"], grad**2)
    # Step 2, by hand: clip(g / |g_1|, 1**0.25 = 1) = [1, -0.5] for g = [6, -2]; m = 0.1 * that.
    update, _ = opt.update(np.array([6.0, -2.0]), state, np.zeros(2))
    np.testing.assert_allclose(update, -0.1 * 0.1 * np.array([1.0, -0.5]), rtol=1e-15)


# --------------------------------------------------------------------------
# torch (recorded trajectories; live when torch is installed)
# --------------------------------------------------------------------------


def torch_hyper(case: family_torch.FamilyCase) -> dict:
    hyper = dict(
        learning_rate=case.lr,
        b1=case.b1,
        b2=case.b2,
        eps=case.eps,
        weight_decay=case.weight_decay,
        decoupled_weight_decay=case.decoupled_weight_decay,
    )
    if case.optimizer == "RAdam":
        return dict(hyper, convention="torch")
    return dict(hyper, momentum_decay=case.momentum_decay)


@pytest.mark.parametrize("case", family_torch.FAMILY_CASES, ids=lambda c: c.name)
def test_transcription_matches_torch_in_float64(case):
    recorded = family_torch.torch_trajectory(case.name)
    name = "radam" if case.optimizer == "RAdam" else "nadam"
    result = fam.run_full(name, problem_grad, start(), case.steps, **torch_hyper(case))
    theirs = [{k: recorded.params[k][t] for k in tr.PARAM_NAMES} for t in range(1, case.steps + 1)]
    assert moved(theirs) > 0.05
    assert_same_trajectory(result.params, theirs)
    for key in tr.PARAM_NAMES:
        state = result.state["arrays"][key]
        np.testing.assert_allclose(state["mu"], recorded.state["exp_avg"][key][-1], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(state["nu"], recorded.state["exp_avg_sq"][key][-1], rtol=RTOL, atol=ATOL)
        if name == "nadam":
            np.testing.assert_allclose(state["mu_product"], recorded.state["mu_product"][key][-1], rtol=1e-13)


def test_radam_conventions_differ_where_eps_enters():
    """optax and PyTorch place eps differently: the transcription's two forms differ measurably, each matching its own."""
    optax_form = fam.run("radam", problem_grad, start(), 60, learning_rate=0.05)
    torch_form = fam.run("radam", problem_grad, start(), 60, learning_rate=0.05, convention="torch")
    difference = max_relative_difference(optax_form, torch_form)
    assert 1e-9 < difference < 1e-5, difference
    recorded = family_torch.torch_trajectory("radam")
    theirs = [{k: recorded.params[k][t] for k in tr.PARAM_NAMES} for t in range(1, 61)]
    assert max_relative_difference(optax_form, theirs) > 100 * max_relative_difference(torch_form, theirs)


def test_radam_threshold_comparison_per_convention():
    # b2 = 0.9: rho_inf = 19, rho_5 = 4.58, rho_6 = 5.39. With the threshold at rho_6 exactly,
    # optax (rho >= threshold) rectifies step 6 and torch (rho > threshold) does not.
    rho6 = fam.radam_rho(6, 0.9)
    assert rho6 == pytest.approx(19 - 12 * 0.9**6 / (1 - 0.9**6), rel=1e-14)
    grads = np.full((6, 1), 2.0)  # constant: m_hat = 2 and v_hat = 4 at every step
    optax_form = fam.open_loop_updates("radam", grads, b2=0.9, learning_rate=1.0, threshold=rho6)
    torch_form = fam.open_loop_updates("radam", grads, b2=0.9, learning_rate=1.0, threshold=rho6, convention="torch")
    np.testing.assert_allclose(torch_form[5], [-2.0], rtol=1e-14)  # plain momentum
    rectification = math.sqrt((rho6 - 4) * (rho6 - 2) * 19 / (15 * 17 * rho6))
    assert fam.radam_rectification(6, 0.9) == pytest.approx(rectification, rel=1e-14)
    np.testing.assert_allclose(optax_form[5], [-rectification * 2 / (2 + 1e-8)], rtol=1e-14)
    # Steps 1-5 are below the threshold in both: momentum SGD, -m_hat = -2.
    np.testing.assert_allclose(np.concatenate(optax_form[:5] + torch_form[:5]), -2.0, rtol=1e-14)


# --------------------------------------------------------------------------
# Worked by hand: the cautious mask, StableAdamW, Adam-mini
# --------------------------------------------------------------------------


def test_cautious_adamw_two_steps_by_hand():
    """b1 = b2 = 0.5, eps = 0, lr = 0.1, weight decay 0.5, theta_0 = [1, 1, 1].

    Step 1, g = [1, -2, 3]: m_hat = g, v_hat = g^2, u = sign(g) = [1, -1, 1]; u*g > 0
    everywhere, so phi = [1, 1, 1], rescaled by d / (nnz + 1) = 3/4. Update
    -0.1 (0.75 u + 0.5 theta_0) = [-0.125, 0.025, -0.125]; theta_1 = [0.875, 1.025, 0.875].

    Step 2, g = [-0.2, -2, 1]: m = 0.5 m_1 + 0.5 g = [0.15, -1.5, 1.25], m_hat =
    m / 0.75 = [0.2, -2, 5/3]; v = 0.5 v_1 + 0.5 g^2 = [0.27, 3, 2.75], v_hat =
    [0.36, 4, 11/3]; u = [1/3, -1, (5/3)/sqrt(11/3)]. The first coordinate's u
    is positive and its gradient negative: masked. phi = [0, 1, 1], rescaled by
    3 / (2 + 1) = 1. The weight decay is not masked: update = -0.1 (phi u + 0.5 theta_1).
    """
    grads = [np.array([1.0, -2.0, 3.0]), np.array([-0.2, -2.0, 1.0])]
    hyper = dict(learning_rate=0.1, b1=0.5, b2=0.5, eps=0.0, weight_decay=0.5, cautious=True)
    updates = fam.open_loop_updates("adamw", grads, np.ones(3), **hyper)
    np.testing.assert_allclose(updates[0], [-0.125, 0.025, -0.125], rtol=1e-15)
    u3 = (5 / 3) / math.sqrt(11 / 3)
    np.testing.assert_allclose(updates[1], [-0.04375, 0.1 - 0.05125, -0.1 * u3 - 0.04375], rtol=1e-14)
    # The later paper's rescaling, phi / mean(phi): 1.5 on step 2 (and 1 on step 1, all kept).
    updates = fam.open_loop_updates("adamw", grads, np.ones(3), **hyper, cautious_rescale="mean", cautious_eps=0.0)
    np.testing.assert_allclose(updates[0], [-0.15, 0.05, -0.15], rtol=1e-15)
    theta1 = np.array([0.85, 1.05, 0.85])
    np.testing.assert_allclose(updates[1], -0.1 * (1.5 * np.array([0.0, -1.0, u3]) + 0.5 * theta1), rtol=1e-14)
    # Without caution the same run keeps the first coordinate's step.
    plain = fam.open_loop_updates("adamw", grads, np.ones(3), **dict(hyper, cautious=False))
    assert plain[1][0] == pytest.approx(-0.1 * (1 / 3 + 0.5 * 0.85), rel=1e-14)  # theta_1 = 1 - 0.15


def test_cautious_mask_rules():
    u = np.array([1.0, -1.0, 2.0, 0.0])
    g = np.array([2.0, 1.0, 3.0, 5.0])  # agree, disagree, agree, zero product
    np.testing.assert_array_equal(fam.cautious_mask(u, g, rescale="none"), [1, 0, 1, 0])
    np.testing.assert_allclose(fam.cautious_mask(u, g), np.array([1, 0, 1, 0]) * 4 / 3, rtol=1e-15)
    np.testing.assert_allclose(fam.cautious_mask(u, g, rescale="mean", mean_eps=0.0), [2, 0, 2, 0], rtol=1e-15)
    with pytest.raises(ValueError, match="'count', 'mean' or 'none'"):
        fam.cautious_mask(u, g, rescale="sum")


def test_stable_adamw_two_steps_by_hand_clips_per_array():
    """b1 = b2 = 0.5, eps = 0, lr = 1, weight decay 0.1; arrays a (2 entries, from [2, 2]) and b (1 entry, from 0).

    Step 1, g_a = [1, 1], g_b = 1: m_hat = g, v_hat = g^2, RMS = sqrt(mean(g^2 / v_hat)) = 1,
    no clipping: a moves by -(1 + 0.1 * 2) = -1.2 to 0.8, b by -(1 + 0) = -1 to -1.

    Step 2, g_a = [4, 4]: m = 0.5 * 0.5 + 0.5 * 4 = 2.25, m_hat = 3; v = 0.5 * 0.5 + 0.5 * 16 =
    8.25, v_hat = 11; RMS = sqrt(16/11) = 4/sqrt(11) > 1, so eta = sqrt(11)/4, which scales the
    decay too: update = -(sqrt(11)/4)(3/sqrt(11) + 0.1 * 0.8) = -0.75 - 0.02 sqrt(11).
    g_b = 1: m_hat = 1, v_hat = 1, RMS = 1: b's step is not clipped by a's large gradient:
    update = -(1 + 0.1 * (-1)) = -0.9.
    """
    grads = [{"a": np.array([1.0, 1.0]), "b": np.array(1.0)}, {"a": np.array([4.0, 4.0]), "b": np.array(1.0)}]
    params0 = {"a": np.array([2.0, 2.0]), "b": np.array(0.0)}
    hyper = dict(learning_rate=1.0, b1=0.5, b2=0.5, eps=0.0, weight_decay=0.1)
    updates = fam.open_loop_updates("stable_adamw", grads, params0, **hyper)
    np.testing.assert_allclose(updates[0]["a"], [-1.2, -1.2], rtol=1e-15)
    np.testing.assert_allclose(updates[0]["b"], -1.0, rtol=1e-15)
    np.testing.assert_allclose(updates[1]["a"], [-0.75 - 0.02 * math.sqrt(11)] * 2, rtol=1e-14)
    np.testing.assert_allclose(updates[1]["b"], -0.9, rtol=1e-14)
    # AdamW on the same gradients steps 3/sqrt(11) + decay: the clipping is what made a's step smaller.
    adamw = fam.open_loop_updates("adamw", grads, params0, **hyper)
    np.testing.assert_allclose(adamw[1]["a"], [-3 / math.sqrt(11) - 0.08] * 2, rtol=1e-14)
    assert fam.stable_adamw_rms(np.array([4.0, 4.0]), np.array([11.0, 11.0]), 0.0) == pytest.approx(4 / math.sqrt(11))


def test_stable_adamw_decay_schedule_and_mask_by_hand():
    """The same two steps as above, with lambda_t = 0.1 (t + 1) for t steps taken and b left out of the decay.

    Step 1 (lambda = 0.1, RMS = 1): a moves by -(1 + 0.1 * 2) = -1.2; b by -1 (masked: no decay).
    Step 2 (lambda = 0.2, eta = sqrt(11)/4): a moves by -(sqrt(11)/4)(3/sqrt(11) + 0.2 * 0.8)
    = -0.75 - 0.04 sqrt(11); b by -1 (RMS = 1, no decay).
    """
    grads = [{"a": np.array([1.0, 1.0]), "b": np.array(1.0)}, {"a": np.array([4.0, 4.0]), "b": np.array(1.0)}]
    params0 = {"a": np.array([2.0, 2.0]), "b": np.array(0.0)}
    hyper = dict(learning_rate=1.0, b1=0.5, b2=0.5, eps=0.0, weight_decay=lambda count: 0.1 * (count + 1))
    updates = fam.open_loop_updates("stable_adamw", grads, params0, decay_mask={"a": True, "b": False}, **hyper)
    np.testing.assert_allclose(updates[0]["a"], [-1.2, -1.2], rtol=1e-15)
    np.testing.assert_allclose(updates[1]["a"], [-0.75 - 0.04 * math.sqrt(11)] * 2, rtol=1e-14)
    np.testing.assert_allclose([updates[0]["b"], updates[1]["b"]], [-1.0, -1.0], rtol=1e-15)


def test_adam_mini_two_steps_by_hand_one_moment_per_row():
    """b1 = b2 = 0.5, eps = 0, lr = 1; a 2x2 matrix from zeros, one block per row (the default).

    Step 1, g = [[3, 4], [1, 1]]: block means of g^2 are 12.5 and 1, v = 0.5 * that, v_hat =
    [12.5, 1]; m_hat = g: update = -[[3, 4] / sqrt(12.5), [1, 1]].

    Step 2, g = [[0, 0], [3, -1]]: block means 0 and 5, v = 0.5 v_1 + 0.5 [0, 5] = [3.125, 2.75],
    v_hat = v / 0.75 = [25/6, 11/3]; m = 0.25 g_1 + 0.5 g_2 = [[0.75, 1], [1.75, -0.25]], m_hat =
    [[1, 4/3], [7/3, -1/3]]: update = -[[1, 4/3] / sqrt(25/6), [7/3, -1/3] / sqrt(11/3)].
    """
    grads = [np.array([[3.0, 4.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [3.0, -1.0]])]
    hyper = dict(learning_rate=1.0, b1=0.5, b2=0.5, eps=0.0)
    result = fam._loop(fam.make("adam_mini", **hyper), lambda _p, t: grads[t - 1], np.zeros((2, 2)), 2)
    np.testing.assert_allclose(
        result.updates[0], -np.array([[3 / math.sqrt(12.5), 4 / math.sqrt(12.5)], [1.0, 1.0]]), rtol=1e-15
    )
    expected = -np.array([np.array([1, 4 / 3]) / math.sqrt(25 / 6), np.array([7 / 3, -1 / 3]) / math.sqrt(11 / 3)])
    np.testing.assert_allclose(result.updates[1], expected, rtol=1e-14)
    # One second moment per row: half of Adam's four.
    np.testing.assert_allclose(result.state["arrays"][""]["nu"], [3.125, 2.75], rtol=1e-15)


def test_adam_mini_partitions():
    matrix = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(fam.adam_mini_blocks(matrix), [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(fam.adam_mini_blocks(matrix, "columns"), [[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(fam.adam_mini_blocks(np.ones(4)), [0, 0, 0, 0])  # a vector is one block
    np.testing.assert_array_equal(fam.adam_mini_blocks(matrix, "elements"), [[0, 1, 2], [3, 4, 5]])
    # A vector: one second moment, the mean of g^2 (g = [3, 4]: v_hat = 12.5 on step 1).
    update = fam.open_loop_updates("adam_mini", [np.array([3.0, 4.0])], learning_rate=1.0, eps=0.0)[0]
    np.testing.assert_allclose(update, -np.array([3.0, 4.0]) / math.sqrt(12.5), rtol=1e-15)
    # Columns of a matrix are the rows of its transpose.
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((5, 3, 4))
    by_columns = fam.open_loop("adam_mini", grads, blocks="columns", learning_rate=0.1)
    by_rows = fam.open_loop("adam_mini", np.swapaxes(grads, 1, 2), blocks="rows", learning_rate=0.1)
    np.testing.assert_allclose(by_columns[-1], by_rows[-1].T, rtol=1e-14)
    # A user partition: a callable (name, array) -> labels.
    custom = fam.open_loop(
        "adam_mini", grads, blocks=lambda name, a: fam.adam_mini_blocks(a, "whole"), learning_rate=0.1
    )
    whole = fam.open_loop("adam_mini", grads, blocks="whole", learning_rate=0.1)
    np.testing.assert_array_equal(custom[-1], whole[-1])
    with pytest.raises(ValueError, match="labels of shape"):
        fam.run("adam_mini", lambda p, t: p, np.ones(3), 1, blocks=lambda name, a: np.zeros(2))


def test_calling_convention():
    # One array in, arrays out; a dict in, dicts out; the closed loop sees the current parameters.
    seen = []

    def grad_fn(params, t):
        seen.append((t, params.copy()))
        return 2 * params

    trajectory = fam.run("lamb", grad_fn, np.array([1.0, -2.0]), 3, learning_rate=0.1)
    assert len(trajectory) == 3 and [t for t, _ in seen] == [1, 2, 3]
    np.testing.assert_array_equal(seen[1][1], trajectory[0])
    assert set(fam.run("nadam", lambda p, t: p, {"a": np.ones(2)}, 2)[1]) == {"a"}
    with pytest.raises(ValueError, match="unknown member 'adamax2'"):
        fam.make("adamax2")
    with pytest.raises(TypeError, match="unknown hyperparameters \\['b3'\\]"):
        fam.make("adopt", b3=0.9)
    with pytest.raises(ValueError, match="optax.radam has no weight decay"):
        fam.run("radam", lambda p, t: p, np.ones(2), 1, weight_decay=0.1)
    # A schedule is called with the number of steps already taken, 0 first (as optax).
    calls = []
    fam.open_loop("adamw", np.ones((3, 1)), learning_rate=lambda c: calls.append(c) or 0.1)
    assert calls == [0, 1, 2]
    assert set(fam.MEMBERS) == {"adamw", "radam", "nadam", "adopt", "ademamix", "stable_adamw", "lamb", "adam_mini"}
