r"""Adam and its variants in plain NumPy float64: the tests' independent reference.

Written from the papers and the update rules stated in adamjax's docstrings,
not from adamjax's code, one step per call and one loop per trajectory, so that
a slip in the JAX core (an ``eps_root`` in the wrong place, a bias correction
at the wrong step) shows up as a numeric difference.

The rule, for a gradient :math:`g` at step :math:`t = 1, 2, \dots`:

* Kingma & Ba (2015), Algorithm 1: :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g`,
  :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2`, :math:`\hat m_t = m_t/(1-\beta_1^t)`,
  :math:`\hat v_t = v_t/(1-\beta_2^t)`, direction :math:`\hat m_t / (\sqrt{\hat v_t} + \epsilon)`;
  optax's ``eps_root`` goes inside the root.
* p-th power moment (seed 000's simulator): :math:`|g|^p` instead of :math:`g^2`,
  the p-th root instead of the square root.
* Adamax (Kingma & Ba, section 7.1, with PyTorch's and optax's ``eps``):
  :math:`v_t = \max(\beta_2 v_{t-1}, |g| + \epsilon_{root})`, no bias correction of
  :math:`v`, denominator :math:`v_t + \epsilon`.
* AdaBelief (Zhuang et al., 2020, as optax): :math:`s_t = \beta_2 s_{t-1} +
  (1-\beta_2)(g - m_t)^2 + \epsilon_{root}`, denominator :math:`\sqrt{\hat s_t} + \epsilon`.
* AMSGrad (Reddi et al., 2018, PyTorch's convention): the running maximum of the
  raw :math:`v_t`, bias-corrected afterwards.
* NAdam (Dozat, 2016, as optax): :math:`\hat m_t = \beta_1 m_t/(1-\beta_1^{t+1}) +
  (1-\beta_1) g/(1-\beta_1^t)`.
* Weight decay: coupled L2 (PyTorch's ``Adam(weight_decay)``) adds
  :math:`\lambda\theta` to the gradient; decoupled (Loshchilov & Hutter, 2019)
  adds :math:`\lambda\theta` to the direction before the learning rate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Variant:
    """Hyperparameters and switches of one Adam variant (names as in optax)."""

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    power: float = 2.0
    centered: bool = False
    amsgrad: bool = False
    nesterov: bool = False
    bias_correction: bool = True


class Moments(NamedTuple):
    """The state of one array: first moment, second moment, running maximum."""

    mu: np.ndarray
    nu: np.ndarray
    nu_max: np.ndarray


class Step(NamedTuple):
    """Everything one step computes for one array."""

    mu: np.ndarray
    nu: np.ndarray
    nu_max: np.ndarray
    mu_hat: np.ndarray
    nu_hat: np.ndarray
    denom: np.ndarray
    update: np.ndarray


def zeros_like(x: np.ndarray) -> Moments:
    zero = np.zeros(np.shape(x), np.float64)
    return Moments(zero, zero.copy(), zero.copy())


def step(grad: np.ndarray, moments: Moments, t: int, variant: Variant) -> Step:
    """One step of ``variant`` at step number ``t >= 1``; returns the direction (not negated)."""
    b1, b2, p = variant.b1, variant.b2, variant.power
    g = np.asarray(grad, np.float64)

    m = b1 * moments.mu + (1.0 - b1) * g
    # AdaBelief's "belief": the deviation from the *updated* mean.
    x = g - m if variant.centered else g
    if math.isinf(p):
        v = np.maximum(b2 * moments.nu, np.abs(x) + variant.eps_root)
    else:
        v = b2 * moments.nu + (1.0 - b2) * np.abs(x) ** p
    if variant.centered:
        v = v + variant.eps_root
    v_max = np.maximum(moments.nu_max, v) if variant.amsgrad else moments.nu_max
    v_used = v_max if variant.amsgrad else v

    if variant.bias_correction:
        if variant.nesterov:
            m_hat = b1 * m / (1.0 - b1 ** (t + 1)) + (1.0 - b1) * g / (1.0 - b1**t)
        else:
            m_hat = m / (1.0 - b1**t)
        v_hat = v_used if math.isinf(p) else v_used / (1.0 - b2**t)
    else:
        m_hat = b1 * m + (1.0 - b1) * g if variant.nesterov else m
        v_hat = v_used

    if math.isinf(p):
        denom = v_hat + variant.eps
    elif variant.centered:
        denom = v_hat ** (1.0 / p) + variant.eps
    else:
        denom = (v_hat + variant.eps_root) ** (1.0 / p) + variant.eps
    return Step(m, v, v_max, m_hat, v_hat, denom, m_hat / denom)


def open_loop(grads: np.ndarray, variant: Variant) -> Step:
    """Runs ``variant`` on a fixed gradient stream ``grads[t - 1]``; stacks every step."""
    grads = np.asarray(grads, np.float64)
    moments = zeros_like(grads[0])
    steps = []
    for t, g in enumerate(grads, start=1):
        s = step(g, moments, t, variant)
        moments = Moments(s.mu, s.nu, getattr(s, "nu_max", None))
        steps.append(s)
    return Step(*(np.stack(field) for field in zip(*steps, strict=True)))


def closed_loop(
    grad_fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    params: Mapping[str, np.ndarray],
    variant: Variant,
    learning_rate: float | Callable[[int], float],
    num_steps: int,
    *,
    coupled_decay: float = 0.0,
    decoupled_decay: float = 0.0,
    decay_mask: Mapping[str, bool] | None = None,
) -> list[dict[str, np.ndarray]]:
    r"""Optimises ``params`` (a flat dict of arrays); returns the parameters after each step.

    :math:`\theta_t = \theta_{t-1} - \eta_{t-1}\,(u_t + \lambda_d \theta_{t-1})` where
    :math:`u_t` is :func:`step`'s direction for the gradient plus
    :math:`\lambda_c \theta_{t-1}`. A schedule :math:`\eta` is called with the
    number of steps already taken (0 first), as optax does.
    """
    theta = {k: np.asarray(v, np.float64) for k, v in params.items()}
    moments = {k: zeros_like(v) for k, v in theta.items()}
    trajectory = []
    for t in range(1, num_steps + 1):
        grads = grad_fn(theta)
        rate = learning_rate(t - 1) if callable(learning_rate) else learning_rate
        new_theta = {}
        for k, value in theta.items():
            s = step(np.asarray(grads[k], np.float64) + coupled_decay * value, moments[k], t, variant)
            moments[k] = Moments(s.mu, s.nu, getattr(s, "nu_max", None))
            direction = s.update
            if decay_mask is None or decay_mask[k]:
                direction = direction + decoupled_decay * value
            new_theta[k] = value - rate * direction
        theta = new_theta
        trajectory.append(dict(theta))
    return trajectory


def warmup_cosine_decay(init_value: float, peak_value: float, warmup_steps: int, decay_steps: int, end_value: float):
    """The linear-warmup-then-cosine schedule (Loshchilov & Hutter's SGDR shape), as a Python function."""

    def schedule(count: int) -> float:
        if count < warmup_steps:
            return init_value + (peak_value - init_value) * count / warmup_steps
        progress = min(count - warmup_steps, decay_steps - warmup_steps) / (decay_steps - warmup_steps)
        return end_value + (peak_value - end_value) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return schedule


def swinging_soft(size: int = 10_000, seed: int = 1, noise_stddev: float = 0.5) -> np.ndarray:
    """Seed 002's ``build_swinging_soft`` gradient stream with its noise: ``10 + 5 sin + N(0, 0.5)``."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=size, scale=noise_stddev)
    periods = size / 50
    values = np.linspace(0.0, periods * 2 * np.pi * 2, num=size, dtype=np.float64)
    return np.sin(values) * 5 + 10 + noise


def sine(steps: int = 300) -> np.ndarray:
    """Seed 000's sine stream."""
    return np.sin(np.linspace(0, 20 * np.pi, steps))
