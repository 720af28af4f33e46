"""Shared test settings: float64 available and strict dtype promotion.

x64 is switched on so references can be compared in float64 (PyTorch, NumPy,
the tutorials' printed values); every test names its dtypes explicitly. Strict
promotion makes any silent float32 -> float64 (or bf16 -> f32) widening inside
adamjax an error rather than a quiet change of precision.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")


# ---------------------------------------------------------------- the native kernel
# Tests marked `native` check the compiled kernel itself. Where it is absent
# (no compiler, or a build for another jaxlib) they skip with the reason
# `adamjax.native_status()` gives; with ADAMJAX_REQUIRE_NATIVE=1 (CI sets it)
# they fail instead, so a broken build cannot pass as a skipped one.

import os  # noqa: E402

import pytest  # noqa: E402


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("native") is None:
        return
    import adamjax

    status = adamjax.native_status()
    if status == "available":
        return
    if os.environ.get("ADAMJAX_REQUIRE_NATIVE", "") not in ("", "0"):
        pytest.fail(f"ADAMJAX_REQUIRE_NATIVE is set but the native kernel is absent: {status}", pytrace=False)
    pytest.skip(f"the native kernel is absent: {status}")
