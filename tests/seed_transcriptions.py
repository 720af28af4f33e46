"""NumPy float64 transcriptions of the seeds' loops, the reference for the simulator tests.

Written from the seed documents, not from adamjax: explicit Python loops, one
step at a time, in float64. Where a seed has a bug that adamjax deliberately
does not copy, the transcription fixes it and says so.
"""

from __future__ import annotations

import numpy as np


def seed000_plot(
    grads, beta1: float, beta2: float, epsilon: float, nbeta: float | None = None, npow: int | None = None
):
    """Seed 000's ``plot`` function without the drawing: returns its arrays.

    As in the seed, the n-th power moment is an EMA of ``g**npow`` (no absolute
    value) with its own decay ``nbeta``; its root is ``vp_hat ** (1/npow)``.
    The seed's ``m[i-2]`` at ``i = 1`` reads ``m[-1]``, still zero then, so the
    recursion starts from zero moments as written here.
    """
    g = np.asarray(grads, np.float64)
    steps = g.shape[0]
    m = np.zeros(steps)
    v = np.zeros(steps)
    vp = np.zeros(steps)
    m_prev = v_prev = vp_prev = 0.0
    for i in range(steps):
        m[i] = beta1 * m_prev + (1 - beta1) * g[i]
        v[i] = beta2 * v_prev + (1 - beta2) * (g[i] ** 2)
        if nbeta and npow:
            vp[i] = nbeta * vp_prev + (1 - nbeta) * (g[i] ** npow)
        m_prev, v_prev, vp_prev = m[i], v[i], vp[i]
    t = np.arange(1, steps + 1)
    out = {"m": m, "v": v}
    out["m_hat"] = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    out["v_hat"] = v_hat
    out["v_hat_root"] = np.sqrt(v_hat)
    out["adam_step"] = out["m_hat"] / (out["v_hat_root"] + epsilon)
    out["m_hat_trend"] = np.poly1d(np.polyfit(t, out["m_hat"], 1))(t)
    out["v_hat_root_trend"] = np.poly1d(np.polyfit(t, out["v_hat_root"], 1))(t)
    if nbeta and npow:
        out["vp"] = vp
        out["vp_hat"] = vp / (1 - nbeta**t)
        out["vp_hat_root"] = np.power(out["vp_hat"], 1 / npow)
        out["adam_npow_step"] = out["m_hat"] / (out["vp_hat_root"] + epsilon)
    return out


def seed002_build_swinging(size: int, periods: float) -> np.ndarray:
    """Seed 002's ``build_swinging(ticks, periods)`` (ticks only give the size), flattened."""
    two_pi = periods * 2 * np.pi
    x1 = np.linspace(0.0, two_pi * 0.5, num=size, dtype=np.float64).reshape(-1, 1)
    x2 = np.linspace(0.0, two_pi * 2, num=size, dtype=np.float64).reshape(-1, 1)
    x3 = np.linspace(0.0, two_pi * 4, num=size, dtype=np.float64).reshape(-1, 1)
    return (np.sin(x1) * 20 + np.power(np.cos(x2), 2) * 10 + np.sin(x3) * 3).reshape(-1)


def seed002_build_swinging_soft(size: int, periods: float) -> np.ndarray:
    """Seed 002's ``build_swinging_soft(ticks, periods)``, flattened."""
    two_pi = periods * 2 * np.pi
    values = np.linspace(0.0, two_pi * 2, num=size, dtype=np.float64).reshape(-1, 1)
    return (np.sin(values) * 5 + 10).reshape(-1)


def _ema(cur_value, running_value, beta):
    return (1 - beta) * cur_value + beta * running_value


def _columns(rows):
    data = np.array(rows, np.float64)
    names = ("t", "dW", "v", "s", "v_corr", "s_corr", "dW_reg")
    return {name: data[:, i] for i, name in enumerate(names)}


def seed002_simulate_adam(dW, beta_1: float, beta_2: float, epsilon: float):
    """Seed 002's ``simulate_adam`` with bias correction from the first step.

    The seed skipped the correction at its ``t = 0`` and then divided by
    ``1 - beta**t`` one step late; here step ``t = 1, 2, ...`` divides by
    ``1 - beta**t``, as Kingma & Ba. Column names are the seed's: ``v`` is the
    first moment, ``s`` the second, ``dW_reg`` the "regularized" step.
    """
    v_dw = s_dw = 0.0
    rows = []
    for index, dw in enumerate(np.asarray(dW, np.float64).reshape(-1)):
        t = index + 1
        v_dw = _ema(dw, v_dw, beta_1)
        s_dw = _ema(np.power(dw, 2), s_dw, beta_2)
        v_corr = v_dw / (1 - beta_1**t)
        s_corr = s_dw / (1 - beta_2**t)
        rows.append((t, dw, v_dw, s_dw, v_corr, s_corr, v_corr / (np.sqrt(s_corr) + epsilon)))
    return _columns(rows)


def seed002_simulate_modified_adam(dW, beta_1: float, beta_2: float, epsilon: float):
    """Seed 002's ``simulate_modified_adam`` (centered ``s``), bias-corrected from the first step.

    Its second moment is the EMA of ``(dW - v)**2`` with the already-updated
    ``v``; its step ``dW / (sqrt(s_corr) + eps) + v_corr`` is the seed's own
    experiment, not Adam's and not the centered Adam's.
    """
    v_dw = s_dw = 0.0
    rows = []
    for index, dw in enumerate(np.asarray(dW, np.float64).reshape(-1)):
        t = index + 1
        v_dw = _ema(dw, v_dw, beta_1)
        s_dw = _ema(np.power(dw - v_dw, 2), s_dw, beta_2)
        v_corr = v_dw / (1 - beta_1**t)
        s_corr = s_dw / (1 - beta_2**t)
        rows.append((t, dw, v_dw, s_dw, v_corr, s_corr, dw / (np.sqrt(s_corr) + epsilon) + v_corr))
    return _columns(rows)


def centered_adam(grads, beta_1: float, beta_2: float, epsilon: float, eps_root: float = 0.0):
    """The centered (AdaBelief) Adam step, transcribed from Zhuang et al. 2020, Algorithm 2.

    ``s_t = b2 s + (1 - b2)(g - m_t)^2 + eps_root``; step ``m_hat / (sqrt(s_hat) + eps)``.
    """
    m = s = 0.0
    out = {"m": [], "s": [], "m_hat": [], "s_hat": [], "step": []}
    for index, g in enumerate(np.asarray(grads, np.float64).reshape(-1)):
        t = index + 1
        m = beta_1 * m + (1 - beta_1) * g
        s = beta_2 * s + (1 - beta_2) * (g - m) ** 2 + eps_root
        m_hat = m / (1 - beta_1**t)
        s_hat = s / (1 - beta_2**t)
        for key, value in zip(out, (m, s, m_hat, s_hat, m_hat / (np.sqrt(s_hat) + epsilon)), strict=True):
            out[key].append(value)
    return {key: np.array(values) for key, values in out.items()}


def seed003_adam(steps: int, eta: float = 0.01, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
    """Seed 003's ``AdamOptim`` on ``grad = 2w - 2`` from ``w = 0``: the weight after each iteration.

    Only the weight is transcribed; the seed's bias-term bug (``db`` instead of
    ``db**2``) does not touch it.
    """
    w = 0.0
    m_dw = v_dw = 0.0
    weights = []
    for t in range(1, steps + 1):
        dw = 2 * w - 2
        m_dw = beta1 * m_dw + (1 - beta1) * dw
        v_dw = beta2 * v_dw + (1 - beta2) * (dw**2)
        m_dw_corr = m_dw / (1 - beta1**t)
        v_dw_corr = v_dw / (1 - beta2**t)
        w = w - eta * (m_dw_corr / (np.sqrt(v_dw_corr) + epsilon))
        weights.append(w)
    return np.array(weights)
