"""Type aliases of the public signatures (the same as optax's, so a type checker sees a drop-in)."""

from __future__ import annotations

from typing import Any

import jax
import optax

ArrayLike = jax.typing.ArrayLike
"""A scalar or array: a Python number, a NumPy or JAX array (a tracer too)."""

DTypeLike = Any
"""A dtype: ``jnp.float32``, ``"bfloat16"``, ``np.dtype(...)``."""

ScalarOrSchedule = optax.ScalarOrSchedule
"""A number, a JAX scalar, or a schedule ``step count -> value`` (optax's ``ScalarOrSchedule``)."""
