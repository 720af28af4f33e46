"""The XLA flags the suite compiles with (no imports: tests/conftest.py reads this before JAX starts).

XLA's CPU compiler is most of the suite's time (thousands of small programs,
about 40 ms each). Emitting fusions with XLA's older elemental emitter halves
it; the HLO passes are the same and the suite's results agree with XLA's
defaults (``ADAMJAX_TEST_DEFAULT_XLA=1`` runs the suite with those, and with
JAX's default debug locations, :data:`FAST_LOWERING_ENV`, and a new MLIR
context for each lowering, ``tests/shared_ir_context.py``). Lowering
LLVM's optimisation level would save a little more but changes the order of
vectorised reductions, and with it the last bits of a global norm.
"""

import os

FAST_COMPILE_FLAGS = (
    "--xla_cpu_use_fusion_emitters=false" if os.environ.get("ADAMJAX_TEST_DEFAULT_XLA", "") in ("", "0") else ""
)


# For subprocess smoke runs of scripts (a benchmark, an example) whose printed numbers a test checks
# only for being there and finite, never to the last bit: LLVM's lowest optimisation level compiles
# several times faster (benchmarks/convergence.py --quick: its 24 training steps 21 s -> 5 s). The
# HLO, and so what every program computes, is the same; only the machine code is less optimised.
SMOKE_COMPILE_FLAGS = (
    "--xla_backend_optimization_level=0" if os.environ.get("ADAMJAX_TEST_DEFAULT_XLA", "") in ("", "0") else ""
)


# JAX's setting for the same end, in the test processes (tests/conftest.py) and, through the
# environment, in the suite's subprocesses (tests/helpers.py: checkout_env): no Python stack
# frames in each program's debug locations. Building them took about a sixth of lowering and
# of XLA's compile; the compiled programs are the same without them (only the HLO's
# source-location metadata differs).
FAST_LOWERING_ENV = (
    {"JAX_TRACEBACK_IN_LOCATIONS_LIMIT": "0"} if os.environ.get("ADAMJAX_TEST_DEFAULT_XLA", "") in ("", "0") else {}
)


def xla_flags(*flags: str) -> str:
    """``XLA_FLAGS`` for a subprocess: ``flags`` plus the suite's compile flags."""
    return " ".join(filter(None, [*flags, FAST_COMPILE_FLAGS]))


def smoke_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a smoke-run subprocess: ``base`` (this one's by default) with :data:`SMOKE_COMPILE_FLAGS`."""
    env = dict(os.environ if base is None else base)
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(flags + [f for f in (FAST_COMPILE_FLAGS, SMOKE_COMPILE_FLAGS) if f and f not in flags])
    return env
