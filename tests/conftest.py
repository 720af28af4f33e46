"""Shared test settings: float64 available and strict dtype promotion.

x64 is switched on so references can be compared in float64 (PyTorch, NumPy,
the seeds' printed values); every test names its dtypes explicitly. Strict
promotion makes any silent float32 -> float64 (or bf16 -> f32) widening inside
adamjax an error rather than a quiet change of precision.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
