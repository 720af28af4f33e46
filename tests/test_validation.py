"""Input validation, table-driven over every public constructor of the transformation API.

A bad hyperparameter fails where the optimizer is built, with a message that
quotes the call and the argument (``adam(b1=...)``), shows the value and says
what is allowed; a traced hyperparameter is accepted unchecked. Bad gradients
and parameters fail at ``update``/``init`` with the tree or leaf named.
"""

from __future__ import annotations

import inspect
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

CONSTRUCTORS = {
    name: getattr(adamjax, name)
    for name in (
        "scale_by_adam",
        "adam",
        "adamw",
        "amsgrad",
        "adamax",
        "nadam",
        "adabelief",
        "scale_by_learning_rate",
        "radam",
        "scale_by_radam",
        "adopt",
        "scale_by_adopt",
        "ademamix",
        "scale_by_ademamix",
        "lamb",
        "stable_adamw",
        "adam_mini",
    )
}
# Checked in tests/test_family.py (not numbers or flags): RAdam's eps placement, ADOPT's
# clipping function, Adam-mini's block function.
# state_bits / block_size set the state layout, rounding / seed the 16-bit weights; tests/test_quantized_adam.py
# and tests/test_rounding_aliases.py check their refusals.
NOT_NUMERIC = {"eps_placement", "clip_value_fn", "block_axes", "state_bits", "block_size", "rounding", "seed"}


def arguments(func_name):
    return inspect.signature(CONSTRUCTORS[func_name]).parameters


def build(func_name, **kwargs):
    """Calls the constructor with a valid learning rate unless the test gives one."""
    if "learning_rate" in arguments(func_name):
        kwargs.setdefault("learning_rate", 1e-3)
    return CONSTRUCTORS[func_name](**kwargs)


def must(func_name, arg, rest):
    """The exact message: "`adam(b1=...)` must be in [0, 1); got 1.0."."""
    return re.escape(f"`{func_name}({arg}=...)` must {rest}")


def in_range(interval):
    def expected(value):
        if isinstance(value, float) and math.isinf(value):
            return f"be finite and in {interval}; got {value}."
        return f"be in {interval}; got {value!r}."

    return expected


def real_number(value):
    if isinstance(value, bool):
        return f"be a real number; got the boolean {value!r}."
    return f"be a real number; got {type(value).__name__} {value!r}."


def learning_rate_type(value):
    return f"be a number >= 0 or a callable schedule (step count -> step size); got {type(value).__name__} {value!r}."


def flag(value):
    return f"be True or False; got {type(value).__name__} {value!r}."


def float_dtype(shown):
    return lambda value: (
        "be None or a floating dtype such as jnp.float32 or jnp.bfloat16 "
        f"(or a complex one such as jnp.complex64, for complex parameters); got {shown}."
    )


def decay_or_schedule(value):
    return f"be a number >= 0 or a callable schedule (step count -> value); got {type(value).__name__} {value!r}."


NAN, INF = float("nan"), float("inf")

# argument kind -> (arguments of that kind, [(bad value, exception, message builder)])
KINDS = {
    "decay": (
        ("b1", "b2"),
        [
            (1.0, ValueError, in_range("[0, 1)")),
            (1.5, ValueError, in_range("[0, 1)")),
            (-0.1, ValueError, in_range("[0, 1)")),
            (NAN, ValueError, in_range("[0, 1)")),
            (INF, ValueError, in_range("[0, 1)")),
            (-INF, ValueError, in_range("[0, 1)")),
            (True, TypeError, real_number),
            ("0.9", TypeError, real_number),
        ],
    ),
    "nonnegative": (
        ("eps", "eps_root"),
        [
            (-1e-8, ValueError, in_range("[0, inf)")),
            (NAN, ValueError, in_range("[0, inf)")),
            (INF, ValueError, in_range("[0, inf)")),
            ("1e-8", TypeError, real_number),
        ],
    ),
    "weight_decay": (
        ("weight_decay",),
        [
            (-1e-8, ValueError, in_range("[0, inf)")),
            (NAN, ValueError, in_range("[0, inf)")),
            (INF, ValueError, in_range("[0, inf)")),
            ("1e-8", TypeError, decay_or_schedule),
        ],
    ),
    "learning_rate": (
        ("learning_rate",),
        [
            (-1e-3, ValueError, in_range("[0, inf)")),
            (NAN, ValueError, in_range("[0, inf)")),
            (INF, ValueError, in_range("[0, inf)")),
            ("1e-3", TypeError, learning_rate_type),
            (None, TypeError, learning_rate_type),
        ],
    ),
    "power": (
        ("power",),
        [
            (0.0, ValueError, in_range("(0, inf)")),
            (-2.0, ValueError, in_range("(0, inf)")),
            (NAN, ValueError, in_range("(0, inf)")),
            (-INF, ValueError, in_range("(0, inf)")),
        ],
    ),
    "flag": (
        (
            "amsgrad",
            "nesterov",
            "centered",
            "bias_correction",
            "bias_correction_mu",
            "bias_correction_nu",
            "cautious",
            "use_clipping",
        ),
        [(1, TypeError, flag), (0, TypeError, flag), ("yes", TypeError, flag), (None, TypeError, flag)],
    ),
    "threshold": (("threshold",), [(NAN, ValueError, in_range("(-inf, inf)")), ("5", TypeError, real_number)]),
    "momentum_decay": (
        ("momentum_decay",),
        [
            (-1e-3, ValueError, in_range("[0, inf)")),
            (NAN, ValueError, in_range("[0, inf)")),
            ("4e-3", TypeError, real_number),
        ],
    ),
    "slow_decay": (
        ("b3",),
        [
            (1.0, ValueError, in_range("[0, 1)")),
            (-0.1, ValueError, in_range("[0, 1)")),
            ("0.9", TypeError, real_number),
        ],
    ),
    "mixing": (("alpha",), [(-1.0, ValueError, in_range("[0, inf)")), (INF, ValueError, in_range("[0, inf)"))]),
    "dtype": (
        ("mu_dtype", "nu_dtype"),
        [
            (jnp.int32, TypeError, float_dtype("int32")),
            ("foo", TypeError, float_dtype("'foo'")),
        ],
    ),
}


def bad_value_cases():
    for func_name in CONSTRUCTORS:
        for names, bad_values in KINDS.values():
            for arg in names:
                if arg not in arguments(func_name):
                    continue
                for value, error, message in bad_values:
                    yield pytest.param(func_name, arg, value, error, message(value), id=f"{func_name}-{arg}={value!r}")


@pytest.mark.parametrize("func_name, arg, value, error, rest", list(bad_value_cases()))
def test_bad_hyperparameter_is_rejected_at_construction(func_name, arg, value, error, rest):
    with pytest.raises(error, match=must(func_name, arg, rest)):
        build(func_name, **{arg: value})


def test_every_constructor_validates_its_numeric_arguments():
    # Guards the table: each constructor has the arguments it is checked on.
    covered = {name for names, _ in KINDS.values() for name in names}
    for func_name in CONSTRUCTORS:
        unchecked = set(arguments(func_name)) - covered - {"mask", "func"} - NOT_NUMERIC
        assert not unchecked, (func_name, unchecked)


def test_message_reads_as_the_issue_quotes_it():
    with pytest.raises(ValueError, match=r"`adam\(b1=\.\.\.\)` must be in \[0, 1\); got 1\.5\.$"):
        adamjax.adam(1e-3, b1=1.5)


@pytest.mark.parametrize("func_name", [name for name in CONSTRUCTORS if "b1" in arguments(name)])
def test_non_scalar_hyperparameter_is_rejected(func_name):
    with pytest.raises(ValueError, match=must(func_name, "b1", "be a scalar; got an array of shape (2,).")):
        build(func_name, b1=np.array([0.9, 0.9]))


@pytest.mark.parametrize("power", [2.0, 3.0, 0.5, math.inf])
def test_edge_values_are_accepted_and_mean_what_they_say(power):
    # b1 = b2 = 0 and eps = 0 are allowed: the moments are the last gradient, so
    # the update is sign(g) exactly, whatever the power.
    tx = adamjax.scale_by_adam(b1=0.0, b2=0.0, eps=0.0, eps_root=0.0, power=power)
    g = jnp.asarray([3.0, -0.25, 1e-3], jnp.float64)
    updates, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(updates, [1.0, -1.0, 1.0], rtol=1e-12)
    frozen = adamjax.adam(0.0)
    updates, _ = frozen.update(g, frozen.init(g))
    np.testing.assert_array_equal(updates, 0.0)


def test_numpy_and_jax_scalars_and_dtype_names_are_accepted():
    tx = adamjax.adam(np.float32(1e-3), b1=jnp.asarray(0.9, jnp.float32), mu_dtype="bfloat16", nu_dtype=np.float64)
    state = tx.init({"w": jnp.zeros(2, jnp.float32)})
    core = [s for s in state if isinstance(s, adamjax.ScaleByAdamState)][0]
    assert core.mu["w"].dtype == jnp.dtype(jnp.bfloat16)
    assert core.nu["w"].dtype == jnp.dtype(jnp.float64)
    schedule = adamjax.adamw(optax.constant_schedule(1e-3), weight_decay=optax.constant_schedule(1e-4))
    params = {"w": jnp.ones(2, jnp.float32)}
    updates, _ = schedule.update({"w": jnp.zeros(2, jnp.float32)}, schedule.init(params), params)
    # Zero gradient: only the decoupled decay moves the weights, by lr * wd * w.
    np.testing.assert_allclose(updates["w"], -1e-3 * 1e-4, rtol=1e-6)


def test_bfloat16_hyperparameter_that_rounds_to_one_gets_the_hyperparam_dtype_hint():
    b2 = jnp.asarray(0.999, jnp.bfloat16)
    assert float(b2) == 1.0
    with pytest.raises(ValueError, match=r"`adam\(b2=\.\.\.\)` must be in \[0, 1\).*hyperparam_dtype=jnp\.float32"):
        adamjax.adam(1e-3, b2=b2)


INJECTABLE = ["adam", "adamw", "amsgrad", "adamax", "nadam", "adabelief", "scale_by_adam"]


@pytest.mark.parametrize("func_name", INJECTABLE)
def test_inject_hyperparams_with_bfloat16_params_raises_the_hint(func_name):
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    kwargs = {"learning_rate": 1e-3} if "learning_rate" in arguments(func_name) else {}
    injected = optax.inject_hyperparams(CONSTRUCTORS[func_name])(**kwargs)
    # inject_hyperparams stores b2 = 0.999 in the parameters' dtype, where it is 1.0.
    with pytest.raises(
        ValueError, match=rf"`{func_name}\(b2=\.\.\.\)` must be in \[0, 1\).*hyperparam_dtype=jnp\.float32"
    ):
        injected.init(params)


@pytest.mark.parametrize("func_name", INJECTABLE)
def test_inject_hyperparams_with_float32_hyperparams_and_bfloat16_params_works(func_name):
    params = {"w": jnp.asarray([1.0, -2.0, 0.5], jnp.bfloat16)}
    grads = {"w": jnp.asarray([0.5, 1.0, -3.0], jnp.bfloat16)}
    kwargs = {"learning_rate": 1e-3} if "learning_rate" in arguments(func_name) else {}
    injected = optax.inject_hyperparams(CONSTRUCTORS[func_name], hyperparam_dtype=jnp.float32)(**kwargs)
    plain = CONSTRUCTORS[func_name](**kwargs)
    got, _ = injected.update(grads, injected.init(params), params)
    want, _ = plain.update(grads, plain.init(params), params)
    assert got["w"].dtype == jnp.dtype(jnp.bfloat16)
    np.testing.assert_allclose(np.asarray(got["w"], np.float32), np.asarray(want["w"], np.float32), rtol=1e-2)
    assert float(jnp.max(jnp.abs(got["w"].astype(jnp.float32)))) > 0


TRACED_VALUES = {
    "learning_rate": 1e-2,
    "b1": 0.8,
    "b2": 0.99,
    "eps": 1e-3,
    "eps_root": 1e-6,
    "weight_decay": 1e-2,
    "power": 3.0,
}


def traced_arguments(func_name):
    return {name: value for name, value in TRACED_VALUES.items() if name in arguments(func_name)}


def run_two_steps(tx, params, grads):
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    updates, state = tx.update(grads, state, params)
    return updates


PARAMS = {"w": jnp.asarray([1.0, -2.0, 0.5], jnp.float64), "s": jnp.asarray(0.3, jnp.float64)}
GRADS = {"w": jnp.asarray([0.5, 1.0, -3.0], jnp.float64), "s": jnp.asarray(-0.2, jnp.float64)}


@pytest.mark.parametrize("func_name", sorted(CONSTRUCTORS))
def test_traced_hyperparameters_inside_jit_are_accepted(func_name):
    values = traced_arguments(func_name)
    concrete = run_two_steps(CONSTRUCTORS[func_name](**values), PARAMS, GRADS)

    @jax.jit
    def traced(hyperparams):
        return run_two_steps(CONSTRUCTORS[func_name](**hyperparams), PARAMS, GRADS)

    got = traced({name: jnp.asarray(value, jnp.float64) for name, value in values.items()})
    for key in PARAMS:
        np.testing.assert_allclose(got[key], concrete[key], rtol=1e-12, err_msg=key)
    # Out-of-range values cannot be seen through a tracer; they are accepted unchecked.
    invalid = {name: jnp.asarray(-1.0, jnp.float64) for name in values}
    jax.eval_shape(lambda h: CONSTRUCTORS[func_name](**h).init(PARAMS), invalid)


@pytest.mark.parametrize("func_name", sorted(CONSTRUCTORS))
def test_traced_hyperparameters_inside_vmap_are_accepted(func_name):
    name, first = next(iter(traced_arguments(func_name).items()))
    values = [first, first * 0.5]

    def run(value):
        return run_two_steps(CONSTRUCTORS[func_name](**{name: value}), PARAMS, GRADS)

    batched = jax.vmap(run)(jnp.asarray(values, jnp.float64))
    for i, value in enumerate(values):
        separate = run(value)
        for key in PARAMS:
            np.testing.assert_allclose(batched[key][i], separate[key], rtol=1e-12, err_msg=f"{name}={value}")
    assert float(jnp.max(jnp.abs(batched["w"][0] - batched["w"][1]))) > 0


# Optimizers as rows for the gradient/parameter checks (name in messages, optimizer).
OPTIMIZERS = {
    "scale_by_adam": ("scale_by_adam", lambda: adamjax.scale_by_adam()),
    "adam": ("adam", lambda: adamjax.adam(1e-3)),
    "adam_weight_decay": ("adam", lambda: adamjax.adam(1e-3, weight_decay=1e-2)),
    "adam_amsgrad": ("adam", lambda: adamjax.adam(1e-3, amsgrad=True)),
    "adamw": ("adamw", lambda: adamjax.adamw(1e-3)),
    "amsgrad": ("amsgrad", lambda: adamjax.amsgrad(1e-3)),
    "adamax": ("adamax", lambda: adamjax.adamax(1e-3)),
    "nadam": ("nadam", lambda: adamjax.nadam(1e-3)),
    "adabelief": ("adabelief", lambda: adamjax.adabelief(1e-3)),
}


@pytest.mark.parametrize("row", sorted(OPTIMIZERS))
def test_gradient_tree_mismatch_shows_both_structures(row):
    func_name, make = OPTIMIZERS[row]
    tx = make()
    params = {"a": jnp.zeros(3, jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    state = tx.init(params)
    grads = {"a": jnp.ones(3, jnp.float32)}
    expected = (
        rf"^{func_name}: the gradient tree does not match the tree the optimizer state was initialised with\.\n"
        r"  gradients: PyTreeDef\(\{'a': \*\}\)\n"
        r"  state:     PyTreeDef\(\{'a': \*, 'b': \*\}\)$"
    )
    with pytest.raises(TypeError, match=expected):
        tx.update(grads, state, params)
    with pytest.raises(TypeError, match=r"gradients: PyTreeDef\(\[\*, \*\]\)"):
        tx.update([jnp.ones(3, jnp.float32), jnp.ones(2, jnp.float32)], state, params)


@pytest.mark.parametrize("row", sorted(OPTIMIZERS))
def test_gradient_of_the_wrong_shape_names_the_leaf(row):
    func_name, make = OPTIMIZERS[row]
    tx = make()
    params = {"a": jnp.zeros(3, jnp.float32), "b": {"c": jnp.zeros(2, jnp.float32)}}
    state = tx.init(params)
    grads = {"a": jnp.ones(3, jnp.float32), "b": {"c": jnp.ones(4, jnp.float32)}}
    expected = rf"^{func_name}: the gradient at \['b'\]\['c'\] has shape \(4,\) but the optimizer state there has shape \(2,\)\.$"
    with pytest.raises(ValueError, match=expected):
        tx.update(grads, state, params)


@pytest.mark.parametrize("row", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.uint8], ids=["int32", "bool", "uint8"])
def test_integer_params_are_rejected_at_init_naming_the_leaf(row, dtype):
    _, make = OPTIMIZERS[row]
    params = {"w": jnp.zeros(3, jnp.float32), "layers": [jnp.zeros(2, jnp.float32), jnp.zeros(2, dtype)]}
    name = jnp.dtype(dtype).name
    with pytest.raises(TypeError, match=rf"the leaf at \['layers'\]\[1\] has dtype {name}\..*optax\.masked"):
        make().init(params)
