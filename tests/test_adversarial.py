"""Adversarial inputs: every bad input fails clearly, valid edge inputs work, bad steps corrupt nothing.

One table of bad inputs for every public constructor and function -- the
transformations, the triples, the schedules, the simulator and the command
line. Each row must raise a ``ValueError`` or ``TypeError`` whose message names
the call and the argument and says what is allowed; never an error from deep
inside JAX, never a silent NaN. ``tests/test_validation.py`` already tables the
transformations' hyperparameters as Python values (ranges, NaN, infinity,
strings, booleans, tracers); the rows here add NumPy and JAX scalars, complex
numbers, sequences, the other APIs, and what arrives at ``update``: schedules
that return the wrong thing, gradients of the wrong dtype or shape, bad step
indices.

Then the inputs that are odd but valid -- empty trees, zero-size and scalar
arrays -- checked against the NumPy float64 reference, and the documented way
to survive non-finite gradients (``optax.apply_if_finite``) for both APIs.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import re

import family_reference as fam
import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import optax.contrib
import pytest
from helpers import CORE_STATES

import adamjax
from adamjax import optimizers
from adamjax._cli import main

NAN, INF = float("nan"), float("inf")


def message(call: str, rest: str) -> str:
    """The start of a construction-time message: "`adam(b1=...)` must ..."."""
    return re.escape(f"`{call}=...)` must {rest}")


# --- hyperparameters of the transformation API: kinds of values test_validation.py does not table ----------

TRANSFORMATIONS = {
    "scale_by_adam": adamjax.scale_by_adam,
    "adam": adamjax.adam,
    "adamw": adamjax.adamw,
    "amsgrad": adamjax.amsgrad,
    "adamax": adamjax.adamax,
    "nadam": adamjax.nadam,
    "adabelief": adamjax.adabelief,
    "scale_by_learning_rate": adamjax.scale_by_learning_rate,
    # The newer members (nadam's momentum_decay is in the row above).
    "scale_by_radam": adamjax.scale_by_radam,
    "radam": adamjax.radam,
    "scale_by_adopt": adamjax.scale_by_adopt,
    "adopt": adamjax.adopt,
    "scale_by_ademamix": adamjax.scale_by_ademamix,
    "ademamix": adamjax.ademamix,
    "lamb": adamjax.lamb,
    "stable_adamw": adamjax.stable_adamw,
    "adam_mini": adamjax.adam_mini,
    "nadamw": adamjax.nadamw,
    "adamaxw": adamjax.adamaxw,
}
NUMERIC = ("learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay", "power", "b3", "alpha", "momentum_decay")


def transformation_cases():
    for func_name, make in TRANSFORMATIONS.items():
        names = inspect.signature(make).parameters
        for arg in NUMERIC:
            if arg not in names:
                continue
            rows = [
                (np.float32(NAN), ValueError, r"be in .*; got nan\."),
                (jnp.asarray(-1.0, jnp.float32), ValueError, r"be in .*; got Array\(-1\., dtype=float32\)"),
                (1j, TypeError, re.escape("be a real number; got complex 1j.")),
                (jnp.asarray(0.5, jnp.complex64), TypeError, re.escape("be a real number; got dtype complex64.")),
                ([0.5], TypeError, re.escape("be a real number; got list [0.5].")),
                (np.array([0.1, 0.2]), ValueError, re.escape("be a scalar; got an array of shape (2,).")),
            ]
            if arg != "power":  # power = inf is Adamax
                rows.append((jnp.asarray(INF, jnp.float32), ValueError, r"be finite and in .*; got inf\."))
            for value, error, rest in rows:
                yield pytest.param(func_name, arg, value, error, rest, id=f"{func_name}-{arg}={value!r}")


@pytest.mark.parametrize("func_name, arg, value, error, rest", list(transformation_cases()))
def test_transformation_hyperparameter_is_rejected_at_construction(func_name, arg, value, error, rest):
    kwargs = {arg: value}
    if arg != "learning_rate" and "learning_rate" in inspect.signature(TRANSFORMATIONS[func_name]).parameters:
        kwargs["learning_rate"] = 1e-3
    with pytest.raises(error, match=re.escape(f"`{func_name}({arg}=...)` must ") + rest):
        TRANSFORMATIONS[func_name](**kwargs)


@pytest.mark.parametrize(
    ("mask", "rest"),
    [
        (3, "the leaf at the root is int 3."),
        ("w", "the leaf at the root is str 'w'."),
        ({"w": 1}, "the leaf at ['w'] is int 1."),
        ({"w": jnp.ones(3, jnp.bool_)}, "the leaf at ['w'] is ArrayImpl"),
    ],
)
def test_adamw_mask_of_the_wrong_type_is_rejected_at_construction(mask, rest):
    expected = "be None, a pytree of booleans shaped like the parameters, or a callable returning one; " + rest
    with pytest.raises(TypeError, match=message("adamw(mask", expected)):
        adamjax.adamw(1e-3, mask=mask)


MASKED = ["adamw", "nadamw", "adamaxw", "ademamix", "lamb", "stable_adamw", "adam_mini"]


@pytest.mark.parametrize("func_name", MASKED)
@pytest.mark.parametrize("mask", [{"v": True}, {"w": True, "b": False}, lambda params: [True]])
def test_mask_that_does_not_fit_the_parameters_shows_both_structures(func_name, mask):
    tx = getattr(adamjax, func_name)(1e-3, mask=mask)
    expected = rf"(?s)`{func_name}\(mask=\.\.\.\)` must have the structure.*mask: .*parameters: "
    with pytest.raises(TypeError, match=expected):
        tx.init({"w": jnp.zeros(3, jnp.float32)})


@pytest.mark.parametrize("func_name", MASKED)
def test_mask_of_the_wrong_type_is_rejected_at_construction_by_every_masked_alias(func_name):
    with pytest.raises(TypeError, match=message(f"{func_name}(mask", "be None, a pytree of booleans")):
        getattr(adamjax, func_name)(1e-3, mask={"w": 1})


def test_adamw_mask_that_fits_still_masks():
    params = {"w": jnp.ones(2, jnp.float64), "b": jnp.ones(2, jnp.float64)}
    grads = {"w": jnp.zeros(2, jnp.float64), "b": jnp.zeros(2, jnp.float64)}
    tx = adamjax.adamw(0.1, weight_decay=0.5, mask={"w": True, "b": np.bool_(False)})
    updates, _ = tx.update(grads, tx.init(params), params)
    # Zero gradients: only the decay moves w, by lr * wd * w; b is not decayed.
    np.testing.assert_allclose(updates["w"], -0.05, rtol=1e-12)
    np.testing.assert_array_equal(updates["b"], 0.0)


# --- hyperparameters of the triple API and the schedules ----------------------------------------------------

TRIPLES = {
    "sgd": (optimizers.sgd, ("step_size",), ()),
    "momentum": (optimizers.momentum, ("step_size", "mass"), (0.9,)),
    "nesterov": (optimizers.nesterov, ("step_size", "mass"), (0.9,)),
    "adagrad": (optimizers.adagrad, ("step_size", "momentum"), ()),
    "rmsprop": (optimizers.rmsprop, ("step_size", "gamma", "eps"), ()),
    "rmsprop_momentum": (optimizers.rmsprop_momentum, ("step_size", "gamma", "eps", "momentum"), ()),
    "sm3": (optimizers.sm3, ("step_size", "momentum"), ()),
    "adam": (optimizers.adam, ("step_size", "b1", "b2", "eps"), ()),
    "adamax": (optimizers.adamax, ("step_size", "b1", "b2", "eps"), ()),
}
DECAYS = ("mass", "momentum", "gamma", "b1", "b2")
STEP_SIZE_TYPE = "be a number >= 0 or a callable schedule"
BAD_TRIPLE_VALUES = {
    "step_size": [
        (-0.1, ValueError, re.escape("be in [0, inf); got -0.1.")),
        (NAN, ValueError, re.escape("be in [0, inf); got nan.")),
        (INF, ValueError, re.escape("be finite and in [0, inf); got inf.")),
        (np.float64(NAN), ValueError, re.escape("be in [0, inf); got nan.")),
        ("fast", TypeError, re.escape(STEP_SIZE_TYPE)),
        (None, TypeError, re.escape(STEP_SIZE_TYPE)),
        (1j, TypeError, re.escape("be a real number; got complex 1j. A callable schedule")),
        (True, TypeError, re.escape("be a real number; got the boolean True. A callable schedule")),
        (jnp.ones(2, jnp.float32), TypeError, re.escape("be a scalar or a callable schedule")),
    ],
    "decay": [
        (1.0, ValueError, re.escape("be in [0, 1); got 1.0.")),
        (-0.5, ValueError, re.escape("be in [0, 1); got -0.5.")),
        (NAN, ValueError, re.escape("be in [0, 1); got nan.")),
        (INF, ValueError, re.escape("be finite and in [0, 1); got inf.")),
        ("0.9", TypeError, re.escape("be a real number; got str '0.9'.")),
        (True, TypeError, re.escape("be a real number; got the boolean True.")),
        (0.9j, TypeError, re.escape("be a real number; got complex 0.9j.")),
    ],
    "eps": [
        (-1e-8, ValueError, re.escape("be in [0, inf); got -1e-08.")),
        (NAN, ValueError, re.escape("be in [0, inf); got nan.")),
        (INF, ValueError, re.escape("be finite and in [0, inf); got inf.")),
        ("1e-8", TypeError, re.escape("be a real number; got str '1e-8'.")),
    ],
}


def triple_cases():
    for name, (_make, args, _) in TRIPLES.items():
        for arg in args:
            kind = "decay" if arg in DECAYS else arg
            for value, error, rest in BAD_TRIPLE_VALUES[kind]:
                yield pytest.param(name, arg, value, error, rest, id=f"{name}-{arg}={value!r}")


@pytest.mark.parametrize("name, arg, value, error, rest", list(triple_cases()))
def test_triple_hyperparameter_is_rejected_at_construction(name, arg, value, error, rest):
    make, _, required = TRIPLES[name]
    kwargs = {"step_size": 0.1}
    if name in ("momentum", "nesterov"):
        kwargs["mass"] = required[0]
    kwargs[arg] = value
    with pytest.raises(error, match=re.escape(f"`{name}({arg}=...)` must ") + rest):
        make(**kwargs)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: optimizers.constant("a"), TypeError, message("constant(step_size", "be a real number; got str")),
        (lambda: optimizers.constant(NAN), ValueError, message("constant(step_size", "be in (-inf, inf); got nan.")),
        (
            lambda: optimizers.exponential_decay("a", 10, 0.5),
            TypeError,
            message("exponential_decay(step_size", "be a real number; got str 'a'."),
        ),
        (
            lambda: optimizers.exponential_decay(NAN, 10, 0.5),
            ValueError,
            message("exponential_decay(step_size", "be in (-inf, inf); got nan."),
        ),
        (
            lambda: optimizers.exponential_decay(0.1, 10, INF),
            ValueError,
            message("exponential_decay(decay_rate", "be finite and in (0, inf); got inf."),
        ),
        (
            lambda: optimizers.inverse_time_decay(INF, 10, 0.5),
            ValueError,
            message("inverse_time_decay(step_size", "be finite and in (-inf, inf); got inf."),
        ),
        (
            lambda: optimizers.inverse_time_decay(0.1, NAN, 0.5),
            ValueError,
            message("inverse_time_decay(decay_steps", "be in (0, inf); got nan."),
        ),
        (
            lambda: optimizers.polynomial_decay(0.1, 10, NAN),
            ValueError,
            message("polynomial_decay(final_step_size", "be in (-inf, inf); got nan."),
        ),
        (
            lambda: optimizers.polynomial_decay(0.1, 10, 0.0, power="2"),
            TypeError,
            message("polynomial_decay(power", "be a real number; got str '2'."),
        ),
        (
            lambda: optimizers.polynomial_decay(0.1, -10, 0.0),
            ValueError,
            message("polynomial_decay(decay_steps", "be in (0, inf); got -10."),
        ),
        (
            lambda: optimizers.piecewise_constant([5], [0.1, NAN]),
            ValueError,
            message("piecewise_constant(values", "be a 1-D sequence of finite real numbers; got [0.1, nan]."),
        ),
        (
            lambda: optimizers.piecewise_constant([INF], [0.1, 0.2]),
            ValueError,
            message("piecewise_constant(boundaries", "be a 1-D sequence of finite real numbers; got [inf]."),
        ),
        (
            lambda: optimizers.piecewise_constant([5], ["a", "b"]),
            TypeError,
            message("piecewise_constant(values", "be a 1-D sequence of finite real numbers; got ['a', 'b']"),
        ),
        (
            lambda: optimizers.piecewise_constant([5], [0.1, 1j]),
            TypeError,
            message("piecewise_constant(values", "be a 1-D sequence of finite real numbers; got [0.1, 1j]"),
        ),
        (
            lambda: optimizers.make_schedule(1j),
            TypeError,
            message("make_schedule(scalar_or_schedule", "be a real number; got complex 1j."),
        ),
        (
            lambda: optimizers.make_schedule(np.float32(NAN)),
            ValueError,
            message("make_schedule(scalar_or_schedule", "be in (-inf, inf); got nan."),
        ),
        (
            lambda: optimizers.clip_grads({"a": jnp.ones(2, jnp.float32)}, -1.0),
            ValueError,
            message("clip_grads(max_norm", "be in [0, inf); got -1.0."),
        ),
        (
            lambda: optimizers.clip_grads({"a": jnp.ones(2, jnp.float32)}, NAN),
            ValueError,
            message("clip_grads(max_norm", "be in [0, inf); got nan."),
        ),
        (
            lambda: optimizers.clip_grads({"a": jnp.ones(2, jnp.float32)}, "1"),
            TypeError,
            message("clip_grads(max_norm", "be a real number; got str '1'."),
        ),
    ],
)
def test_schedule_and_helper_arguments_are_checked(build, error, match):
    with pytest.raises(error, match=match):
        build()


# --- schedules that return the wrong thing, caught at the first update (inside jit too) ---------------------

BAD_SCHEDULE_OUTPUTS = [
    (lambda count: jnp.full((3,), 1e-3, jnp.float32), ValueError, r"it returned an array of shape \(3,\)\."),
    (lambda count: jnp.full((1,), 1e-3, jnp.float32), ValueError, r"it returned an array of shape \(1,\)\."),
    (lambda count: "1e-3", TypeError, r"it returned str '1e-3'\."),
    (lambda count: None, TypeError, r"it returned NoneType None\."),
    (lambda count: jnp.asarray(1e-3, jnp.complex64), TypeError, r"it returned a value of dtype complex64\."),
    (lambda count: True, TypeError, r"it returned bool True\."),
]
SCHEDULE_IDS = ["shape3", "shape1", "str", "None", "complex", "bool"]

SCHEDULED = {
    "adam(learning_rate": lambda s: adamjax.adam(s),
    "adamw(learning_rate": lambda s: adamjax.adamw(s),
    "adamw(weight_decay": lambda s: adamjax.adamw(1e-3, weight_decay=s),
    "adam(weight_decay": lambda s: adamjax.adam(1e-3, weight_decay=s),
    "nadam(learning_rate": lambda s: adamjax.nadam(s),
    "scale_by_learning_rate(learning_rate": lambda s: adamjax.scale_by_learning_rate(s),
    "radam(learning_rate": lambda s: adamjax.radam(s),
    "stable_adamw(weight_decay": lambda s: adamjax.stable_adamw(1e-3, weight_decay=s),
    "lamb(weight_decay": lambda s: adamjax.lamb(1e-3, weight_decay=s),
    "ademamix(alpha": lambda s: adamjax.ademamix(1e-3, alpha=s),
    "ademamix(b3": lambda s: adamjax.ademamix(1e-3, b3=s),
    "scale_by_ademamix(b3": lambda s: adamjax.scale_by_ademamix(b3=s),
}


@pytest.mark.parametrize("call", sorted(SCHEDULED))
@pytest.mark.parametrize(("schedule", "error", "rest"), BAD_SCHEDULE_OUTPUTS, ids=SCHEDULE_IDS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_transformation_schedule_with_a_bad_output_fails_at_update(call, schedule, error, rest, dtype):
    tx = SCHEDULED[call](schedule)
    params = {"w": jnp.ones(3, dtype)}
    grads = {"w": jnp.full((3,), 0.5, dtype)}
    state = tx.init(params)
    expected = re.escape(f"`{call}=...)` is a schedule, and a schedule must return a real scalar; ") + rest
    with pytest.raises(error, match=expected):
        tx.update(grads, state, params)
    with pytest.raises(error, match=expected):
        jax.jit(tx.update)(grads, state, params)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamax", "rmsprop", "sm3"])
@pytest.mark.parametrize(("schedule", "error", "rest"), BAD_SCHEDULE_OUTPUTS, ids=SCHEDULE_IDS)
def test_triple_schedule_with_a_bad_output_fails_at_update(name, schedule, error, rest):
    make = TRIPLES[name][0]
    init, update, _ = make(schedule)
    state = init({"w": jnp.ones(3, jnp.float32)})
    expected = re.escape(f"`{name}(step_size=...)` is a schedule, and a schedule must return a real scalar; ") + rest
    with pytest.raises(error, match=expected):
        update(0, {"w": jnp.full((3,), 0.5, jnp.float32)}, state)


# --- parameters and gradients that do not fit ---------------------------------------------------------------

OPTIMIZERS = {
    "scale_by_adam": ("scale_by_adam", lambda: adamjax.scale_by_adam()),
    "adam": ("adam", lambda: adamjax.adam(1e-3)),
    "adam_weight_decay": ("adam", lambda: adamjax.adam(1e-3, weight_decay=1e-2)),
    "adamw": ("adamw", lambda: adamjax.adamw(1e-3)),
    "amsgrad": ("amsgrad", lambda: adamjax.amsgrad(1e-3)),
    "adamax": ("adamax", lambda: adamjax.adamax(1e-3)),
    "nadam": ("nadam", lambda: adamjax.nadam(1e-3)),
    "adabelief": ("adabelief", lambda: adamjax.adabelief(1e-3)),
    "radam": ("radam", lambda: adamjax.radam(1e-3)),
    "radam_torch_weight_decay": ("radam", lambda: adamjax.radam(1e-3, eps_placement="torch", weight_decay=1e-2)),
    "nadam_momentum_decay": ("nadam", lambda: adamjax.nadam(1e-3, momentum_decay=4e-3)),
    "adopt": ("adopt", lambda: adamjax.adopt(1e-3)),
    "ademamix": ("ademamix", lambda: adamjax.ademamix(1e-3)),
    "lamb": ("lamb", lambda: adamjax.lamb(1e-3, weight_decay=1e-2)),
    "stable_adamw": ("stable_adamw", lambda: adamjax.stable_adamw(1e-3)),
    "adam_mini": ("adam_mini", lambda: adamjax.adam_mini(1e-3)),
    "adamw_cautious": ("adamw", lambda: adamjax.adamw(1e-3, cautious=True)),
}
BAD_GRADIENT_DTYPES = [jnp.int32, jnp.bool_, jnp.complex64, jax.dtypes.float0]


def bad_gradient(dtype):
    return np.zeros((2,), dtype) if dtype is jax.dtypes.float0 else jnp.ones((2,), dtype)


@pytest.mark.parametrize("row", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", BAD_GRADIENT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_transformation_refuses_a_gradient_that_is_not_real_floating(row, dtype, param_dtype):
    func_name, make = OPTIMIZERS[row]
    tx = make()
    params = {"a": jnp.zeros(3, param_dtype), "b": [jnp.zeros(2, param_dtype)]}
    grads = {"a": jnp.ones(3, param_dtype), "b": [bad_gradient(dtype)]}
    name = re.escape(str(jnp.result_type(bad_gradient(dtype))))
    expected = (
        rf"^{func_name}: the gradient at \['b'\]\[0\] has dtype {name}; "
        r"gradients must be real floating-point arrays \(float16, bfloat16, float32 or float64\)"
    )
    with pytest.raises(TypeError, match=expected):
        tx.update(grads, tx.init(params), params)


@pytest.mark.parametrize("row", sorted(OPTIMIZERS))
def test_transformation_accepts_a_gradient_of_another_float_dtype(row):
    # Documented convention: any real float dtype is a gradient; the step runs in
    # float32 or wider, the state keeps its dtype, the update has the gradient's.
    _, make = OPTIMIZERS[row]
    tx = make()
    params = {"w": jnp.asarray([0.5, -1.0, 2.0], jnp.float32)}
    grads64 = {"w": jnp.asarray([0.25, -3.0, 1.5], jnp.float64)}
    grads32 = {"w": grads64["w"].astype(jnp.float32)}
    state = tx.init(params)
    # LAMB's trust ratio is optax's own scale_by_trust_ratio (as in optax.lamb), which multiplies the float32
    # parameter norm into the float64 updates: strict promotion refuses that in optax.lamb too.
    promotion = jax.numpy_dtype_promotion("standard") if row == "lamb" else contextlib.nullcontext()
    with promotion:
        wide, wide_state = tx.update(grads64, state, params)
        same, same_state = tx.update(grads32, state, params)
    assert wide["w"].dtype == jnp.dtype(jnp.float64)
    assert jax.tree.map(lambda x: x.dtype, wide_state) == jax.tree.map(lambda x: x.dtype, same_state)
    np.testing.assert_allclose(np.asarray(wide["w"]), np.asarray(same["w"], np.float64), rtol=1e-6)


@pytest.mark.parametrize("row", sorted(OPTIMIZERS))
def test_complex_parameters_are_accepted_with_complex_moments_as_optax(row):
    _, make = OPTIMIZERS[row]
    params = {"w": jnp.zeros(2, jnp.float32), "z": jnp.zeros(2, jnp.complex64)}
    state = make().init(params)
    optax_kinds = jax.tree.map(lambda x: x.dtype, optax.scale_by_adam().init(params))
    core = next(s for s in jax.tree.leaves(state, is_leaf=is_adam_state) if is_adam_state(s))
    mu = core.m1 if isinstance(core, optax.contrib.ScaleByAdemamixState) else core.mu  # optax.contrib's name
    assert mu["z"].dtype == optax_kinds.mu["z"] == jnp.complex64
    assert core.nu["z"].dtype == optax_kinds.nu["z"] == jnp.complex64
    assert mu["w"].dtype == jnp.float32


def test_a_leaf_that_is_not_an_array_is_named():
    with pytest.raises(TypeError, match=r"Adam needs real floating-point parameters; the leaf at \['w'\] is str 'x'"):
        adamjax.adam(1e-3).init({"w": "x"})


TRIPLE_NAMES = sorted(TRIPLES)


def make_triple(name):
    make, _, required = TRIPLES[name]
    return make(0.1, *required)


@pytest.mark.parametrize("name", TRIPLE_NAMES)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.complex64], ids=["int32", "bool", "complex64"])
def test_triple_refuses_parameters_that_are_not_real_floating(name, dtype):
    init, _, _ = make_triple(name)
    params = {"w": jnp.zeros(3, jnp.float32), "layers": [jnp.zeros(2, dtype)]}
    dtype_name = np.dtype(dtype).name
    adam_family = name in ("adam", "adamax")  # they optimise complex parameters, as optax does
    if adam_family and dtype == jnp.complex64:
        assert make_triple(name)[2](init(params))["layers"][0].dtype == jnp.complex64
        return
    kinds = "floating-point \\(real or complex\\)" if adam_family else "real floating-point"
    with pytest.raises(
        TypeError,
        match=rf"^`optimizers\.{name}` needs {kinds} parameters; the leaf at \['layers'\]\[0\] "
        rf"has dtype {dtype_name}\.",
    ):
        init(params)


BAD_TRIPLE_GRADIENTS = [
    (jnp.ones((1,), jnp.float32), ValueError, r"has shape \(1,\) but the parameter there has shape \(3,\)\."),
    (jnp.ones((2, 3), jnp.float32), ValueError, r"has shape \(2, 3\) but the parameter there has shape \(3,\)\."),
    (jnp.ones((4,), jnp.float32), ValueError, r"has shape \(4,\) but the parameter there has shape \(3,\)\."),
    (jnp.ones((3,), jnp.int32), TypeError, r"has dtype int32; gradients must be real floating-point arrays"),
    (jnp.ones((3,), jnp.complex64), TypeError, r"has dtype complex64; gradients must be real floating-point"),
]


@pytest.mark.parametrize("name", TRIPLE_NAMES)
@pytest.mark.parametrize(("grad", "error", "rest"), BAD_TRIPLE_GRADIENTS, ids=["1", "2x3", "4", "int32", "complex"])
def test_triple_gradient_that_does_not_fit_names_the_leaf(name, grad, error, rest):
    init, update, get_params = make_triple(name)
    params = {"a": jnp.zeros(2, jnp.float32), "b": {"c": jnp.zeros(3, jnp.float32)}}
    state = init(params)
    grads = {"a": jnp.ones(2, jnp.float32), "b": {"c": grad}}
    with pytest.raises(error, match=rf"^`optimizers\.{name}` update: the gradient at \['b'\]\['c'\] " + rest):
        update(0, grads, state)


def test_triple_state_is_usable_after_a_refused_gradient():
    init, update, get_params = optimizers.adam(0.1)
    state = init({"w": jnp.zeros(2, jnp.float64)})
    with pytest.raises(ValueError, match=r"the gradient at \['w'\] has shape \(1,\)"):
        update(0, {"w": jnp.ones(1, jnp.float64)}, state)
    state = update(0, {"w": jnp.asarray([1.0, -1.0], jnp.float64)}, state)
    np.testing.assert_allclose(get_params(state)["w"], [-0.1, 0.1], rtol=1e-7)  # eps = 1e-8 shows


@pytest.mark.parametrize(
    ("i", "error", "rest"),
    [
        (-1, ValueError, "got -1."),
        (np.int64(-5), ValueError, "got -5."),
        (0.5, TypeError, "got float 0.5."),
        (None, TypeError, "got NoneType None."),
        ("3", TypeError, "got str '3'."),
        (True, TypeError, "got bool True."),
        (np.array([0, 1]), TypeError, r"got an array of dtype int64, shape (2,)."),
        (jnp.asarray(1.0, jnp.float32), TypeError, "got an array of dtype float32, shape ()."),
    ],
)
@pytest.mark.parametrize("name", ["sgd", "adam", "sm3"])
def test_triple_step_index_must_be_a_non_negative_integer(name, i, error, rest):
    init, update, _ = make_triple(name)
    state = init(jnp.zeros(3, jnp.float32))
    expected = re.escape(
        f"`optimizers.{name}` update: the step index `i` must be an integer >= 0 (0 on the first update); {rest}"
    )
    with pytest.raises(error, match=expected):
        update(i, jnp.ones(3, jnp.float32), state)


def test_triple_accepts_integer_step_indices_of_every_kind():
    init, update, get_params = optimizers.adam(0.1)
    state = init(jnp.zeros(2, jnp.float64))
    g = jnp.asarray([1.0, -2.0], jnp.float64)
    results = [get_params(update(i, g, state)) for i in (3, np.int32(3), np.int64(3), jnp.asarray(3, jnp.int32))]
    # One step at t = 4 from zero moments: m_hat / sqrt(v_hat) with bias corrections at t = 4.
    t, g = 4, np.array([1.0, -2.0])
    mu_hat, nu_hat = 0.1 * g / (1 - 0.9**t), 0.001 * g**2 / (1 - 0.999**t)
    expected = -0.1 * mu_hat / (np.sqrt(nu_hat) + 1e-8)
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=1e-12)


# --- the simulator and the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"grads": jnp.ones(3, jnp.complex64)}, TypeError, r"`simulate\(grads=\.\.\.\)` must be an array of real"),
        ({"grads": ["a", "b"]}, TypeError, r"`simulate\(grads=\.\.\.\)` must be .*; got dtype <U1\."),
        ({"grads": [True, False]}, TypeError, r"`simulate\(grads=\.\.\.\)` must be .*; got dtype bool\."),
        ({"grads": [1.0, None]}, TypeError, r"`simulate\(grads=\.\.\.\)` must be .*; got dtype object\."),
        ({"grads": {"w": [1.0]}}, TypeError, r"`simulate\(grads=\.\.\.\)` must be .*; got dtype object\."),
        ({"grads": [1.0], "params": 1j}, TypeError, r"`simulate\(params=\.\.\.\)` must be .*complex128"),
        ({"grads": [1.0], "dtype": "foo"}, TypeError, r"`simulate\(dtype=\.\.\.\)` must be None or a floating dtype"),
        ({"grads": [1.0], "dtype": jnp.int32}, TypeError, r"`simulate\(dtype=\.\.\.\)` must be .*; got int32\."),
        ({"grads": [1.0], "unroll": 0}, ValueError, r"`simulate\(unroll=\.\.\.\)` must be a positive integer; got 0"),
        ({"grads": [1.0], "unroll": "a"}, TypeError, r"`simulate\(unroll=\.\.\.\)` must be .*; got str 'a'\."),
        ({"grads": [1.0], "unroll": 1.5}, TypeError, r"`simulate\(unroll=\.\.\.\)` must be .*; got float 1\.5\."),
        ({"grads": [1.0], "unroll": True}, TypeError, r"`simulate\(unroll=\.\.\.\)` must be .*; got bool True\."),
        (
            {"grad_fn": lambda w: w, "params": jnp.zeros(2, jnp.complex64), "steps": 2},
            TypeError,
            r"`simulate\(params=\.\.\.\)` must be an array of real numbers .*complex64",
        ),
        (
            {"grad_fn": lambda w: w.astype(jnp.complex64), "params": jnp.zeros(2, jnp.float32), "steps": 2},
            TypeError,
            r"`simulate\(grad_fn=\.\.\.\)` must be an array of real numbers .*complex64",
        ),
        (
            {"grad_fn": lambda w: w, "params": {"w": 0.0}, "steps": 2},
            TypeError,
            r"`simulate\(params=\.\.\.\)` must be an array of real numbers",
        ),
    ],
)
def test_simulate_refuses_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        adamjax.simulate(adamjax.adam(1e-3), **kwargs)


def run_cli(argv, tmp_path):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = main(["simulate", *argv, "--out", str(tmp_path / "never.png")])
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--lr", "nan"], r"`adam\(learning_rate=\.\.\.\)` must be in \[0, inf\); got nan\."),
        (["--lr", "inf"], r"`adam\(learning_rate=\.\.\.\)` must be finite and in \[0, inf\); got inf\."),
        (["--b1", "nan"], r"`adam\(b1=\.\.\.\)` must be in \[0, 1\); got nan\."),
        (["--b2", "0.9,inf"], r"`adam\(b2=\.\.\.\)` must be finite and in \[0, 1\); got inf\."),
        (["--eps", "-1"], r"`adam\(eps=\.\.\.\)` must be in \[0, inf\); got -1\.0\."),
        (["--eps", "nan"], r"`adam\(eps=\.\.\.\)` must be in \[0, inf\); got nan\."),
        (["--power", "nan"], r"`adam\(power=\.\.\.\)` must be in \(0, inf\); got nan\."),
        (["--power=-inf"], r"`adam\(power=\.\.\.\)` must be finite and in \(0, inf\); got -inf\."),
        (["--lr", "0x"], r"argument --lr: malformed number list '0x'"),
        (["--seed", "1.5"], r"argument --seed: expected an integer; got '1\.5'"),
    ],
)
def test_command_line_non_finite_and_malformed_values_exit_2_with_one_line(tmp_path, argv, expected):
    status, out, err = run_cli(argv, tmp_path)
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("adamjax simulate: error: ")
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "never.png").exists()


def test_command_line_out_of_memory_is_one_line_and_status_1(tmp_path, monkeypatch):
    def too_large(*args, **kwargs):
        raise MemoryError("Unable to allocate 745. GiB for an array with shape (99999999999,)")

    monkeypatch.setattr(adamjax.signals, "by_name", too_large)
    status, out, err = run_cli(["--steps", "99999999999"], tmp_path)
    assert status == 1
    assert err == "adamjax: out of memory: Unable to allocate 745. GiB for an array with shape (99999999999,)\n"


# --- valid edge inputs: empty trees, zero-size and scalar arrays --------------------------------------------


# The core's states: optax's own, and the newer members' (AdEMAMix's is optax.contrib's).
FAMILY_STATES = (*CORE_STATES, optax.contrib.ScaleByAdemamixState, adamjax.NadamState)


def is_adam_state(x):
    return isinstance(x, FAMILY_STATES)


# name -> (optimizer, NumPy variant, learning rate (None: the direction), dtype)
VARIANTS = {
    "scale_by_adam": (lambda: adamjax.scale_by_adam(), ref.Variant(), None, jnp.float64),
    "adam": (lambda: adamjax.adam(0.1), ref.Variant(), 0.1, jnp.float32),
    "amsgrad": (lambda: adamjax.amsgrad(0.1), ref.Variant(amsgrad=True), 0.1, jnp.float32),
    "adamax": (lambda: adamjax.adamax(0.1), ref.Variant(power=math.inf, eps=0.0, eps_root=1e-8), 0.1, jnp.float64),
    "nadam": (lambda: adamjax.nadam(0.1), ref.Variant(nesterov=True), 0.1, jnp.float64),
    "adabelief": (
        lambda: adamjax.adabelief(0.1),
        ref.Variant(centered=True, eps=1e-16, eps_root=1e-16),
        0.1,
        jnp.float32,
    ),
}


@pytest.mark.parametrize("row", sorted(OPTIMIZERS))
@pytest.mark.parametrize("empty", [{}, [], (), {"a": {}, "b": []}], ids=["dict", "list", "tuple", "nested"])
def test_empty_trees_take_steps_and_count_them(row, empty):
    _, make = OPTIMIZERS[row]
    tx = make()
    state = tx.init(empty)
    for _ in range(2):
        updates, state = tx.update(empty, state, empty)
    assert updates == empty
    counts = [int(s.count) for s in jax.tree.leaves(state, is_leaf=is_adam_state) if is_adam_state(s)]
    assert counts == [2]


@pytest.mark.parametrize("name", TRIPLE_NAMES)
@pytest.mark.parametrize("empty", [{}, [], {"a": {}}], ids=["dict", "list", "nested"])
def test_triple_empty_trees(name, empty):
    init, update, get_params = make_triple(name)
    state = init(empty)
    state = update(0, empty, state)
    assert get_params(update(1, empty, state)) == empty


def _step_with_empty_arrays(tx, values, state, params, dtype):
    """One update with zero-size arrays beside ``values``; checks the updates keep every shape and dtype."""
    grads = {
        "empty": jnp.zeros((0,), dtype),
        "empty_matrix": jnp.zeros((3, 0), dtype),
        **{k: jnp.asarray(v, dtype) for k, v in values.items()},
    }
    updates, state = tx.update(grads, state, params)
    assert updates["empty"].shape == (0,) and updates["empty_matrix"].shape == (3, 0)
    assert updates["scalar"].shape == () and updates["scalar"].dtype == jnp.dtype(dtype)
    return grads, updates, state


@pytest.mark.parametrize("row", sorted(VARIANTS))
def test_zero_size_and_scalar_leaves_step_like_the_reference(row):
    make, variant, learning_rate, dtype = VARIANTS[row]
    tx = make()
    params = {
        "empty": jnp.zeros((0,), dtype),
        "empty_matrix": jnp.zeros((3, 0), dtype),
        "scalar": jnp.asarray(0.5, dtype),
        "vector": jnp.asarray([1.0, -2.0], dtype),
    }
    stream = [{"scalar": 0.3, "vector": [0.5, -1.5]}, {"scalar": -0.2, "vector": [0.25, 2.0]}]
    state = tx.init(params)
    moments = {k: ref.zeros_like(np.asarray(stream[0][k])) for k in ("scalar", "vector")}
    for t, values in enumerate(stream, start=1):
        grads, updates, state = _step_with_empty_arrays(tx, values, state, params, dtype)
        for key in ("scalar", "vector"):
            step = ref.step(np.asarray(values[key], np.float64), moments[key], t, variant)
            moments[key] = ref.Moments(step.mu, step.nu, step.nu_max)
            want = step.update if learning_rate is None else -learning_rate * step.update
            np.testing.assert_allclose(
                np.asarray(updates[key], np.float64), want, rtol=1e-5 if dtype == jnp.float32 else 1e-12
            )


@pytest.mark.parametrize("name", TRIPLE_NAMES)
def test_triple_zero_size_and_scalar_leaves(name):
    init, update, get_params = make_triple(name)
    params = {"empty": jnp.zeros((0, 2), jnp.float64), "scalar": jnp.asarray(0.5, jnp.float64)}
    state = init(params)
    for i, g in enumerate([0.3, -0.2]):
        state = update(i, {"empty": jnp.zeros((0, 2), jnp.float64), "scalar": jnp.asarray(g, jnp.float64)}, state)
    out = get_params(state)
    assert out["empty"].shape == (0, 2)
    assert out["scalar"].shape == () and bool(jnp.isfinite(out["scalar"]))
    assert float(out["scalar"]) != 0.5  # it moved


def test_triple_adam_scalar_matches_the_reference():
    init, update, get_params = optimizers.adam(0.1)
    state = init(jnp.asarray(0.5, jnp.float64))
    moments = ref.zeros_like(np.asarray(0.0))
    x = 0.5
    for i, g in enumerate([0.3, -0.2, 0.7]):
        state = update(i, jnp.asarray(g, jnp.float64), state)
        step = ref.step(np.asarray(g), moments, i + 1, ref.Variant())
        moments = ref.Moments(step.mu, step.nu, step.nu_max)
        x = x - 0.1 * float(step.update)
    np.testing.assert_allclose(float(get_params(state)), x, rtol=1e-12)


def test_simulate_zero_size_and_scalar_streams():
    trace = adamjax.simulate(adamjax.adam(1e-3), jnp.zeros((5, 0), jnp.float32))
    assert trace.params.shape == (5, 0) and trace.nu.shape == (5, 0)
    grads = np.asarray([0.5, -1.0, 2.0])
    trace = adamjax.simulate(adamjax.scale_by_adam(), jnp.asarray(grads, jnp.float64))
    np.testing.assert_allclose(trace.direction, ref.open_loop(grads, ref.Variant()).update, rtol=1e-12)


# --- non-finite gradients: `optax.apply_if_finite` around adamjax, for both APIs ----------------------------

GUARDED = {
    "adam": (lambda lr: adamjax.adam(lr), ref.Variant(), 0.0),
    "adamw": (lambda lr: adamjax.adamw(lr, weight_decay=1e-2), ref.Variant(), 1e-2),
    "amsgrad": (lambda lr: adamjax.amsgrad(lr), ref.Variant(amsgrad=True), 0.0),
    "nadam": (lambda lr: adamjax.nadam(lr), ref.Variant(nesterov=True), 0.0),
    "adabelief": (lambda lr: adamjax.adabelief(lr), ref.Variant(centered=True, eps=1e-16, eps_root=1e-16), 0.0),
    "adamax": (lambda lr: adamjax.adamax(lr), ref.Variant(power=math.inf, eps=0.0, eps_root=1e-8), 0.0),
}
POISONS = [NAN, INF, -INF]
TARGET = np.array([1.0, -2.0, 0.5])


def quadratic_grad(params):
    return {"w": params["w"] - jnp.asarray(TARGET, params["w"].dtype)}


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert jnp.result_type(x) == jnp.result_type(y)


def reference_trajectory(variant, decoupled, learning_rate, num_steps):
    return ref.closed_loop(
        lambda p: {"w": p["w"] - TARGET},
        {"w": np.zeros(3)},
        variant,
        learning_rate,
        num_steps,
        decoupled_decay=decoupled,
    )


@pytest.mark.parametrize("row", sorted(GUARDED))
def test_apply_if_finite_skips_non_finite_steps_and_training_continues(row):
    # float32 (tests/test_contract.py checks a NaN step in float64 for every optimizer).
    dtype = jnp.float32
    make, variant, decoupled = GUARDED[row]
    tx = optax.apply_if_finite(make(0.05), max_consecutive_errors=5)

    @jax.jit
    def step(params, state, poison, poisoned):
        grads = quadratic_grad(params)
        grads = {"w": jnp.where(poisoned, grads["w"].at[1].set(poison), grads["w"])}
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jnp.zeros(3, dtype)}
    state = tx.init(params)
    clean = (jnp.zeros([], dtype), jnp.asarray(False))
    for t in range(40):
        params, state = step(params, state, *clean)
        if t in (9, 25):
            kept_params, kept_inner = params, state.inner_state
            for poison in POISONS:
                params, state = step(params, state, jnp.asarray(poison, dtype), jnp.asarray(True))
                assert_bitwise_equal(params, kept_params)
                assert_bitwise_equal(state.inner_state, kept_inner)
            assert int(state.notfinite_count) == 3
            assert int(state.total_notfinite) == (3 if t == 9 else 6)
    # The skipped steps are invisible: 40 clean steps, as the reference takes them.
    expected = reference_trajectory(variant, decoupled, 0.05, 40)[-1]["w"]
    np.testing.assert_allclose(np.asarray(params["w"], np.float64), expected, rtol=2e-5)
    counts = [int(s.count) for s in jax.tree.leaves(state, is_leaf=is_adam_state) if is_adam_state(s)]
    assert counts == [40]


def test_apply_if_finite_for_the_triple_api():
    tx = optax.apply_if_finite(adamjax.adam(0.05), max_consecutive_errors=5)
    init, update, get_params = optimizers.from_transformation(tx)
    state = init({"w": jnp.zeros(3, jnp.float32)})
    i = 0
    for t in range(30):
        state = update(i, quadratic_grad(get_params(state)), state)
        i += 1
        if t == 12:
            kept = state
            for poison in POISONS:
                grads = quadratic_grad(get_params(state))
                state = update(i, {"w": grads["w"].at[0].set(poison)}, state)
                i += 1
                assert_bitwise_equal(state.params, kept.params)
                assert_bitwise_equal(state.inner_state.inner_state, kept.inner_state.inner_state)
            assert int(state.inner_state.total_notfinite) == 3
    expected = reference_trajectory(ref.Variant(), 0.0, 0.05, 30)[-1]["w"]
    np.testing.assert_allclose(np.asarray(get_params(state)["w"], np.float64), expected, rtol=2e-5)


def test_without_the_guard_a_non_finite_gradient_poisons_the_moments():
    # Why the recipe exists: the moments keep a NaN forever (b * NaN = NaN).
    tx = adamjax.adam(0.05)
    params = {"w": jnp.zeros(3, jnp.float64)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.asarray([NAN, 0.0, 0.0], jnp.float64)}, state, params)
    for _ in range(3):
        updates, state = tx.update({"w": jnp.ones(3, jnp.float64)}, state, params)
    assert bool(jnp.isnan(updates["w"][0])) and not bool(jnp.any(jnp.isnan(updates["w"][1:])))


# --- the newer members: zero-size and scalar leaves, apply_if_finite, where a NaN goes ----------------------

# name -> (optimizer, its transcription in tests/family_reference.py and hyperparameters, learning rate, dtype)
FAMILY_VARIANTS = {
    "radam": (lambda: adamjax.radam(0.1), ("radam", {}), 0.1, jnp.float64),
    "radam_torch": (
        lambda: adamjax.radam(0.1, eps_placement="torch"),
        ("radam", {"convention": "torch"}),
        0.1,
        jnp.float64,
    ),
    "nadam_momentum_decay": (
        lambda: adamjax.nadam(0.1, momentum_decay=4e-3),
        ("nadam", {"momentum_decay": 4e-3}),
        0.1,
        jnp.float32,
    ),
    "adopt": (lambda: adamjax.adopt(0.1), ("adopt", {}), 0.1, jnp.float64),
    "ademamix": (lambda: adamjax.ademamix(0.1, b3=0.99), ("ademamix", {"b3": 0.99}), 0.1, jnp.float64),
    "lamb": (lambda: adamjax.lamb(0.1, weight_decay=0.1), ("lamb", {"weight_decay": 0.1}), 0.1, jnp.float64),
    "stable_adamw": (
        lambda: adamjax.stable_adamw(0.1, weight_decay=0.1),
        ("stable_adamw", {"weight_decay": 0.1}),
        0.1,
        jnp.float32,
    ),
    "adam_mini": (lambda: adamjax.adam_mini(0.1, weight_decay=0.0), ("adam_mini", {}), 0.1, jnp.float64),
    "adamw_cautious": (
        lambda: adamjax.adamw(0.1, weight_decay=0.1, cautious=True),
        ("adamw", {"weight_decay": 0.1, "cautious": True}),
        0.1,
        jnp.float64,
    ),
}


@pytest.mark.parametrize("row", sorted(FAMILY_VARIANTS))
def test_family_zero_size_and_scalar_leaves_step_like_the_reference(row):
    make, (name, hyper), learning_rate, dtype = FAMILY_VARIANTS[row]
    tx = make()
    values = {"scalar": 0.5, "vector": [1.0, -2.0]}
    params = {
        "empty": jnp.zeros((0,), dtype),
        "empty_matrix": jnp.zeros((3, 0), dtype),
        **{k: jnp.asarray(v, dtype) for k, v in values.items()},
    }
    stream = [{"scalar": 0.3, "vector": [0.5, -1.5]}, {"scalar": -0.2, "vector": [0.25, 2.0]}]
    state = tx.init(params)
    # The empty arrays have nothing to contribute to a per-array rule (clipping, trust ratio, block means).
    opt = fam.make(name, learning_rate=learning_rate, **hyper)
    theta = {k: np.asarray(params[k], np.float64) for k in values}
    reference_state = opt.init(theta)
    for values_t in stream:
        grads, updates, state = _step_with_empty_arrays(tx, values_t, state, params, dtype)
        want, reference_state = opt.update(
            {k: np.asarray(grads[k], np.float64) for k in values}, reference_state, theta
        )
        for key in values:
            np.testing.assert_allclose(
                np.asarray(updates[key], np.float64), want[key], rtol=1e-5 if dtype == jnp.float32 else 1e-12
            )


FAMILY_GUARDED = {
    "radam": (lambda lr: adamjax.radam(lr), ("radam", {})),
    "nadam_momentum_decay": (lambda lr: adamjax.nadam(lr, momentum_decay=4e-3), ("nadam", {"momentum_decay": 4e-3})),
    "adopt": (lambda lr: adamjax.adopt(lr), ("adopt", {})),
    "ademamix": (lambda lr: adamjax.ademamix(lr, b3=0.99), ("ademamix", {"b3": 0.99})),
    "lamb": (lambda lr: adamjax.lamb(lr), ("lamb", {})),
    "stable_adamw": (lambda lr: adamjax.stable_adamw(lr, weight_decay=1e-2), ("stable_adamw", {"weight_decay": 1e-2})),
    "adam_mini": (lambda lr: adamjax.adam_mini(lr, weight_decay=0.0), ("adam_mini", {})),
    "adamw_cautious": (lambda lr: adamjax.adamw(lr, cautious=True), ("adamw", {"cautious": True})),
}


@pytest.mark.parametrize("row", sorted(FAMILY_GUARDED))
def test_family_apply_if_finite_skips_non_finite_steps_and_training_continues(row):
    make, (name, hyper) = FAMILY_GUARDED[row]
    tx = optax.apply_if_finite(make(0.05), max_consecutive_errors=5)

    @jax.jit
    def step(params, state, poisoned):
        grads = quadratic_grad(params)
        grads = {"w": jnp.where(poisoned, grads["w"].at[1].set(jnp.nan), grads["w"])}
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jnp.full((3,), 0.1, jnp.float64)}  # LAMB's trust ratio needs a non-zero start to move far
    state = tx.init(params)
    for t in range(30):
        params, state = step(params, state, jnp.asarray(False))
        if t == 12:
            kept_params, kept_inner = params, state.inner_state
            params, state = step(params, state, jnp.asarray(True))
            assert_bitwise_equal(params, kept_params)
            assert_bitwise_equal(state.inner_state, kept_inner)
    expected = fam.run(
        name, lambda p, t: {"w": p["w"] - TARGET}, {"w": np.full(3, 0.1)}, 30, learning_rate=0.05, **hyper
    )
    np.testing.assert_allclose(np.asarray(params["w"]), expected[-1]["w"], rtol=1e-12)
    counts = [int(s.count) for s in jax.tree.leaves(state, is_leaf=is_adam_state) if is_adam_state(s)]
    assert counts == [30]


# Where a NaN in one gradient entry ends up three steps later, without the guard: in that entry for the
# elementwise members, in its block for Adam-mini, in its array for the per-array rules (StableAdamW's RMS,
# LAMB's norms) -- never in another array.
ENTRY = [[0, 1, 0], [0, 0, 0]]
BLOCK = [[1, 1, 1], [0, 0, 0]]
ARRAY = [[1, 1, 1], [1, 1, 1]]
NAN_SPREAD = {
    "radam": (lambda: adamjax.radam(0.05), ENTRY, lambda: optax.radam(0.05)),
    "radam_torch": (lambda: adamjax.radam(0.05, eps_placement="torch"), ENTRY, None),
    "nadam_momentum_decay": (lambda: adamjax.nadam(0.05, momentum_decay=4e-3), ENTRY, None),
    "adopt": (lambda: adamjax.adopt(0.05), ENTRY, lambda: optax.contrib.adopt(0.05)),
    "ademamix": (lambda: adamjax.ademamix(0.05), ENTRY, lambda: optax.contrib.ademamix(0.05)),
    "lamb": (lambda: adamjax.lamb(0.05), ARRAY, lambda: optax.lamb(0.05)),
    "stable_adamw": (lambda: adamjax.stable_adamw(0.05), ARRAY, None),
    "adam_mini": (lambda: adamjax.adam_mini(0.05), BLOCK, None),
    "adamw_cautious": (lambda: adamjax.adamw(0.05, cautious=True), ENTRY, None),
}


def nan_pattern(tx):
    params = {"m": jnp.ones((2, 3), jnp.float64), "v": jnp.ones(3, jnp.float64)}
    ones = {"m": jnp.ones((2, 3), jnp.float64), "v": jnp.ones(3, jnp.float64)}
    state = tx.init(params)
    with jax.numpy_dtype_promotion("standard"):  # optax's own code mixes int32 counts and floats
        _, state = tx.update(dict(ones, m=ones["m"].at[0, 1].set(jnp.nan)), state, params)
        for _ in range(3):
            updates, state = tx.update(ones, state, params)
    return {key: np.isnan(np.asarray(u)).astype(int).tolist() for key, u in updates.items()}


@pytest.mark.parametrize("row", sorted(NAN_SPREAD))
def test_a_nan_gradient_stays_where_the_member_s_rule_puts_it(row):
    make, expected, optax_make = NAN_SPREAD[row]
    pattern = nan_pattern(make())
    assert pattern == {"m": expected, "v": [0, 0, 0]}
    if optax_make is not None:  # ... exactly where optax's own implementation puts it
        assert pattern == nan_pattern(optax_make())
