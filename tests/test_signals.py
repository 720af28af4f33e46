"""The gradient signals against the seeds' lists and formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seed_transcriptions as seeds

from adamjax import signals

# Seed 000's lists, copied from the notebook.
SEED000_HIGH_FREQUENCY = [1.0, 0.0] * 30
SEED000_BLOCKS = [
    0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.1,0.7,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,
    0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.1,0.5,0.5,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3,
    0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.05,0.15,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,
]  # fmt: skip
SEED000_LOW_AMPLITUDE = [
    -0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,
    -0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,
    -0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,-0.001,0.001,
]  # fmt: skip
SEED000_PULSES = [
    0.4,0.0,0.3,0.0,0.3,0.0,0.4,0.0,0.3,0.0,0.3,0.0,0.4,0.0,0.3,0.0,0.3,0.0,0.4,0.0,
    0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,0.08,0.0,0.08,0.0,0.11,0.0,0.1,0.0,0.1,0.0,
    0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,
    0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,0.1,0.0,
    0.08,0.0,0.08,0.0,0.08,0.0,0.08,0.0,0.08,0.0,0.08,0.0,0.08,0.0,0.08,0.0,0.08,0.0,0.08,0.0,
    0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,0.05,0.0,
]  # fmt: skip


def as_list(x):
    return np.asarray(x, np.float64).tolist()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: signals.alternating(dtype=jnp.float64), SEED000_HIGH_FREQUENCY),
        (lambda: signals.blocks(dtype=jnp.float64), SEED000_BLOCKS),
        (lambda: signals.small_alternating(dtype=jnp.float64), SEED000_LOW_AMPLITUDE),
        (
            lambda: signals.patterns(dtype=jnp.float64),
            SEED000_HIGH_FREQUENCY + SEED000_BLOCKS + SEED000_LOW_AMPLITUDE,
        ),
        (lambda: signals.pulses(dtype=jnp.float64), SEED000_PULSES),
    ],
)
def test_seed000_lists_are_reproduced_exactly(make, expected):
    assert as_list(make()) == expected


def test_patterns_cycle_and_cut():
    assert as_list(signals.alternating(5)) == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert as_list(signals.blocks(65, dtype=jnp.float64)) == SEED000_BLOCKS + SEED000_BLOCKS[:5]
    assert as_list(signals.small_alternating(3, amplitude=2.0)) == [-2.0, 2.0, -2.0]


def test_sine_is_the_seed_formula():
    expected = np.sin(np.linspace(0, 20 * np.pi, 300))
    assert as_list(signals.sine(dtype=jnp.float64)) == expected.tolist()
    np.testing.assert_allclose(
        signals.sine(100, cycles=2.0, amplitude=3.0), 3 * np.sin(np.linspace(0, 4 * np.pi, 100)), atol=1e-6
    )


@pytest.mark.parametrize(
    ("make", "build", "stddev"),
    [
        (signals.swinging, seeds.seed002_build_swinging, 1.0),
        (signals.swinging_soft, seeds.seed002_build_swinging_soft, 0.5),
    ],
)
def test_seed002_signals(make, build, stddev):
    clean = make(10_000, noise=0.0, dtype=jnp.float64)
    np.testing.assert_array_equal(clean, build(10_000, 10_000 / 50))
    np.testing.assert_array_equal(make(600, periods=3.0, noise=0.0, dtype=jnp.float64), build(600, 3.0))
    noisy = make(10_000, seed=1, dtype=jnp.float64)
    noise = np.asarray(noisy) - np.asarray(clean)
    assert abs(noise.mean()) < 0.05 * stddev
    assert noise.std() == pytest.approx(stddev, rel=0.03)
    # The default noise level is the seed's.
    assert np.asarray(make(10_000, seed=1, noise=stddev, dtype=jnp.float64)).tolist() == np.asarray(noisy).tolist()


def test_noisy_line():
    line = np.asarray(signals.noisy_line(5000, intercept=2.0, slope=0.01, noise=0.5, seed=3, dtype=jnp.float64))
    slope, intercept = np.polyfit(np.arange(5000), line, 1)
    assert slope == pytest.approx(0.01, rel=1e-2)
    assert intercept == pytest.approx(2.0, abs=0.05)
    assert np.asarray(signals.noisy_line(10, noise=0.0)).tolist() == [5.0] * 10


def test_uniform():
    values = np.asarray(signals.uniform(5000, seed=7))
    assert values.shape == (5000,)
    assert values.min() >= 0.0 and values.max() < 1.0
    assert values.mean() == pytest.approx(0.5, abs=0.02)
    shifted = np.asarray(signals.uniform(100, seed=7, low=-2.0, high=-1.0))
    assert shifted.min() >= -2.0 and shifted.max() < -1.0


@pytest.mark.parametrize("name", ["uniform", "swinging", "swinging_soft", "noisy_line"])
def test_random_signals_are_reproducible(name):
    make = getattr(signals, name)
    first = np.asarray(make(300, seed=5))
    assert np.array_equal(first, np.asarray(make(300, seed=5)))
    assert np.array_equal(first, np.asarray(make(300, seed=jax.random.key(5))))
    assert np.array_equal(first, np.asarray(make(300, seed=jax.random.PRNGKey(5))))
    assert not np.array_equal(first, np.asarray(make(300, seed=6)))


@pytest.mark.parametrize("name", signals.NAMES)
def test_every_signal_is_a_float_vector(name):
    values = signals.by_name(name, 123)
    assert values.shape == (123,)
    assert values.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(values)))
    assert signals.by_name(name, 7, dtype=jnp.float64).dtype == jnp.float64


def test_by_name_defaults_are_the_seed_lengths():
    lengths = {
        name: signals.by_name(name).shape[0] for name in ("uniform", "alternating", "patterns", "sine", "swinging")
    }
    assert lengths == {"uniform": 200, "alternating": 60, "patterns": 162, "sine": 300, "swinging": 10_000}


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, "10"])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match=r"`adamjax.signals.sine\(steps=...\)` must be a positive integer"):
        signals.sine(steps)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`adamjax.signals.swinging\(noise=...\)` must be in \[0, inf\); got -1"):
        signals.swinging(100, noise=-1.0)
    with pytest.raises(ValueError, match=r"periods=...\)` must be in \(0, inf\)"):
        signals.swinging_soft(100, periods=0.0)
    with pytest.raises(TypeError, match="must be an integer or a jax.random key"):
        signals.uniform(10, seed="one")
    with pytest.raises(ValueError, match="must be one of uniform, alternating"):
        signals.by_name("square")
