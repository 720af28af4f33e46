r"""The stages of one Adam-family step, and :func:`adam_step`, which runs them.

A step for one array is a sequence of small stages, each with its maths in its
docstring. They share a *work* dictionary of arrays (``grad``, ``mu``, ``nu``,
``mu_hat``, ``nu_hat``, ``denom``, ``update``, ...) that each stage reads and
writes, and a :class:`Context` with the hyperparameters in the step's compute
dtype. The stages, in the order a step runs them:

1. **gradient** (optional): what the first moment sees, for example ADOPT's
   gradient normalised by the previous second moment;
2. **first moment**: :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`;
3. **second moment**: the rule for :math:`v_t` (squares, p-th powers, a
   running maximum, the centered "belief", one value per block, AMSGrad's
   maximum);
4. **correction**: :math:`\hat m_t` and :math:`\hat v_t` (bias correction,
   Nesterov's look-ahead, none);
5. **denominator**: :math:`\sqrt{\hat v_t + \epsilon_{root}} + \epsilon` and
   its relatives;
6. **direction**: :math:`u_t = \hat m_t / d_t` (RAdam's rectification is one);
7. **post-processing**: cautious masking, a decoupled decay that later stages
   scale (StableAdamW's), update clipping.

Every optimizer of the family is a tuple of stages. This module holds the
stages the members share; a member's own stages live in its file
(``adamjax/_adam.py``, ``_amsgrad.py``, ``_adamax.py``, ``_adabelief.py``,
``_nadam.py``, ``_radam.py``, ...). The classic members
(:func:`classic_stages`) follow from :class:`adamjax.AdamConfig`'s switches,
each switch's rule registered by the member that owns it; the newer members
list their stages in a :class:`adamjax._core.Member`. The native kernel's "is
this plain Adam?" test, construction-time validation, the simulator's
settings and :func:`adamjax.adam_stats` read these stages.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from adamjax import _checks
from adamjax._numerics import (
    abs_sq,
    as_factor,
    bias_correction,
    compute_dtype,
    hyper,
    memo,
    positive_in,
    read_real,
    real_dtype,
)

KINDS = ("gradient", "first moment", "second moment", "correction", "denominator", "direction", "post")
"""The kinds of stage, in the order a step runs them."""


class Context(NamedTuple):
    """What every stage of one array's step may read (besides the work dictionary).

    Attributes:
      config: the :class:`adamjax.AdamConfig`.
      dtype: the compute dtype (float32 or wider; complex for complex inputs).
      real: its real counterpart.
      count: the step being taken, :math:`t \\ge 1` (int32).
      b1, b2, eps, eps_root: hyperparameters ready to meet ``real`` arrays.
      one_minus_b1, one_minus_b2: :math:`1 - \\beta_1`, :math:`1 - \\beta_2`.
      cache: values computed once per update for all arrays (bias corrections).
      shared: per-update values prepared before the arrays are stepped (the
        previous count, schedules' values, the kernel's bias corrections).
    """

    config: Any
    dtype: jnp.dtype
    real: jnp.dtype
    count: jax.Array
    b1: Any
    b2: Any
    eps: Any
    eps_root: Any
    one_minus_b1: Any
    one_minus_b2: Any
    cache: dict | None
    shared: dict

    def value(self, name: str) -> Any:
        """A member hyperparameter (``threshold``, ``b3``, ...) ready to meet ``real`` arrays."""
        return hyper(self.config.value(name), self.real)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the Adam maths for one array.

    Attributes:
      kind: one of :data:`KINDS`.
      name: how messages and settings name it (``"amsgrad"``, ``"nesterov"``).
      run: ``run(work, context)``; reads and writes the work dictionary.
      checks: ``(hyperparameter, rule)`` pairs validated when an optimizer is
        built (rules: ``"decay"``, ``"nonnegative"``, ``"power"``,
        ``"schedule or decay"``, ``"schedule or real"``, ``"callable"``).
      kernel: whether the native kernel computes this stage.
    """

    kind: str
    name: str
    run: Callable[[dict, Context], None] = dataclasses.field(compare=True)
    checks: tuple[tuple[str, str], ...] = ()
    kernel: bool = False

    def __call__(self, work: dict, context: Context) -> None:
        self.run(work, context)


def stage(
    kind: str, name: str, *, checks: tuple[tuple[str, str], ...] = (), kernel: bool = False
) -> Callable[[Callable[[dict, Context], None]], Stage]:
    """Decorator: turns ``run(work, context)`` into a :class:`Stage` (its docstring kept)."""
    if kind not in KINDS:
        raise ValueError(f"stage kind must be one of {KINDS}; got {kind!r}.")

    def wrap(run: Callable[[dict, Context], None]) -> Stage:
        made = Stage(kind, name, run, checks, kernel)
        object.__setattr__(made, "__doc__", run.__doc__)
        return made

    return wrap


# --- first moment -------------------------------------------------------------------------------


@stage("first moment", "first moment", checks=(("b1", "decay"),), kernel=True)
def first_moment(work: dict, c: Context) -> None:
    r""":math:`m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, x_t`, with :math:`x_t` the gradient (or what a gradient stage made of it)."""
    work["mu"] = as_factor(c.one_minus_b1, c.dtype) * work["mu_input"] + as_factor(c.b1, c.dtype) * work["mu"].astype(
        c.dtype
    )


# --- second moment ------------------------------------------------------------------------------


@stage("second moment", "squares", checks=(("b2", "decay"),), kernel=True)
def squares(work: dict, c: Context) -> None:
    r""":math:`v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, |x_t|^2` (:math:`x \bar x` for complex :math:`x`)."""
    work["nu"] = c.one_minus_b2 * abs_sq(work["nu_input"]) + c.b2 * read_real(work["nu"], c.real)


# --- correction ---------------------------------------------------------------------------------


def first_bias_correction(c: Context) -> Any:
    r""":math:`1 - \beta_1^t` in the real compute dtype, once per update (shared by the arrays through ``c.cache``)."""
    return memo(c.cache, ("b1", c.real), lambda: bias_correction(c.config.b1, c.count, c.real))


def second_bias_correction(c: Context) -> Any:
    r""":math:`1 - \beta_2^t` in the real compute dtype, once per update (shared by the arrays through ``c.cache``)."""
    return memo(c.cache, ("b2", c.real), lambda: bias_correction(c.config.b2, c.count, c.real))


@stage("correction", "bias correction", kernel=True)
def correct_mu(work: dict, c: Context) -> None:
    r""":math:`\hat m_t = m_t / (1 - \beta_1^t)`."""
    given = c.shared.get("bias_corrections")
    bc1 = first_bias_correction(c) if given is None else given[0].astype(c.real)
    work["mu_hat"] = work["mu"] / as_factor(bc1, c.dtype)


@stage("correction", "no first-moment correction", kernel=True)
def keep_mu(work: dict, c: Context) -> None:
    r""":math:`\hat m_t = m_t` (bias correction off)."""
    work["mu_hat"] = work["mu"]


@stage("correction", "bias correction", kernel=True)
def correct_nu(work: dict, c: Context) -> None:
    r""":math:`\hat v_t = v_t / (1 - \beta_2^t)` (of AMSGrad's maximum when one is kept)."""
    given = c.shared.get("bias_corrections")
    bc2 = second_bias_correction(c) if given is None else given[1].astype(c.real)
    work["nu_hat"] = work.get("nu_used", work["nu"]) / bc2


@stage("correction", "no second-moment correction", kernel=True)
def keep_nu(work: dict, c: Context) -> None:
    r""":math:`\hat v_t = v_t` (bias correction off, or Adamax's running maximum)."""
    work["nu_hat"] = work.get("nu_used", work["nu"])


# --- denominator --------------------------------------------------------------------------------


def set_denominator(work: dict, c: Context, root: jax.Array) -> None:
    r""":math:`d_t = r_t + \epsilon` from a denominator stage's root :math:`r_t`, and whether :math:`d_t` may be 0."""
    work["denom"] = root + c.eps
    # eps > 0 keeps the denominator positive; otherwise the direction guards a 0.
    work["may_be_zero"] = not positive_in(c.config.eps, c.real)


@stage("denominator", "square root", checks=(("eps", "nonnegative"), ("eps_root", "nonnegative")), kernel=True)
def root(work: dict, c: Context) -> None:
    r""":math:`d_t = \sqrt{\hat v_t + \epsilon_{root}} + \epsilon`."""
    set_denominator(work, c, jnp.sqrt(work["nu_hat"] + c.eps_root))


# --- direction ----------------------------------------------------------------------------------


def divide(numerator: jax.Array, work: dict, c: Context) -> jax.Array:
    r""":math:`n / d_t`, and :math:`\operatorname{sign}(n)` where :math:`d_t = 0` (never NaN or infinity).

    A zero denominator (``eps = 0`` with a zero gradient, or a second moment
    that underflowed) gives :math:`\operatorname{sign}(\hat m_t)` -- the limit of
    :math:`\hat m_t / \sqrt{\hat v_t}` for a gradient too small to square.
    """
    denom = work["denom"]
    if not work.get("may_be_zero", True):
        return numerator / denom.astype(c.dtype)
    zero = denom == 0
    return jnp.where(zero, jnp.sign(numerator), numerator) / jnp.where(zero, 1, denom).astype(c.dtype)


@stage("direction", "direction", kernel=True)
def direction(work: dict, c: Context) -> None:
    r""":math:`u_t = \hat m_t / d_t` (see :func:`divide` for :math:`d_t = 0`)."""
    work["update"] = divide(work["mu_hat"], work, c)


# --- post-processing ----------------------------------------------------------------------------


@stage("post", "cautious")
def cautious(work: dict, c: Context) -> None:
    r"""Cautious masking (Liang et al. 2024): keep the update where it agrees in sign with the gradient.

    .. math::

      \phi_t = \mathbb{1}[u_t \odot g_t > 0], \qquad
      u_t \leftarrow u_t \odot \phi_t \, \frac{n}{\lVert \phi_t \rVert_0 + 1}

    per array of :math:`n` entries, so the masked update keeps about the
    unmasked one's scale (the authors' code). For complex arrays the agreement
    is :math:`\operatorname{Re}(\bar u_t g_t) > 0`.
    """
    update, grad = work["update"], work["grad"]
    agree = jnp.real(jnp.conj(update) * grad) > 0
    mask = agree.astype(c.real)
    scale = jnp.asarray(max(update.size, 1), c.real) / (jnp.sum(mask) + 1)
    work["update"] = update * as_factor(mask * scale, c.dtype)


@stage("post", "clipped decoupled decay", checks=(("decoupled_weight_decay", "schedule or nonnegative"),))
def decoupled_decay(work: dict, c: Context) -> None:
    r"""Decoupled weight decay inside the core, so the post-processing after it scales it too.

    .. math::

      u_t \leftarrow u_t + \lambda_t \theta_{t-1}

    with :math:`\lambda_t` the decay (a schedule is called with the count
    before the step, as ``optax.add_decayed_weights`` does) and
    :math:`\theta_{t-1}` the array's parameters before the step. StableAdamW
    runs it before :func:`clip_update`, so the clipped rate
    :math:`\eta / \max(1, \mathrm{RMS}_t)` scales the decay as well as Adam's
    direction (Wortsman et al. 2023, Algorithm 2). An array the mask leaves
    out, or a decay that is a literal 0, is not touched.
    """
    param = work.get("param")
    if param is None:
        return
    rate = hyper(c.shared["decoupled_decay"], c.real)
    work["update"] = work["update"] + as_factor(rate, c.dtype) * param.astype(c.dtype)


@stage("post", "update clipping", checks=(("eps", "nonnegative"),))
def clip_update(work: dict, c: Context) -> None:
    r"""StableAdamW's update clipping (Wortsman et al. 2023), per array.

    .. math::

      \mathrm{RMS}_t = \sqrt{\operatorname{mean}\big(g_t^2 / \max(\hat v_t, \epsilon^2)\big)}, \qquad
      u_t \leftarrow u_t / \max(1, \mathrm{RMS}_t)

    so a step whose gradient is large against its second moment (the
    moment lags behind a sudden change) is shortened, Adafactor's clipping.
    """
    ratio = abs_sq(work["grad"]) / jnp.maximum(work["nu_hat"], c.eps * c.eps)
    rms = jnp.sqrt(jnp.mean(ratio)) if ratio.size else jnp.zeros([], c.real)
    work["update"] = work["update"] / as_factor(jnp.maximum(1, rms), c.dtype)


# --- the classic family from the switches ---------------------------------------------------------


class SwitchRule(NamedTuple):
    """How one of :class:`adamjax.AdamConfig`'s switches changes plain Adam's stages.

    The member file that owns the switch registers its rule (:func:`register_switch`),
    so this module names none of the members' stages.

    Attributes:
      field: the :class:`adamjax.AdamConfig` field the switch reads (``"power"``, ``"centered"``, ...).
      applies: ``applies(config) -> bool``, whether the switch is on.
      rewrite: ``rewrite(stages) -> stages``, the stages with the switch's own put in.
    """

    field: str
    applies: Callable[[Any], bool]
    rewrite: Callable[[tuple[Stage, ...]], tuple[Stage, ...]]


_SWITCH_RULES: list[SwitchRule] = []


def register_switch(
    field: str, applies: Callable[[Any], bool], rewrite: Callable[[tuple[Stage, ...]], tuple[Stage, ...]]
) -> None:
    """Registers how the switch ``field`` of :class:`adamjax.AdamConfig` changes the stages (see :class:`SwitchRule`)."""
    _SWITCH_RULES.append(SwitchRule(field, applies, rewrite))


def replaced(stages: tuple[Stage, ...], replacements: dict[Stage, Stage]) -> tuple[Stage, ...]:
    """``stages`` with each stage found in ``replacements`` swapped for its replacement."""
    return tuple(replacements.get(each, each) for each in stages)


def inserted(
    stages: tuple[Stage, ...], new: Stage, *, before: str | None = None, after: str | None = None
) -> tuple[Stage, ...]:
    """``stages`` with ``new`` put before the first stage of kind ``before`` or after the last of kind ``after``."""
    kinds = [each.kind for each in stages]
    if before is not None:
        at = kinds.index(before)
    elif after is not None:
        at = len(kinds) - kinds[::-1].index(after)
    else:
        raise ValueError("`inserted(...)` needs the kind to put the stage `before` or `after`.")
    return (*stages[:at], new, *stages[at:])


def classic_stages(config: Any) -> tuple[Stage, ...]:
    """The stages of a variant given by :class:`adamjax.AdamConfig`'s switches (Adam to AdaBelief).

    Plain Adam (the first moment, squares, bias correction on or off, the
    square root, the direction), rewritten by each registered switch that is
    on, in the order of :class:`adamjax.AdamConfig`'s fields (``power``, then
    ``centered``, ``amsgrad``, ``nesterov``). The member files register their
    switches when they are imported; the package's ``__init__`` imports them
    all, so the rules are in place before any optimizer is built.
    """
    stages: tuple[Stage, ...] = (
        first_moment,
        squares,
        correct_mu if config.bias_correction_mu else keep_mu,
        correct_nu if config.bias_correction_nu else keep_nu,
        root,
        direction,
    )
    fields = type(config)._fields
    for rule in sorted(_SWITCH_RULES, key=lambda rule: fields.index(rule.field)):
        if rule.applies(config):
            stages = rule.rewrite(stages)
    return stages


class AdamStep(NamedTuple):
    """Everything one Adam step computes for one array.

    The transformation keeps ``mu``, ``nu``, ``nu_max`` (and a member's
    ``moments``) and ``update``; the simulator records the rest. All arrays are
    in the compute dtype (float32 or wider); under ``jit`` the unused ones cost
    nothing. ``denom`` is 1 for a member without a denominator (ADOPT).
    """

    mu: jax.Array
    nu: jax.Array
    nu_max: jax.Array | None
    mu_hat: jax.Array
    nu_hat: jax.Array
    denom: jax.Array
    update: jax.Array
    moments: dict | None = None


def adam_step(
    grad: jax.Array,
    mu: jax.Array,
    nu: jax.Array,
    nu_max: jax.Array | None,
    count: jax.Array,
    config: Any,
    *,
    moments: dict | None = None,
    bias_corrections: tuple[jax.Array, jax.Array] | None = None,
    complements: tuple[jax.Array, jax.Array] | None = None,
    memo: dict | None = None,
    shared: dict | None = None,
    param: jax.Array | None = None,
) -> AdamStep:
    r"""One step of an Adam-family optimizer for one array: its stages, in order.

    For Adam, with :math:`t` = ``count`` (the step being taken, starting at 1),
    gradient :math:`g`, :math:`p` = ``power``:

    .. math::

      m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
      v_t &= \beta_2 v_{t-1} + (1 - \beta_2) |x|^p,
          \quad x = g \text{ (or } g - m_t \text{ when centered)} \\
      \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
      u_t &= \hat m_t / \big((\hat v_t + \epsilon_{root})^{1/p} + \epsilon\big)

    Switches: ``amsgrad`` replaces :math:`v_t` by :math:`\max_{s \le t} v_s`
    before bias correction (PyTorch's convention); ``centered`` adds
    :math:`\epsilon_{root}` to the stored :math:`v_t` instead of inside the
    root (AdaBelief, as optax); ``nesterov`` uses
    :math:`\hat m_t = \beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g/(1-\beta_1^t)`
    (optax's NAdam); ``power=inf`` keeps :math:`v_t = \max(\beta_2 v_{t-1},
    |x| + \epsilon_{root})` with no bias correction and :math:`u_t = \hat m_t /
    (v_t + \epsilon)` (Adamax); ``bias_correction=False`` drops both
    corrections. The newer members (RAdam, ADOPT, AdEMAMix, Adam-mini, ...)
    bring their own stages through ``config.member``; ``cautious`` and update
    clipping run last. Where the denominator is exactly 0 (``eps = 0`` and a
    zero gradient, or a second moment that underflowed) the update is
    :math:`\operatorname{sign}(\hat m_t)`, never NaN or infinity.

    Args:
      grad: the gradient (any float dtype).
      mu: this array's first moment before the step.
      nu: its second moment before the step.
      nu_max: AMSGrad's running maximum before the step (None unless ``config.amsgrad``).
      count: int32 scalar, the step number ``t >= 1``.
      config: the variant and its hyperparameters (an :class:`adamjax.AdamConfig`).
      moments: a member's other stored moments (AdEMAMix's slow ``m2``).
      bias_corrections: ``(1 - b1**t, 1 - b2**t)`` when the caller has them
        already (the native kernel's differentiable twin); only for the plain
        variant.
      complements: ``(1 - b1, 1 - b2)`` rounded from a wider precision, when
        ``b1`` and ``b2`` are float32 arrays (``1 - 0.999`` in float32 is off by
        1e-5 relative).
      memo: a dictionary shared by the arrays of one update, so the bias
        corrections are computed once.
      shared: per-update values a member prepared (its schedules' values).
      param: the array's parameters before the step, for a decoupled decay
        inside the core (:func:`decoupled_decay`); None: no decay for this array.

    Returns:
      An :class:`AdamStep` in the compute dtype.

    Examples:
      >>> import jax.numpy as jnp, adamjax
      >>> step = adamjax.adam_step(jnp.array([2.0]), jnp.zeros(1), jnp.zeros(1), None,
      ...                          jnp.array(1, jnp.int32), adamjax.AdamConfig())
      >>> [round(float(x), 6) for x in (step.mu[0], step.nu[0], step.update[0])]
      [0.2, 0.004, 1.0]
    """
    moments = dict(moments or {})
    dtype = compute_dtype(grad.dtype, mu.dtype, nu.dtype, *(m.dtype for m in moments.values()))
    real = real_dtype(dtype)
    b1 = hyper(config.b1, real)
    b2 = hyper(config.b2, real)
    one_minus_b1, one_minus_b2 = (1 - b1, 1 - b2) if complements is None else (x.astype(real) for x in complements)
    shared = dict(shared or {})
    if bias_corrections is not None:
        shared["bias_corrections"] = bias_corrections
    context = Context(
        config,
        dtype,
        real,
        count,
        b1,
        b2,
        hyper(config.eps, real),
        hyper(config.eps_root, real),
        one_minus_b1,
        one_minus_b2,
        memo,
        shared,
    )
    g = grad.astype(dtype)
    work = {"grad": g, "mu_input": g, "nu_input": g, "mu": mu, "nu": nu, "nu_max": nu_max, "param": param, **moments}
    for each in config.stages:
        each(work, context)
    denom = work.get("denom")
    if denom is None:
        denom = jnp.ones(jnp.shape(work["nu_hat"]), real)
    return AdamStep(
        work["mu"],
        work["nu"],
        work["nu_max"],
        work["mu_hat"],
        work["nu_hat"],
        denom,
        work["update"],
        {key: work[key] for key in moments} or None,
    )


@functools.cache
def check_rule(rule: str) -> Callable[[str, str, Any], None]:
    """The construction-time check a stage's ``checks`` name (see :class:`Stage`)."""
    rules = {
        "decay": _checks.check_decay,
        "nonnegative": _checks.check_nonnegative,
        "power": lambda func, name, value: _checks.check_real(
            func, name, value, low=0.0, low_closed=False, allow_inf=True
        ),
        "schedule or decay": _check_schedule_or(_checks.check_decay),
        "schedule or real": _check_schedule_or(lambda func, name, value: _checks.check_real(func, name, value)),
        "callable": _check_callable,
        "real": lambda func, name, value: _checks.check_real(func, name, value),
        "schedule or nonnegative": _check_schedule_or(_checks.check_nonnegative),
    }
    return rules[rule]


def _check_schedule_or(check: Callable) -> Callable:
    def checked(func: str, name: str, value: Any) -> None:
        if callable(value) and not isinstance(value, jax.Array) and not _checks.is_traced(value):
            return
        check(func, name, value)

    return checked


def _check_callable(func: str, name: str, value: Any) -> None:
    if not callable(value) or _checks.is_traced(value) or isinstance(value, jax.Array):
        raise TypeError(f"`{func}({name}=...)` must be callable; got {type(value).__name__} {value!r}.")


def validate(func: str, config: Any) -> None:
    """Checks every hyperparameter the config's stages declare (each once), naming ``func``."""
    seen: set[str] = set()
    for each in config.stages:
        for name, rule in each.checks:
            if name in seen:
                continue
            seen.add(name)
            check_rule(rule)(func, name, config.value(name))
