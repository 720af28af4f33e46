"""The shared machinery of the Adam family: configuration, state storage, the transformation.

Everything in adamjax that moves a parameter -- the optax-style transformations,
the ``init/update/get_params`` triples, the simulator -- runs
:func:`adamjax.adam_step` on each array, which runs the variant's stages
(:mod:`adamjax._stages`). A classic variant (AMSGrad, Adamax, NAdam, the
centered "belief" moment, the p-th power moment, bias correction off) is a
switch in :class:`AdamConfig` whose stages its own file registers
(``adamjax/_amsgrad.py``, ``_adamax.py``, ...); a newer member (RAdam, ADOPT,
AdEMAMix, Adam-mini, ...) brings its stages and state layout as a
:class:`Member`, from its own file (``adamjax/_radam.py``, ...). This module reads the stored moments,
hands them to the step maths and writes them back (:func:`update_state`).
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _checks, _numerics, _quantize, _stages

ScaleByAdamState = optax.ScaleByAdamState
"""optax's own ``ScaleByAdamState(count, mu, nu)``: the state of Adam, NAdam and Adamax."""

ScaleByAmsgradState = optax.ScaleByAmsgradState
"""optax's own ``ScaleByAmsgradState(count, mu, nu, nu_max)``: the state of AMSGrad."""

ScaleByBeliefState = optax.ScaleByBeliefState
"""optax's own ``ScaleByBeliefState(count, mu, nu)``: the state of AdaBelief (centered moment)."""


class Layout(NamedTuple):
    """How a variant's state is stored: its class, which fields hold which moment.

    Attributes:
      state_class: the state's class (optax's own where optax has the optimizer).
      arrays: ``(state field, moment)`` pairs; the moment is the step's name
        for it (``"mu"``, ``"nu"``, ``"nu_max"``, ``"m2"``); ``"mu"`` must be
        one (its arrays have the parameters' shapes).
      scalars: per-update scalar fields besides ``count`` (``count_m2``, ``mu_product``).
    """

    state_class: type
    arrays: tuple[tuple[str, str], ...] = (("mu", "mu"), ("nu", "nu"))
    scalars: tuple[str, ...] = ()

    def field_of(self, moment: str) -> str:
        """The state field that stores ``moment``."""
        return next(field for field, name in self.arrays if name == moment)


class Member(NamedTuple):
    """A family member beyond the classic switches: its stages, state layout and own hyperparameters.

    Attributes:
      name: the member (``"radam"``).
      stages: its stages, in order (:mod:`adamjax._stages`).
      layout: how its state is stored.
      hyper: ``(name, value)`` pairs of its own hyperparameters (``threshold``, ``b3``, ...).
      prepare: ``prepare(state, count, config) -> (shared, scalars)``, called once per
        update before the arrays: values every array's step reads, and the new
        scalar fields of the state.
      init_scalars: ``init_scalars() -> {field: value}``, the scalar fields of a fresh state.
      nu_shape: ``nu_shape(param) -> shape`` of the second moment (Adam-mini's blocks);
        None: the parameter's shape.
    """

    name: str
    stages: tuple
    layout: Layout
    hyper: tuple[tuple[str, Any], ...] = ()
    prepare: Callable | None = None
    init_scalars: Callable | None = None
    nu_shape: Callable | None = None


CORE_STATE_TYPES: tuple[type, ...] = (ScaleByAdamState, ScaleByAmsgradState, ScaleByBeliefState)
"""The classes a core state can have; every adamjax consumer finds the core's state by these types.

A member file whose state has a class of its own registers it with :func:`register_state`.
"""

_STATE_LAYOUTS: dict[type, Layout] = {}


def register_state(layout: Layout) -> None:
    """Makes a member's state class known to every consumer of core states (stats, fused path, tests)."""
    global CORE_STATE_TYPES
    _STATE_LAYOUTS[layout.state_class] = layout
    if layout.state_class not in CORE_STATE_TYPES:
        CORE_STATE_TYPES = (*CORE_STATE_TYPES, layout.state_class)


def is_core_state(node: Any) -> bool:
    """Whether ``node`` is the state of the Adam core (one of :data:`CORE_STATE_TYPES`)."""
    return isinstance(node, CORE_STATE_TYPES)


def core_states(state: Any) -> list[Any]:
    """Every core state inside an optimizer state (chains, wrappers, injected states), in tree order."""
    return [node for node in jax.tree.leaves(state, is_leaf=is_core_state) if is_core_state(node)]


def state_moments(node: Any) -> dict[str, Any] | None:
    """A core state's ``count`` and moments by the step's names (``mu``, ``nu``, ...), or None."""
    layout = _STATE_LAYOUTS.get(type(node))
    if layout is None:
        return None
    return {"count": node.count, **{moment: getattr(node, field) for field, moment in layout.arrays}}


class AdamConfig(NamedTuple):
    """The hyperparameters and switches of one Adam variant (already validated).

    Numeric fields are Python numbers or JAX scalars (tracers included), so a
    config can be built inside ``jit`` or ``vmap``. See :func:`scale_by_adam`
    for what each field means. ``member`` (None for the classic switches)
    carries a newer member's stages; ``post`` holds post-processing stages
    (cautious masking, a decoupled decay, update clipping) run after the
    direction. ``decoupled_weight_decay`` and ``decay_mask`` are that decay
    (:func:`adamjax._stages.decoupled_decay`) when it lives inside the core so
    that a later stage scales it; the ``...w`` aliases keep theirs in
    optax's ``add_decayed_weights`` instead.
    """

    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    eps_root: Any = 0.0
    power: Any = 2.0
    centered: bool = False
    amsgrad: bool = False
    nesterov: bool = False
    bias_correction_mu: bool = True
    bias_correction_nu: bool = True
    mu_dtype: Any = None
    nu_dtype: Any = None
    weight_decay: Any = None  # coupled L2 (PyTorch's Adam ``weight_decay``): None is off
    member: Member | None = None
    post: tuple = ()
    decoupled_weight_decay: Any = None  # a decoupled decay inside the core (StableAdamW): None is off
    decay_mask: Any = None  # which arrays that decay reaches (optax.masked's mask): None is all
    state_bits: int | None = None  # 8 or 4: moments stored blockwise-quantized (adamjax._quantize)
    block_size: int | None = None  # elements per quantization block (set when state_bits is)

    @property
    def bias_correction(self) -> bool:
        """Whether both moments are bias-corrected (``scale_by_adam(bias_correction=...)``)."""
        return self.bias_correction_mu and self.bias_correction_nu

    @property
    def stages(self) -> tuple:
        """The stages a step runs, in order: the member's, or the switches' (:func:`adamjax._stages.classic_stages`)."""
        body = _stages.classic_stages(self) if self.member is None else self.member.stages
        return tuple(body) + tuple(self.post)

    @property
    def layout(self) -> Layout:
        """How the state is stored (optax's class for the variant; a member's own)."""
        if self.member is not None:
            return self.member.layout
        if self.amsgrad:
            return _AMSGRAD_LAYOUT
        return _BELIEF_LAYOUT if self.centered else _ADAM_LAYOUT

    @property
    def state_class(self) -> type:
        """The state's class (optax's for the variant, AMSGrad's when the maximum is kept)."""
        return self.layout.state_class

    def value(self, name: str) -> Any:
        """A hyperparameter by name: a field, or one of the member's own."""
        if name in self._fields:
            return getattr(self, name)
        if self.member is not None:
            for key, value in self.member.hyper:
                if key == name:
                    return value
        raise KeyError(
            f"the {self.member.name if self.member else 'Adam'} configuration has no hyperparameter {name!r}"
        )


_ADAM_LAYOUT = Layout(ScaleByAdamState)
_BELIEF_LAYOUT = Layout(ScaleByBeliefState)
_AMSGRAD_LAYOUT = Layout(ScaleByAmsgradState, (("mu", "mu"), ("nu", "nu"), ("nu_max", "nu_max")))
for _layout in (_ADAM_LAYOUT, _BELIEF_LAYOUT, _AMSGRAD_LAYOUT):
    register_state(_layout)


def make_config(
    func: str,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    *,
    power: Any = 2.0,
    centered: bool = False,
    amsgrad: bool = False,
    nesterov: bool = False,
    bias_correction: bool = True,
    bias_correction_mu: bool | None = None,
    bias_correction_nu: bool | None = None,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    weight_decay: Any = None,
    member: Member | None = None,
    cautious: bool = False,
    post: tuple = (),
    decoupled_weight_decay: Any = None,
    decay_mask: Any = None,
    state_bits: Any = None,
    block_size: Any = None,
) -> AdamConfig:
    """Validates hyperparameters for the public call ``func`` and builds a config.

    ``power=None`` means 2 (Adam). ``bias_correction`` switches both
    corrections; ``bias_correction_mu`` / ``bias_correction_nu`` (optax's
    AMSGrad keywords), when given, switch one each. ``weight_decay`` is the
    coupled L2 term (None: off), a number ``>= 0``, a JAX scalar or a schedule.
    ``cautious`` appends the cautious mask to ``post``; a
    ``decoupled_weight_decay`` (a number ``>= 0``, a JAX scalar or a schedule)
    appends the decoupled decay after it, before the other ``post`` stages, and
    ``decay_mask`` (optax's mask: booleans shaped like the parameters or a
    prefix of them, or a callable returning them) says which arrays it
    reaches. ``state_bits`` (None, 8 or 4) stores the moments of arrays with at
    least :data:`adamjax._quantize.MIN_QUANTIZED_SIZE` elements blockwise
    quantized, in blocks of ``block_size``. The numbers are checked
    by the stages that use them (:func:`adamjax._stages.validate`), so a
    member's own hyperparameters are checked the same way.
    """
    if power is None:
        power = 2.0
    # The switches and the power decide which stages run, so they are checked first.
    _checks.check_real(func, "power", power, low=0.0, low_closed=False, allow_inf=True)
    for name, flag in (
        ("centered", centered),
        ("amsgrad", amsgrad),
        ("nesterov", nesterov),
        ("bias_correction", bias_correction),
        ("cautious", cautious),
    ):
        _checks.check_flag(func, name, flag)
    for name, flag in (("bias_correction_mu", bias_correction_mu), ("bias_correction_nu", bias_correction_nu)):
        if flag is not None:
            _checks.check_flag(func, name, flag)
    # b1 and b2 are read by every variant (bias corrections, the simulator's settings).
    _checks.check_decay(func, "b1", b1)
    _checks.check_decay(func, "b2", b2)
    _checks.check_nonnegative(func, "eps", eps)
    _checks.check_nonnegative(func, "eps_root", eps_root)
    if weight_decay is not None:
        _checks.check_schedule_or_nonnegative(func, "weight_decay", weight_decay)
    in_core_decay: tuple = ()
    if decoupled_weight_decay is not None:
        _checks.check_schedule_or_nonnegative(func, "weight_decay", decoupled_weight_decay)
        _checks.check_mask(func, decay_mask)
        in_core_decay = (_stages.decoupled_decay,)
    elif decay_mask is not None:
        raise ValueError(f"`{func}(mask=...)` needs a decoupled `weight_decay`.")
    block_size = check_state_bits(func, state_bits, block_size, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    config = AdamConfig(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        power=power,
        centered=centered,
        amsgrad=amsgrad,
        nesterov=nesterov,
        bias_correction_mu=bias_correction if bias_correction_mu is None else bias_correction_mu,
        bias_correction_nu=bias_correction if bias_correction_nu is None else bias_correction_nu,
        mu_dtype=_checks.canonical_float_dtype(func, "mu_dtype", mu_dtype, allow_complex=True),
        nu_dtype=_checks.canonical_float_dtype(func, "nu_dtype", nu_dtype, allow_complex=True),
        weight_decay=_checks.checked_schedule(func, "weight_decay", weight_decay),
        member=member,
        post=((_stages.cautious,) if cautious else ()) + in_core_decay + tuple(post),
        decoupled_weight_decay=_checks.checked_schedule(func, "weight_decay", decoupled_weight_decay),
        decay_mask=decay_mask,
        state_bits=None if state_bits is None else int(state_bits),
        block_size=block_size,
    )
    _stages.validate(func, config)
    return config


def check_state_bits(
    func: str, state_bits: Any, block_size: Any, *, mu_dtype: Any = None, nu_dtype: Any = None
) -> int | None:
    """Validates ``state_bits`` and ``block_size``; returns the block size to use (None without quantization).

    Raises:
      ValueError: ``state_bits`` is not None, 8 or 4; ``block_size`` is not a
        positive integer, or is given without ``state_bits``; a moment dtype is
        given as well (quantized moments have none).
    """
    if state_bits is None:
        if block_size is not None:
            raise ValueError(
                f"`{func}(block_size=...)` sets the quantization block and needs `state_bits` (8 or 4); "
                f"got block_size={block_size!r} with state_bits=None."
            )
        return None
    for name, value in (("state_bits", state_bits), ("block_size", block_size)):
        if isinstance(value, jax.Array) or _checks.is_traced(value):
            raise TypeError(
                f"`{func}({name}=...)` decides the state's layout and must be a Python int, not an array; "
                f"with optax.inject_hyperparams pass static_args=('state_bits', 'block_size')."
            )
    if isinstance(state_bits, bool) or not isinstance(state_bits, numbers.Integral) or state_bits not in (8, 4):
        raise ValueError(f"`{func}(state_bits=...)` must be None, 8 or 4; got {state_bits!r}.")
    for name, dtype in (("mu_dtype", mu_dtype), ("nu_dtype", nu_dtype)):
        if dtype is not None:
            raise ValueError(
                f"`{func}(state_bits={state_bits})` stores the moments as {state_bits}-bit codes with float32 "
                f"scales; `{name}` cannot be given as well (got {dtype!r}). Drop one of the two."
            )
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or block_size < 1
    ):
        raise ValueError(f"`{func}(block_size=...)` must be a positive integer or None; got {block_size!r}.")
    if state_bits == 4 and block_size is not None and block_size % 2:
        raise ValueError(f"`{func}(state_bits=4, block_size=...)` must be even (two codes a byte); got {block_size!r}.")
    return _quantize.DEFAULT_BLOCK_SIZE[int(state_bits)] if block_size is None else int(block_size)


def is_quantized(x: Any) -> bool:
    """Whether ``x`` is a blockwise-quantized moment (:class:`adamjax._quantize.QuantizedArray`)."""
    return isinstance(x, _quantize.QuantizedArray)


def read_moment(x: Any) -> Any:
    """A stored moment as an array: quantized ones dequantized to float32, others as they are."""
    return _quantize.dequantize(x) if is_quantized(x) else x


def write_moment(new: jax.Array, old: Any) -> Any:
    """``new`` stored like ``old``: requantized with ``old``'s codebook and block, or cast to its dtype."""
    if is_quantized(old):
        return _quantize.quantize_like(new.astype(jnp.float32), old)
    return new.astype(old.dtype)


LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))
"""Parameter dtypes whose moments are kept in float32 unless a dtype is asked for."""


def moment_dtype(param: Any, dtype: Any = None) -> jnp.dtype:
    r"""The dtype a moment of ``param`` is stored in.

    ``dtype`` when given; otherwise the parameter's own (as optax), except for
    float16 and bfloat16 parameters, whose moments are float32. A 16-bit
    second moment cannot follow its own average: with an 8-bit mantissa the
    increment :math:`(1-\beta_2) g^2` falls below half a unit in the last place
    of :math:`v` once :math:`v \gtrsim 2^{8} (1-\beta_2) g^2`, so :math:`v`
    stalls (at 0.25 for a constant gradient of 1 and :math:`\beta_2 = 0.999`,
    making every step 1.9 times the learning rate); float16 also loses
    :math:`g^2` below about 6e-8.

    Examples:
      >>> import jax.numpy as jnp
      >>> from adamjax._core import moment_dtype
      >>> moment_dtype(jnp.zeros(2, jnp.bfloat16)).name, moment_dtype(jnp.zeros(2, jnp.bfloat16), jnp.bfloat16).name
      ('float32', 'bfloat16')
    """
    if dtype is not None:
        return jnp.dtype(dtype)
    own = jnp.dtype(jnp.result_type(param))
    return jnp.dtype(jnp.float32) if own in LOW_PRECISION else own


def init_state(params: optax.Params, config: AdamConfig) -> Any:
    """Zero moments shaped like ``params``, in the variant's state class (optax's where optax has it).

    Moments take the parameters' dtype unless ``mu_dtype`` / ``nu_dtype`` say
    otherwise, as in optax (so the second moment of a complex parameter is
    stored complex, with a zero imaginary part), except that float16 and
    bfloat16 parameters get float32 moments (:func:`moment_dtype`). AMSGrad's ``nu_max`` has the
    dtype of ``nu``; AdEMAMix's slow ``m2`` that of ``mu``. A member may store
    a smaller second moment (Adam-mini: one value per block). As in optax any
    float or complex ``mu_dtype`` is accepted here; a real ``mu_dtype`` meeting
    complex gradients is refused at ``update``, where it would drop their
    imaginary part.

    With ``state_bits`` the moments of arrays of at least
    :data:`adamjax._quantize.MIN_QUANTIZED_SIZE` elements are
    :class:`adamjax._quantize.QuantizedArray` zeros (the signed codebook for
    first moments, the unsigned one for second moments); smaller arrays, and a
    member's smaller second moment, keep the rule above.
    """
    _checks.check_param_dtypes("Adam", params, allow_complex=True)
    member = config.member
    nu_shape = None if member is None else member.nu_shape
    bits = config.state_bits
    if bits is not None and any(jnp.iscomplexobj(p) for p in jax.tree.leaves(params)):
        raise TypeError(
            f"`state_bits={bits}`: quantized moments are real; complex parameters need `state_bits=None` "
            "(or optimise their real and imaginary parts as separate real arrays)."
        )

    def zeros(moment: str) -> Any:
        signed = moment not in ("nu", "nu_max")
        dtype = config.mu_dtype if signed else config.nu_dtype
        if not signed and nu_shape is not None:  # a member's own, smaller second moment
            shape_of = nu_shape
            return jax.tree.map(lambda p: jnp.zeros(shape_of(p), moment_dtype(p, dtype)), params)

        def leaf(p: Any) -> Any:
            if bits is not None and _quantize.should_quantize(jnp.shape(p)):
                return _quantize.zeros(jnp.shape(p), bits=bits, signed=signed, block_size=config.block_size)
            return jnp.zeros_like(p, dtype=moment_dtype(p, dtype))  # keeps the parameters' sharding, as optax's

        return jax.tree.map(leaf, params)

    layout = config.layout
    made: dict[str, Any] = {}
    fields = {}
    for field, moment in layout.arrays:
        # nu_max starts as nu (the same zeros), as optax's AMSGrad state does.
        fields[field] = made.setdefault("nu" if moment == "nu_max" else moment, zeros(moment))
    scalars = {} if member is None or member.init_scalars is None else member.init_scalars()
    return layout.state_class(count=jnp.zeros([], jnp.int32), **scalars, **fields)


def check_same_structure(
    func: str, updates: Any, reference: Any, *, allow_complex: bool | None = None
) -> list[jax.Array]:
    """Flattens ``updates`` after checking that it matches the state's tree.

    Raises:
      TypeError: the tree structures differ (both are shown), or a gradient is
        not a floating-point array (integer, boolean, or complex where the
        state is real).
      ValueError: a leaf's shape differs from the state's.
    """
    treedef = jax.tree.structure(updates)
    expected = jax.tree.structure(reference)
    if treedef != expected:
        raise TypeError(
            f"{func}: the gradient tree does not match the tree the optimizer state was "
            f"initialised with.\n  gradients: {treedef}\n  state:     {expected}"
        )
    leaves = jax.tree.leaves(updates)
    for (path, ref), leaf in zip(jax.tree_util.tree_leaves_with_path(reference), leaves, strict=True):
        complex_ok = jnp.iscomplexobj(ref) if allow_complex is None else allow_complex
        _checks.check_gradient_dtype(func, path, leaf, allow_complex=complex_ok)
        if jnp.shape(leaf) != jnp.shape(ref):
            raise ValueError(
                f"{func}: the gradient at {jax.tree_util.keystr(path) or 'the root'} has shape "
                f"{jnp.shape(leaf)} but the optimizer state there has shape {jnp.shape(ref)}."
            )
    return leaves


_RECORDER: contextvars.ContextVar[list | None] = contextvars.ContextVar("adamjax_step_recorder", default=None)


@contextlib.contextmanager
def record_steps() -> Iterator[list]:
    """Collects the :class:`AdamStep` internals of every core update traced inside.

    While the context is open, each call of an adamjax core update (alone or
    nested in ``optax.chain``, ``masked``, ...) appends a pytree of
    :class:`AdamStep` (shaped like the gradients) to the yielded list, in call
    order. The arrays are whatever the caller is tracing (for instance a
    ``lax.scan`` body), so the simulator can return them as outputs. A call that
    is not re-traced (a cached ``jit``) records nothing.
    """
    recorded: list = []
    token = _RECORDER.set(recorded)
    try:
        yield recorded
    finally:
        _RECORDER.reset(token)


def decay_param_leaves(func: str, params: Any, treedef: Any) -> list[Any]:
    """The parameter leaves a weight decay multiplies, after checking they are given and fit the state's tree."""
    if params is None:
        raise ValueError(f"`{func}(weight_decay=...)` needs the parameters: call `update(grads, state, params)`.")
    if jax.tree.structure(params) != treedef:
        raise TypeError(
            f"{func}: the parameter tree does not match the tree the optimizer state was initialised with.\n"
            f"  parameters: {jax.tree.structure(params)}\n  state:      {treedef}"
        )
    return treedef.flatten_up_to(params)


def add_coupled_decay(func: str, grads: list[jax.Array], params: Any, treedef: Any, rate: Any) -> list[jax.Array]:
    r"""PyTorch's coupled L2 term :math:`g \leftarrow g + \lambda \theta`, before the moments see ``g``.

    The product is taken in float32 or wider and rounded once to the
    gradient's dtype, so a float32 decay keeps bfloat16 gradients bfloat16.
    """
    param_leaves = decay_param_leaves(func, params, treedef)
    for g, p in zip(grads, param_leaves, strict=True):
        if jnp.shape(g) != jnp.shape(p):
            raise ValueError(f"{func}: a parameter of shape {jnp.shape(p)} meets a gradient of shape {jnp.shape(g)}.")
    return [
        g + _numerics.scale_leaf(rate, jnp.asarray(p, jnp.result_type(g)))
        for g, p in zip(grads, param_leaves, strict=True)
    ]


def coupled_decay_value(config: AdamConfig, count: jax.Array) -> Any:
    """The coupled decay for the step after ``count`` steps, or None when the term is off or a literal 0."""
    decay = config.weight_decay
    if decay is None:
        return None
    if callable(decay) and not _checks.is_traced(decay):
        return decay(count)
    if not (_checks.is_traced(decay) or isinstance(decay, jax.Array) or callable(decay)) and float(decay) == 0.0:
        return None
    return decay


def decoupled_decay_value(config: AdamConfig, count: jax.Array) -> Any:
    """The in-core decoupled decay for the step after ``count`` steps, or None when off or a literal 0.

    A schedule is called with ``count``, the steps already taken, as
    ``optax.add_decayed_weights`` calls it with its own count (the same number
    in an alias's chain).
    """
    return coupled_decay_value(config._replace(weight_decay=config.decoupled_weight_decay), count)


def decay_masks(func: str, mask: Any, tree: Any, treedef: Any) -> list[bool]:
    """Per array of ``tree``, whether the decay reaches it: optax's mask (a prefix tree or a callable of ``tree``).

    Raises:
      TypeError: the mask does not have the structure of ``tree`` or a prefix
        of it (both structures are shown), or a leaf is not a boolean.
    """
    mask_tree = mask(tree) if callable(mask) else mask
    try:
        full = jax.tree.map(lambda flag, sub: jax.tree.map(lambda _: flag, sub), mask_tree, tree)
        flags = treedef.flatten_up_to(full)
    except (ValueError, TypeError):
        raise TypeError(
            f"`{func}(mask=...)` must have the structure of the parameters (or a prefix of it).\n"
            f"  mask:       {jax.tree.structure(mask_tree)}\n  parameters: {jax.tree.structure(tree)}"
        ) from None
    if callable(mask):
        _checks.check_mask(func, mask_tree)
    return [bool(flag) for flag in flags]


def decay_params(func: str, config: AdamConfig, updates: Any, params: Any, treedef: Any) -> list[jax.Array | None]:
    """The parameter leaves the in-core decoupled decay multiplies (None for arrays the mask leaves out)."""
    leaves = decay_param_leaves(func, params, treedef)
    # optax.masked calls a callable mask with the updates it masks (here: the gradients).
    flags = (
        [True] * len(leaves) if config.decay_mask is None else decay_masks(func, config.decay_mask, updates, treedef)
    )
    return [jnp.asarray(p) if flag else None for p, flag in zip(leaves, flags, strict=True)]


def update_state(
    updates: optax.Updates,
    state: Any,
    config: AdamConfig,
    func: str = "scale_by_adam",
    params: optax.Params | None = None,
) -> tuple[optax.Updates, Any]:
    r"""Applies :func:`adamjax.adam_step` to every leaf; updates keep the gradients' dtype.

    Three parts: the stored moments are read (one list per state field), the
    step maths runs on each array in the compute dtype, and the new moments
    are written back in the dtypes they are stored in. With a coupled
    ``weight_decay`` the gradients first get :math:`\lambda_t \theta` added
    (:func:`add_coupled_decay`), where a schedule is called with the state's
    count before this step. A decoupled decay inside the core
    (``config.decoupled_weight_decay``) reaches the arrays its mask selects,
    through :func:`adamjax._stages.decoupled_decay`.
    """
    layout = config.layout
    first = getattr(state, layout.field_of("mu"))
    second = getattr(state, layout.field_of("nu"))
    # Quantized moments are leaves here: one per parameter array, like the gradients.
    treedef = jax.tree.structure(first, is_leaf=is_quantized)
    # A complex gradient fits a complex parameter, whose ``nu`` is complex unless
    # ``nu_dtype`` says otherwise; a real ``mu`` meeting it is refused below.
    kinds = treedef.unflatten(
        [
            jax.ShapeDtypeStruct(jnp.shape(m) if not is_quantized(m) else m.shape, m.dtype)
            if jnp.iscomplexobj(m) or not jnp.iscomplexobj(v)
            else jax.ShapeDtypeStruct(jnp.shape(m), v.dtype)
            for m, v in zip(treedef.flatten_up_to(first), treedef.flatten_up_to(second), strict=True)
        ]
    )
    grads = check_same_structure(func, updates, kinds)
    decay = coupled_decay_value(config, state.count)
    if decay is not None:
        grads = add_coupled_decay(func, grads, params, treedef, decay)
    in_core_decay = decoupled_decay_value(config, state.count)
    decayed: list = [None] * len(grads)
    if in_core_decay is not None:
        decayed = decay_params(func, config, updates, params, treedef)

    # Read: the stored moments, by the step's names for them.
    stored = {moment: treedef.flatten_up_to(getattr(state, field)) for field, moment in layout.arrays}
    count = jnp.asarray(optax.safe_increment(state.count))
    shared: dict = {"prev_count": state.count, "decoupled_decay": in_core_decay}
    scalars: dict = {}
    if config.member is not None and config.member.prepare is not None:
        prepared, scalars = config.member.prepare(state, count, config)
        shared.update(prepared)
    memo: dict = {}  # bias corrections, computed once per dtype for all arrays

    # Step: the maths, one array at a time, in the compute dtype.
    new_updates, steps = [], []
    written: dict[str, list] = {moment: [] for moment in stored}
    for index, grad in enumerate(grads):
        grad = jnp.asarray(grad)
        mu = read_moment(stored["mu"][index])
        if jnp.iscomplexobj(grad) and not jnp.iscomplexobj(mu):
            raise TypeError(
                f"`{func}(mu_dtype=...)`: the first moment is stored as {jnp.dtype(mu.dtype).name} (the parameters' "
                f"dtype or `mu_dtype`) and cannot hold complex gradients ({jnp.dtype(grad.dtype).name}): optimise "
                "complex parameters, with a complex `mu_dtype` such as jnp.complex64 or None."
            )
        others = {m: read_moment(stored[m][index]) for m in stored if m not in ("mu", "nu", "nu_max")}
        step = _stages.adam_step(
            grad,
            mu,
            read_moment(stored["nu"][index]),
            read_moment(stored["nu_max"][index]) if "nu_max" in stored else None,
            count,
            config,
            moments=others,
            memo=memo,
            shared=shared,
            param=decayed[index],
        )
        steps.append(step)
        update = step.update if jnp.iscomplexobj(grad) else jnp.real(step.update)
        new_updates.append(update.astype(grad.dtype))
        computed = {"mu": step.mu, "nu": step.nu, "nu_max": step.nu_max, **(step.moments or {})}
        for moment, column in written.items():
            column.append(computed[moment])

    # Write: each moment back in the dtype it is stored in.
    unflatten = treedef.unflatten
    recorder = _RECORDER.get()
    if recorder is not None:
        recorder.append(unflatten(steps))
    fields = {
        field: unflatten([write_moment(new, old) for new, old in zip(written[moment], stored[moment], strict=True)])
        for field, moment in layout.arrays
    }
    return unflatten(new_updates), layout.state_class(count=count, **scalars, **fields)


def transformation(config: AdamConfig, func: str = "scale_by_adam") -> optax.GradientTransformation:
    """The optax transformation that runs ``config``'s variant of Adam."""

    def init_fn(params: optax.Params) -> Any:
        if config.decay_mask is not None:  # a mask that does not fit fails here, as optax.masked's init does
            decay_masks(func, config.decay_mask, params, jax.tree.structure(params))
        return init_state(params, config)

    def update_fn(updates: optax.Updates, state: Any, params: optax.Params | None = None) -> tuple[optax.Updates, Any]:
        return update_state(updates, state, config, func, params)

    return optax.GradientTransformation(init_fn, update_fn)
