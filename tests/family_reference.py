r"""The newer members of the Adam family in plain NumPy float64: the tests' independent reference.

Each member is transcribed from its paper's algorithm box (or, where the brief
names a framework as the definition, from that framework's documented update
rule), one array at a time and one step per call, in explicit float64 NumPy --
no JAX, no adamjax, no optax. The conventions each framework chose (where
``eps`` enters, how the rectification threshold compares, when a schedule is
first called) are switches here, so one transcription checks adamjax against
both optax and PyTorch.

Calling convention, the same for every member:

* :func:`run` -- closed loop: ``run(name, grad_fn, params0, steps, **hyper)``
  calls ``grad_fn(params, t)`` at the current parameters for ``t = 1..steps``
  and returns the parameters after each step (``steps`` entries, the initial
  ones not included).
* :func:`open_loop` -- a fixed gradient sequence: ``open_loop(name, grads,
  params0, **hyper)`` feeds ``grads[t - 1]`` at step ``t`` and returns the
  parameters after each step; :func:`open_loop_updates` returns the updates
  :math:`\theta_t - \theta_{t-1}` themselves (not differenced, so they are
  exact for any step size).
* :func:`make` -- the optimizer itself, optax-shaped: ``opt = make(name,
  **hyper)``, ``state = opt.init(params)``, ``updates, state =
  opt.update(grads, state, params)``.

``params`` is one array or a flat ``dict`` of arrays (a result has the same
form). Per-array rules (LAMB's trust ratio, StableAdamW's clipping, Adam-mini's
blocks, the cautious mask's rescaling) act on each array of the dict.

Hyperparameters keep optax's names (``learning_rate``, ``b1``, ``b2``, ``eps``,
``eps_root``, ``weight_decay``); ``learning_rate`` may be a callable of the
number of steps already taken (0 at the first step, as optax calls a schedule).
Every member also takes ``cautious=True`` (Liang et al., 2024; see
:func:`cautious_mask`), applied to the member's direction before weight decay,
trust ratio, clipping and the learning rate.

Members (:data:`MEMBERS`): ``adamw``, ``radam``, ``nadam``, ``adopt``,
``ademamix``, ``stable_adamw``, ``lamb``, ``adam_mini``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

Array = np.ndarray
Params = Any  # one array, or a flat dict of arrays
Schedule = float | Callable[[int], float]


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------


def _value(value: Schedule, count: int) -> float:
    """A hyperparameter at step ``count + 1``: a schedule is called with ``count`` steps already taken."""
    return float(value(count)) if callable(value) else float(value)


def cautious_mask(direction: Array, grad: Array, *, rescale: str = "count", mean_eps: float = 1e-8) -> Array:
    r"""Liang et al. (2024), "Cautious Optimizers": the mask that multiplies one array's direction.

    :math:`\phi = \mathbb 1[u \circ g > 0]` -- a coordinate moves only where the
    direction :math:`u` and the gradient :math:`g` agree in sign (a zero
    product is masked) -- then rescaled so that the masked direction keeps
    roughly its size:

    * ``rescale="count"`` (the paper's Algorithm 2 and the authors' original
      code): :math:`\phi \cdot d / (\lVert\phi\rVert_0 + 1)` with :math:`d` the
      array's size;
    * ``rescale="mean"`` (the one-line listing of the paper's later version,
      Algorithm 1): :math:`\phi / (\operatorname{mean}\phi + \epsilon_\phi)`
      with ``mean_eps`` :math:`= \epsilon_\phi`;
    * ``rescale="none"``: the bare indicator.
    """
    phi = (np.asarray(direction) * np.asarray(grad) > 0).astype(np.float64)
    if rescale == "count":
        return phi * (phi.size / (phi.sum() + 1.0))
    if rescale == "mean":
        return phi / (phi.mean() + mean_eps)
    if rescale == "none":
        return phi
    raise ValueError(f"cautious rescale must be 'count', 'mean' or 'none'; got {rescale!r}")


def _caution(direction: Array, grad: Array, hyper: Mapping[str, Any]) -> Array:
    if not hyper.get("cautious", False):
        return direction
    return direction * cautious_mask(
        direction, grad, rescale=hyper.get("cautious_rescale", "count"), mean_eps=hyper.get("cautious_eps", 1e-8)
    )


class _Member(NamedTuple):
    init: Callable[[Array], dict[str, Any]]
    # (grad, param, state, t, learning_rate, hyper, name) -> (update, state)
    step: Callable[..., tuple[Array, dict[str, Any]]]
    defaults: dict[str, Any]


def _moments(shape: tuple[int, ...]) -> dict[str, Any]:
    return {"mu": np.zeros(shape), "nu": np.zeros(shape)}


def _ema(old: Array, new: Array, decay: float) -> Array:
    return decay * old + (1.0 - decay) * new


# --------------------------------------------------------------------------
# AdamW (the base of the cautious variant)
# --------------------------------------------------------------------------


def _adamw_step(g, theta, state, t, lr, h, name):
    r"""AdamW: Loshchilov & Hutter (2019), Algorithm 2, with optax's ``eps_root``.

    :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g`, :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2`,
    :math:`u = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)`,
    :math:`\theta_t = \theta_{t-1} - \eta (u + \lambda \theta_{t-1})` (optax.adamw; ``weight_decay=0`` is Adam).
    """
    b1, b2 = h["b1"], h["b2"]
    mu = _ema(state["mu"], g, b1)
    nu = _ema(state["nu"], g * g, b2)
    mu_hat = mu / (1.0 - b1**t)
    nu_hat = nu / (1.0 - b2**t)
    u = _caution(mu_hat / (np.sqrt(nu_hat + h["eps_root"]) + h["eps"]), g, h)
    return -lr * (u + h["weight_decay"] * theta), {"mu": mu, "nu": nu}


ADAMW = _Member(
    lambda p: _moments(p.shape),
    _adamw_step,
    {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "weight_decay": 1e-4},
)


# --------------------------------------------------------------------------
# RAdam
# --------------------------------------------------------------------------


def radam_rho(t: int, b2: float) -> float:
    r"""Liu et al. (2020), Algorithm 2: :math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t)`,
    :math:`\rho_\infty = 2/(1-\beta_2) - 1`, the length of the SMA approximating the EMA."""
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    return rho_inf - 2.0 * t * b2**t / (1.0 - b2**t)


def radam_rectification(t: int, b2: float) -> float:
    r"""Liu et al. (2020), Algorithm 2: :math:`r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}`."""
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho = radam_rho(t, b2)
    return math.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))


def _radam_step(g, theta, state, t, lr, h, name):
    r"""RAdam: Liu et al. (2020), "On the Variance of the Adaptive Learning Rate and Beyond", Algorithm 2.

    With :math:`\rho_t` and :math:`r_t` from :func:`radam_rho` and
    :func:`radam_rectification`: while the variance is intractable the step is
    momentum SGD, :math:`u = \hat m_t`; once it is tractable,
    :math:`u = r_t\, \hat m_t\, l_t` with the adaptive rate :math:`l_t`. The
    paper writes :math:`l_t = \sqrt{(1-\beta_2^t)/v_t}` and "tractable" as
    :math:`\rho_t > 4`; the frameworks differ in both, selected by
    ``convention``:

    * ``"optax"`` (optax.radam): :math:`l_t = 1/(\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)`,
      tractable when :math:`\rho_t \ge` ``threshold`` (5);
    * ``"torch"`` (torch.optim.RAdam): :math:`l_t = \sqrt{1-\beta_2^t}/(\sqrt{v_t} + \epsilon)`
      -- ``eps`` added before the bias correction, so it weighs
      :math:`1/\sqrt{1-\beta_2^t}` times more -- tractable when
      :math:`\rho_t >` ``threshold`` (5); ``weight_decay`` adds
      :math:`\lambda\theta` to the gradient, or with
      ``decoupled_weight_decay=True`` multiplies :math:`\theta` by
      :math:`1 - \eta\lambda` (RAdamW).

    ``nesterov=True`` (optax only) uses
    :math:`\beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g/(1-\beta_1^t)` for :math:`\hat m_t`.
    """
    b1, b2, convention = h["b1"], h["b2"], h["convention"]
    if convention not in ("optax", "torch"):
        raise ValueError(f"radam convention must be 'optax' or 'torch'; got {convention!r}")
    wd, decoupled = h["weight_decay"], h["decoupled_weight_decay"]
    if convention == "optax" and wd:
        raise ValueError("optax.radam has no weight decay; use convention='torch'")
    if wd and not decoupled:
        g = g + wd * theta
    mu = _ema(state["mu"], g, b1)
    nu = _ema(state["nu"], g * g, b2)
    bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
    if h["nesterov"]:
        mu_hat = b1 * mu / (1.0 - b1 ** (t + 1)) + (1.0 - b1) * g / bc1
    else:
        mu_hat = mu / bc1
    rho = radam_rho(t, b2)
    tractable = rho >= h["threshold"] if convention == "optax" else rho > h["threshold"]
    if not tractable:
        u = mu_hat
    elif convention == "optax":
        u = radam_rectification(t, b2) * mu_hat / (np.sqrt(nu / bc2 + h["eps_root"]) + h["eps"])
    else:
        u = mu_hat * radam_rectification(t, b2) * math.sqrt(bc2) / (np.sqrt(nu) + h["eps"])
    u = _caution(u, g, h)
    update = -lr * u
    if wd and decoupled:
        update = update - lr * wd * theta
    return update, {"mu": mu, "nu": nu}


RADAM = _Member(
    lambda p: _moments(p.shape),
    _radam_step,
    {
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "eps_root": 0.0,
        "threshold": 5.0,
        "convention": "optax",
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
        "nesterov": False,
    },
)


# --------------------------------------------------------------------------
# NAdam with momentum decay (torch.optim.NAdam)
# --------------------------------------------------------------------------


def nadam_mu(t: int, b1: float, momentum_decay: float) -> float:
    r"""Dozat (2016)'s momentum schedule as torch.optim.NAdam: :math:`\mu_t = \beta_1 (1 - \tfrac12\, 0.96^{t\psi})`."""
    return b1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


def _nadam_init(p: Array) -> dict[str, Any]:
    return {**_moments(p.shape), "mu_product": 1.0}


def _nadam_step(g, theta, state, t, lr, h, name):
    r"""NAdam: Dozat (2016), "Incorporating Nesterov Momentum into Adam", Algorithm 2, as torch.optim.NAdam.

    With :math:`\mu_t` from :func:`nadam_mu` (``momentum_decay`` :math:`=\psi`)
    and :math:`\Pi_t = \prod_{i \le t} \mu_i`:

    .. math::

      u = \frac{1}{\sqrt{\hat v_t} + \epsilon}\Big(\frac{1-\mu_t}{1-\Pi_t} g
          + \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} m_t\Big)

    where, as in PyTorch (and unlike the paper's box, which uses
    :math:`\mu_t`), :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g`, and
    :math:`\hat v_t = v_t/(1-\beta_2^t)` without the paper's extra
    :math:`\beta_2`. ``weight_decay`` is coupled (added to the gradient) or,
    with ``decoupled_weight_decay=True``, :math:`\theta \leftarrow \theta(1-\eta\lambda)`.
    """
    b1, b2, psi = h["b1"], h["b2"], h["momentum_decay"]
    wd, decoupled = h["weight_decay"], h["decoupled_weight_decay"]
    if wd and not decoupled:
        g = g + wd * theta
    mu_t, mu_next = nadam_mu(t, b1, psi), nadam_mu(t + 1, b1, psi)
    product = state["mu_product"] * mu_t
    mu = _ema(state["mu"], g, b1)
    nu = _ema(state["nu"], g * g, b2)
    denom = np.sqrt(nu / (1.0 - b2**t)) + h["eps"]
    u = (1.0 - mu_t) / (1.0 - product) * g / denom + mu_next / (1.0 - product * mu_next) * mu / denom
    u = _caution(u, g, h)
    update = -lr * u
    if wd and decoupled:
        update = update - lr * wd * theta
    return update, {"mu": mu, "nu": nu, "mu_product": product}


NADAM = _Member(
    _nadam_init,
    _nadam_step,
    {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "momentum_decay": 4e-3, "weight_decay": 0.0, "decoupled_weight_decay": False},
)


# --------------------------------------------------------------------------
# ADOPT
# --------------------------------------------------------------------------


def _adopt_step(g, theta, state, t, lr, h, name):
    r"""ADOPT: Taniguchi et al. (2024), "ADOPT: Modified Adam Can Converge with Any β2", Algorithm 2 (with clipping).

    The first gradient only initialises the second moment,
    :math:`v_0 = g_0^2`, and the parameters do not move (optax.contrib.adopt's
    first update is zero). Then, for :math:`t = 1, 2, \dots` (the call
    number minus one):

    .. math::

      m_t = \beta_1 m_{t-1} + (1-\beta_1)\,\mathrm{clip}\big(g_t / \max(\sqrt{v_{t-1}}, \epsilon),\ c_t\big),\quad
      \theta_t = \theta_{t-1} - \eta\, m_t,\quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    -- the gradient is normalised by the *previous* second moment before the
    first moment sees it. :math:`c_t` = ``clip_value_fn(t)`` (default
    :math:`t^{1/4}`); ``use_clipping=False`` drops the clip (Algorithm 1).
    ``nesterov=True`` (optax) steps along :math:`\beta_1 m_t + (1-\beta_1)\,\mathrm{clip}(\cdot)`.
    """
    b1, b2, eps = h["b1"], h["b2"], h["eps"]
    if t == 1:
        return np.zeros_like(theta), {"mu": state["mu"], "nu": g * g}
    normalised = g / np.maximum(np.sqrt(state["nu"]), eps)
    if h["use_clipping"]:
        clip = float(h["clip_value_fn"](t - 1))
        normalised = np.clip(normalised, -clip, clip)
    mu = _ema(state["mu"], normalised, b1)
    nu = _ema(state["nu"], g * g, b2)
    direction = _ema(mu, normalised, b1) if h["nesterov"] else mu
    return -lr * _caution(direction, g, h), {"mu": mu, "nu": nu}


ADOPT = _Member(
    lambda p: _moments(p.shape),
    _adopt_step,
    {
        "b1": 0.9,
        "b2": 0.9999,
        "eps": 1e-6,
        "nesterov": False,
        "use_clipping": True,
        "clip_value_fn": lambda count: count**0.25,
    },
)


# --------------------------------------------------------------------------
# AdEMAMix
# --------------------------------------------------------------------------


def ademamix_alpha_schedule(alpha: float, warmup: int) -> Callable[[int], float]:
    r"""Pagliardini et al. (2024), AdEMAMix, the :math:`\alpha` scheduler: :math:`\alpha(t) = \min(t\alpha/T_\alpha, \alpha)`.

    The returned function takes ``t``; optax.contrib.ademamix calls a
    schedule with the number of steps already taken (0 at the first step).
    """

    def schedule(t: int) -> float:
        return min(t * alpha / warmup, alpha)

    return schedule


def ademamix_b3_schedule(b3: float, warmup: int, b_start: float) -> Callable[[int], float]:
    r"""Pagliardini et al. (2024), AdEMAMix, the :math:`\beta_3` scheduler (linear in the EMA's half-life):

    .. math::

      \beta_3(t) = \min\Big(\exp\Big(\frac{\ln\beta_{start}\,\ln\beta_3}
                   {(1-t/T_{\beta_3})\ln\beta_3 + (t/T_{\beta_3})\ln\beta_{start}}\Big),\ \beta_3\Big)

    with :math:`\beta_{start} = \beta_1` in the paper.
    """
    log_start, log_end = math.log(b_start), math.log(b3)

    def schedule(t: int) -> float:
        a = t / warmup
        return min(math.exp(log_start * log_end / ((1.0 - a) * log_end + a * log_start)), b3)

    return schedule


def _ademamix_init(p: Array) -> dict[str, Any]:
    return {"m1": np.zeros(p.shape), "m2": np.zeros(p.shape), "nu": np.zeros(p.shape)}


def _ademamix_step(g, theta, state, t, lr, h, name):
    r"""AdEMAMix: Pagliardini et al. (2024), "The AdEMAMix Optimizer: Better, Faster, Older", Algorithm 1.

    A fast and a slow EMA of the gradient, mixed:

    .. math::

      m_1 \leftarrow \beta_1 m_1 + (1-\beta_1) g,\quad
      m_2 \leftarrow \beta_3(t) m_2 + (1-\beta_3(t)) g,\quad
      \nu \leftarrow \beta_2 \nu + (1-\beta_2) g^2,

      \theta \leftarrow \theta - \eta\Big(\frac{\hat m_1 + \alpha(t) m_2}{\sqrt{\hat \nu + \epsilon_{root}} + \epsilon}
      + \lambda\theta\Big)

    (only :math:`m_1` and :math:`\nu` are bias-corrected). ``alpha`` and
    ``b3`` are numbers or schedules (:func:`ademamix_alpha_schedule`,
    :func:`ademamix_b3_schedule`), called as optax does with the number of
    steps already taken.
    """
    b1, b2 = h["b1"], h["b2"]
    b3, alpha = _value(h["b3"], t - 1), _value(h["alpha"], t - 1)
    m1 = _ema(state["m1"], g, b1)
    m2 = _ema(state["m2"], g, b3)
    nu = _ema(state["nu"], g * g, b2)
    u = (m1 / (1.0 - b1**t) + alpha * m2) / (np.sqrt(nu / (1.0 - b2**t) + h["eps_root"]) + h["eps"])
    u = _caution(u, g, h)
    return -lr * (u + h["weight_decay"] * theta), {"m1": m1, "m2": m2, "nu": nu}


ADEMAMIX = _Member(
    _ademamix_init,
    _ademamix_step,
    {"b1": 0.9, "b2": 0.999, "b3": 0.9999, "alpha": 5.0, "eps": 1e-8, "eps_root": 0.0, "weight_decay": 0.0},
)


# --------------------------------------------------------------------------
# StableAdamW
# --------------------------------------------------------------------------


def stable_adamw_rms(g: Array, nu_hat: Array, eps: float) -> float:
    r"""Wortsman et al. (2023), Algorithm 2: :math:`\mathrm{RMS}_t = \sqrt{\mathbb E[g_t^2 / \max(\hat v_t, \epsilon^2)]}` over one array."""
    return float(np.sqrt(np.mean(g * g / np.maximum(nu_hat, eps * eps))))


def _stable_adamw_step(g, theta, state, t, lr, h, name):
    r"""StableAdamW: Wortsman et al. (2023), "Stable and low-precision training for large-scale
    vision-language models", Algorithm 2 (AdamW with Adafactor's update clipping, per array).

    The paper folds the bias correction into the decays
    (:math:`\hat\beta = \beta(1-\beta^{t-1})/(1-\beta^t)`), which makes its
    moments exactly :math:`\hat m_t = m_t/(1-\beta_1^t)` and
    :math:`\hat v_t = v_t/(1-\beta_2^t)`; then, per array,

    .. math::

      \eta_t = \eta / \max(1, \mathrm{RMS}_t),\qquad
      \theta_t = \theta_{t-1} - \eta_t \lambda \theta_{t-1} - \eta_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    with :math:`\mathrm{RMS}_t` from :func:`stable_adamw_rms` (the current
    gradient against the second moment that already includes it). The
    clipped rate scales the weight decay too, as in the paper.
    ``weight_decay`` may be a callable of the number of steps already taken
    (:math:`\lambda_t`, called as optax calls a schedule); ``decay_mask`` (a
    dict name -> bool) leaves arrays out of the decay.
    """
    b1, b2, eps = h["b1"], h["b2"], h["eps"]
    mu = _ema(state["mu"], g, b1)
    nu = _ema(state["nu"], g * g, b2)
    mu_hat, nu_hat = mu / (1.0 - b1**t), nu / (1.0 - b2**t)
    rate = lr / max(1.0, stable_adamw_rms(g, nu_hat, eps))
    u = _caution(mu_hat / (np.sqrt(nu_hat) + eps), g, h)
    mask = h.get("decay_mask")
    decay = _value(h["weight_decay"], t - 1) if mask is None or mask[name] else 0.0
    return -rate * (u + decay * theta), {"mu": mu, "nu": nu}


STABLE_ADAMW = _Member(
    lambda p: _moments(p.shape),
    _stable_adamw_step,
    {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4, "decay_mask": None},
)


# --------------------------------------------------------------------------
# LAMB
# --------------------------------------------------------------------------


def _lamb_step(g, theta, state, t, lr, h, name):
    r"""LAMB: You et al. (2019), "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
    Algorithm 2, as optax.lamb (scale_by_adam, add_decayed_weights, scale_by_trust_ratio).

    Per array, with :math:`\phi` the identity:

    .. math::

      r = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon) + \lambda \theta,\qquad
      \theta_t = \theta_{t-1} - \eta \frac{\lVert\theta_{t-1}\rVert}{\lVert r\rVert} r

    where the trust ratio :math:`\lVert\theta\rVert/\lVert r\rVert` is 1 when
    either norm is zero (optax's rule, so zero-initialised arrays move).
    ``decay_mask`` (a dict name -> bool) leaves arrays out of the decay.
    """
    b1, b2 = h["b1"], h["b2"]
    mu = _ema(state["mu"], g, b1)
    nu = _ema(state["nu"], g * g, b2)
    u = _caution((mu / (1.0 - b1**t)) / (np.sqrt(nu / (1.0 - b2**t) + h["eps_root"]) + h["eps"]), g, h)
    mask = h.get("decay_mask")
    if mask is None or mask[name]:
        u = u + h["weight_decay"] * theta
    param_norm, update_norm = float(np.linalg.norm(theta)), float(np.linalg.norm(u))
    trust = 1.0 if param_norm == 0.0 or update_norm == 0.0 else param_norm / update_norm
    return -lr * trust * u, {"mu": mu, "nu": nu}


LAMB = _Member(
    lambda p: _moments(p.shape),
    _lamb_step,
    {"b1": 0.9, "b2": 0.999, "eps": 1e-6, "eps_root": 0.0, "weight_decay": 0.0, "decay_mask": None},
)


# --------------------------------------------------------------------------
# Adam-mini
# --------------------------------------------------------------------------


def adam_mini_blocks(array: Array, how: str = "rows") -> Array:
    """Block labels for one array (same shape, integers): which second moment each entry shares.

    ``"rows"`` (the default partition): a matrix (or higher) gets one block
    per index of its first axis, ``array[i, ...]``, a vector or scalar one
    block; ``"columns"``: one block per index of the last axis
    (``array[..., j]``, the output units of a ``[in, out]`` kernel); ``"whole"``: one
    block; ``"elements"``: every entry its own block (Adam).
    """
    shape = np.shape(array)
    if how == "whole" or (how in ("rows", "columns") and len(shape) < 2):
        return np.zeros(shape, np.int64)
    if how == "rows":
        return np.broadcast_to(np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()
    if how == "columns":
        return np.broadcast_to(np.arange(shape[-1]), shape).copy()
    if how == "elements":
        return np.arange(int(np.prod(shape))).reshape(shape)
    raise ValueError(f"adam_mini blocks must be 'rows', 'columns', 'whole', 'elements' or a callable; got {how!r}")


def _labels(h: Mapping[str, Any], name: str, array: Array) -> Array:
    blocks = h["blocks"]
    labels = blocks(name, array) if callable(blocks) else adam_mini_blocks(array, blocks)
    labels = np.asarray(labels)
    if labels.shape != np.shape(array):
        raise ValueError(f"adam_mini blocks for {name!r}: labels of shape {labels.shape}, array {np.shape(array)}")
    return labels


def _adam_mini_step(g, theta, state, t, lr, h, name):
    r"""Adam-mini: Zhang et al. (2024), "Adam-mini: Use Fewer Learning Rates To Gain More", Algorithm 1.

    One second moment per block :math:`b` of the partition (see
    :func:`adam_mini_blocks`), the mean of the squared gradient over the block:

    .. math::

      m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
      v_b \leftarrow \beta_2 v_b + (1-\beta_2)\,\operatorname{mean}_{i \in b}(g_i^2),\quad
      \theta_i \leftarrow \theta_i - \eta\Big(\frac{\hat m_i}{\sqrt{\hat v_{b(i)}} + \epsilon} + \lambda\theta_i\Big)

    with :math:`\hat m = m/(1-\beta_1^t)`, :math:`\hat v_b = v_b/(1-\beta_2^t)`.
    The state keeps one :math:`v_b` per block (``state["nu"]`` has one entry
    per label, in sorted label order). ``blocks`` is ``"rows"``,
    ``"columns"``, ``"whole"``, ``"elements"`` or a callable
    ``(name, array) -> labels``.
    """
    b1, b2 = h["b1"], h["b2"]
    labels = _labels(h, name, theta)
    keys, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    sums = np.bincount(inverse.ravel(), weights=(g * g).ravel(), minlength=len(keys))
    counts = np.bincount(inverse.ravel(), minlength=len(keys))
    nu_old = state["nu"] if state["nu"] is not None else np.zeros(len(keys))
    nu = _ema(nu_old, sums / counts, b2)
    mu = _ema(state["mu"], g, b1)
    denom = np.sqrt(nu / (1.0 - b2**t))[inverse] + h["eps"]
    u = _caution((mu / (1.0 - b1**t)) / denom, g, h)
    return -lr * (u + h["weight_decay"] * theta), {"mu": mu, "nu": nu}


ADAM_MINI = _Member(
    lambda p: {"mu": np.zeros(p.shape), "nu": None},
    _adam_mini_step,
    {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "blocks": "rows"},
)


# --------------------------------------------------------------------------
# The registry and the calling convention
# --------------------------------------------------------------------------

_REGISTRY: dict[str, _Member] = {
    "adamw": ADAMW,
    "radam": RADAM,
    "nadam": NADAM,
    "adopt": ADOPT,
    "ademamix": ADEMAMIX,
    "stable_adamw": STABLE_ADAMW,
    "lamb": LAMB,
    "adam_mini": ADAM_MINI,
}
MEMBERS: tuple[str, ...] = tuple(_REGISTRY)
_COMMON = {"learning_rate": 1e-3, "cautious": False, "cautious_rescale": "count", "cautious_eps": 1e-8}


class Optimizer(NamedTuple):
    """One member with its hyperparameters, optax-shaped, in NumPy float64."""

    init: Callable[[Params], Any]
    update: Callable[[Params, Any, Params], tuple[Params, Any]]
    hyper: dict[str, Any]


def _as_dict(tree: Params) -> tuple[dict[str, Array], bool]:
    if isinstance(tree, Mapping):
        return {k: np.asarray(v, np.float64) for k, v in tree.items()}, True
    return {"": np.asarray(tree, np.float64)}, False


def _like(values: dict[str, Array], is_dict: bool) -> Params:
    return dict(values) if is_dict else values[""]


def make(name: str, **hyper: Any) -> Optimizer:
    """Member ``name`` with ``hyper`` over its defaults (unknown keywords are an error)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown member {name!r}; known: {', '.join(MEMBERS)}")
    member = _REGISTRY[name]
    unknown = set(hyper) - set(member.defaults) - set(_COMMON)
    if unknown:
        raise TypeError(
            f"{name}: unknown hyperparameters {sorted(unknown)}; known: {sorted({*member.defaults, *_COMMON})}"
        )
    h = {**_COMMON, **member.defaults, **hyper}

    def init(params: Params) -> dict[str, Any]:
        values, _ = _as_dict(params)
        return {"count": 0, "arrays": {k: member.init(v) for k, v in values.items()}}

    def update(grads: Params, state: dict[str, Any], params: Params) -> tuple[Params, dict[str, Any]]:
        g, is_dict = _as_dict(grads)
        theta, _ = _as_dict(params)
        if g.keys() != theta.keys():
            raise ValueError(f"gradients {sorted(g)} and parameters {sorted(theta)} differ")
        count = state["count"]
        lr = _value(h["learning_rate"], count)
        updates, arrays = {}, {}
        for k in theta:
            updates[k], arrays[k] = member.step(g[k], theta[k], state["arrays"][k], count + 1, lr, h, k)
        return _like(updates, is_dict), {"count": count + 1, "arrays": arrays}

    return Optimizer(init, update, h)


class Run(NamedTuple):
    """A run: ``params[t - 1]`` and ``updates[t - 1]`` after / at step ``t``, and the final state."""

    params: list[Params]
    updates: list[Params]
    state: Any


def _loop(opt: Optimizer, next_grad: Callable[[Params, int], Params], params0: Params, steps: int) -> Run:
    values, is_dict = _as_dict(params0)
    theta = _like(values, is_dict)
    state = opt.init(theta)
    params, updates = [], []
    for t in range(1, steps + 1):
        delta, state = opt.update(next_grad(theta, t), state, theta)
        if is_dict:
            theta = {k: theta[k] + delta[k] for k in theta}
        else:
            theta = theta + delta
        params.append(theta)
        updates.append(delta)
    return Run(params, updates, state)


def run(name: str, grad_fn: Callable[[Params, int], Params], params0: Params, steps: int, **hyper: Any) -> list[Params]:
    """Closed loop: ``steps`` steps of member ``name``, the gradient ``grad_fn(params, t)`` at the current params.

    Returns the parameters after each step (``steps`` entries, same form as ``params0``).
    """
    return _loop(make(name, **hyper), grad_fn, params0, steps).params


def run_full(name: str, grad_fn: Callable[[Params, int], Params], params0: Params, steps: int, **hyper: Any) -> Run:
    """:func:`run`, returning the updates and the final state too."""
    return _loop(make(name, **hyper), grad_fn, params0, steps)


def _fixed(grads: Sequence[Params] | Array) -> tuple[Callable[[Params, int], Params], int]:
    sequence = list(grads)
    return (lambda _params, t: sequence[t - 1]), len(sequence)


def open_loop(name: str, grads: Sequence[Params] | Array, params0: Params = None, **hyper: Any) -> list[Params]:
    """A fixed gradient sequence: ``grads[t - 1]`` at step ``t``; the parameters after each step.

    ``params0`` defaults to zeros shaped like the first gradient (LAMB's
    trust ratio and weight decay read the parameters, so pass them there).
    """
    next_grad, steps = _fixed(grads)
    if params0 is None:
        first, is_dict = _as_dict(list(grads)[0])
        params0 = _like({k: np.zeros_like(v) for k, v in first.items()}, is_dict)
    return _loop(make(name, **hyper), next_grad, params0, steps).params


def open_loop_updates(name: str, grads: Sequence[Params] | Array, params0: Params = None, **hyper: Any) -> list[Params]:
    """:func:`open_loop`, returning the update :math:`\\theta_t - \\theta_{t-1}` of each step instead."""
    next_grad, steps = _fixed(grads)
    if params0 is None:
        first, is_dict = _as_dict(list(grads)[0])
        params0 = _like({k: np.zeros_like(v) for k, v in first.items()}, is_dict)
    return _loop(make(name, **hyper), next_grad, params0, steps).updates
