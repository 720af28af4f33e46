"""What the simulator records of the stored moments, against NumPy float64 references.

The stored moments are compared with ``tests/test_quantize.py``'s float64
transcription of blockwise quantization (itself checked against
bitsandbytes): quantize the moment the step computed, dequantize, round once
to float32. The recursion ``m_t = b1 * stored m_{t-1} + (1 - b1) g_t`` is
checked in float64 as well, so the stored values are the ones the optimizer
goes on from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from test_quantize import reference_map, reference_near_tie, reference_quantize

import adamjax
from adamjax import signals

B1, B2 = 0.9, 0.999


def block_of_gradients(steps: int, width: int, key: int = 0) -> jax.Array:
    """Gradients of ``width`` weights whose sizes span two orders of magnitude, so blocks have small members."""
    noise = jax.random.normal(jax.random.key(key), (steps, width), jnp.float32)
    sizes = jnp.logspace(-2, 0, width, dtype=jnp.float32)
    return noise * sizes + 0.3 * sizes


def stored_reference(values: np.ndarray, bits: int, signed: bool, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the float64 transcription's dequantized value and where it may differ (a near tie)."""
    expected, ties = np.empty(values.shape, np.float64), np.empty(values.shape, bool)
    for t, row in enumerate(values):
        expected[t] = reference_quantize(row, bits, signed, block_size)[2]
        ties[t] = reference_near_tie(row, bits, signed, block_size)
    return expected, ties


@pytest.mark.parametrize(("bits", "block_size", "width"), [(8, None, 256), (4, None, 256), (8, 64, 200), (4, 32, 100)])
def test_stored_moments_equal_the_float64_quantizer(bits, block_size, width):
    grads = block_of_gradients(40, width)
    tx = adamjax.adam(1e-2, state_bits=bits, block_size=block_size)
    trace = adamjax.simulate(tx, grads, min_quantized_size=1)
    block = block_size or {8: 256, 4: 128}[bits]
    assert trace.settings.quantized and trace.settings.state_bits == bits and trace.settings.block_size == block
    for field, signed in (("mu", True), ("nu", False)):
        computed = np.asarray(getattr(trace, field), np.float32)
        stored = np.asarray(getattr(trace, f"{field}_stored"), np.float64)
        expected, ties = stored_reference(computed, bits, signed, block)
        assert ties.mean() < 0.01
        np.testing.assert_array_equal(stored[~ties], expected[~ties], err_msg=field)
        # Quantization really happened: most stored values differ from the computed ones.
        assert np.mean(stored != computed) > 0.5, field


@pytest.mark.parametrize("bits", [8, 4])
def test_each_step_starts_from_the_stored_moments(bits):
    grads = block_of_gradients(30, 256, key=1)
    trace = adamjax.simulate(adamjax.adam(1e-2, state_bits=bits), grads, min_quantized_size=1)
    g = np.asarray(grads, np.float64)
    mu_before = np.concatenate([np.zeros((1, 256)), np.asarray(trace.mu_stored, np.float64)[:-1]])
    nu_before = np.concatenate([np.zeros((1, 256)), np.asarray(trace.nu_stored, np.float64)[:-1]])
    np.testing.assert_allclose(trace.mu, B1 * mu_before + (1 - B1) * g, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(trace.nu, B2 * nu_before + (1 - B2) * g * g, rtol=2e-6, atol=1e-9)
    # Starting from the computed moments instead would not fit: the difference is quantization.
    wrong = B1 * np.concatenate([np.zeros((1, 256)), np.asarray(trace.mu, np.float64)[:-1]]) + (1 - B1) * g
    assert np.max(np.abs(wrong - np.asarray(trace.mu, np.float64))) > 1e-4


def test_the_error_is_stored_minus_computed_and_within_half_a_code_gap():
    grads = block_of_gradients(30, 256, key=2)
    for bits in (8, 4):
        trace = adamjax.simulate(adamjax.adam(1e-2, state_bits=bits), grads, min_quantized_size=1)
        for field, signed in (("mu", True), ("nu", False)):
            computed = np.asarray(getattr(trace, field), np.float64)
            stored = np.asarray(getattr(trace, f"{field}_stored"), np.float64)
            error = np.asarray(getattr(trace, f"{field}_error"), np.float64)
            np.testing.assert_allclose(error, stored - computed, rtol=1e-6, atol=0)
            table = reference_map(bits, signed)
            widest = np.max(np.diff(table)) / 2
            below = 0.0 if signed else table[0]  # the unsigned 4-bit map has no 0: small values go up to 1/16
            scale = np.max(np.abs(computed), axis=1, keepdims=True)
            assert np.all(np.abs(error) <= (max(widest, below) + 1e-6) * scale), (bits, field)


def test_a_weight_alone_in_its_block_is_its_scale():
    """Positive values are stored exactly; negative first moments at the signed codebook's most negative entry."""
    grads = signals.sine(60)
    for bits in (8, 4):
        trace = adamjax.simulate(adamjax.adam(1e-2, state_bits=bits), grads, min_quantized_size=1)
        mu, stored = np.asarray(trace.mu, np.float64), np.asarray(trace.mu_stored, np.float64)
        lowest = float(reference_map(bits, True)[0].astype(np.float32))
        positive = mu > 0
        np.testing.assert_array_equal(stored[positive], mu[positive])
        np.testing.assert_allclose(stored[~positive], np.float32(-lowest) * mu[~positive], rtol=1e-7)
        np.testing.assert_array_equal(trace.nu_stored, trace.nu)


def test_the_optimizers_own_rule_quantizes_only_large_arrays():
    one = adamjax.simulate(adamjax.adam(1e-2, state_bits=8), signals.sine(20))
    assert one.settings.quantized is False
    np.testing.assert_array_equal(one.mu_stored, one.mu)
    np.testing.assert_array_equal(one.nu_error, np.zeros(20))
    assert "state_bits=8 unused" in one.settings.describe()

    large = block_of_gradients(4, 4096, key=3).reshape(4, 16, 256)
    trace = adamjax.simulate(adamjax.adam(1e-2, state_bits=8), large)
    assert trace.settings.quantized is True
    assert "8-bit moments, blocks of 256" in trace.settings.describe()
    expected, ties = stored_reference(np.asarray(trace.mu, np.float32).reshape(4, -1), 8, True, 256)
    np.testing.assert_array_equal(np.asarray(trace.mu_stored, np.float64).reshape(4, -1)[~ties], expected[~ties])

    # A threshold above the array's size keeps float32 moments where the optimizer would quantize.
    kept = adamjax.simulate(adamjax.adam(1e-2, state_bits=8), large, min_quantized_size=10_000)
    assert kept.settings.quantized is False
    np.testing.assert_array_equal(kept.mu_stored, kept.mu)


def test_closed_loop_records_stored_moments_too():
    target = jnp.linspace(-1.0, 1.0, 256, dtype=jnp.float32)
    trace = adamjax.simulate(
        adamjax.adam(0.05, state_bits=4),
        grad_fn=lambda w: 2 * (w - target),
        params=jnp.zeros(256, jnp.float32),
        steps=25,
        min_quantized_size=1,
    )
    expected, ties = stored_reference(np.asarray(trace.nu, np.float32), 4, False, 128)
    np.testing.assert_array_equal(np.asarray(trace.nu_stored, np.float64)[~ties], expected[~ties])


def test_bfloat16_moments_are_stored_rounded():
    grads = signals.swinging(50, seed=2)
    trace = adamjax.simulate(adamjax.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16), grads)
    for field in ("mu", "nu"):
        computed = np.asarray(getattr(trace, field), np.float32)
        rounded = computed.astype(ml_dtypes.bfloat16).astype(np.float64)
        np.testing.assert_array_equal(np.asarray(getattr(trace, f"{field}_stored"), np.float64), rounded)
        assert np.any(rounded != computed)
    # float32 moments are stored as computed.
    plain = adamjax.simulate(adamjax.adam(1e-3), grads)
    np.testing.assert_array_equal(plain.mu_stored, plain.mu)
    np.testing.assert_array_equal(plain.nu_stored, plain.nu)


def test_min_quantized_size_is_checked():
    grads = signals.sine(10)
    with pytest.raises(
        ValueError,
        match=r"`simulate\(min_quantized_size=\.\.\.\)` changes which arrays .* needs an optimizer built with `state_bits=8`",
    ):
        adamjax.simulate(adamjax.adam(1e-3), grads, min_quantized_size=1)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match=r"must be a positive integer or None; got"):
            adamjax.simulate(adamjax.adam(1e-3, state_bits=8), grads, min_quantized_size=bad)
