"""Every float32 in [-1, 1] through the quantized kernel's nearest-code search, against the pure path's.

Run as ``python tests/nearest_code_exhaustive.py`` (the loops this CPU runs) or
with ``ADAMJAX_KERNEL_BASELINE=1`` (the baseline loops); about 2 minutes each
on 2 cores, too long for the suite, which checks the values around every tie
instead (tests/test_quantized_kernel.py). For each codebook it compares the
codes of all 2^31 (signed) or 2^30 (unsigned) float32 values of magnitude at
most 1 with ``adamjax._quantize._nearest_codes`` and prints how many differ.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from adamjax import _native, _quantize

CHUNK = 1 << 24


def main() -> int:
    top = int(np.float32(1.0).view(np.int32))  # magnitudes: every bit pattern up to 1.0
    print(f"loops: {_native.instruction_set()}")
    failures = 0
    for bits, signed in ((8, True), (8, False), (4, True), (4, False)):
        table = _quantize.quantization_map(bits, signed)
        pure = jax.jit(lambda x, table=table: _quantize._nearest_codes(x, table))
        start, differ, total = time.perf_counter(), 0, 0
        for sign in (0, 1) if signed else (0,):
            for low in range(0, top + 1, CHUNK):
                magnitude = np.arange(low, min(low + CHUNK, top + 1), dtype=np.int64)
                x = (magnitude | (sign << 31)).astype(np.uint32).view(np.float32)
                differ += int(np.sum(np.asarray(pure(jnp.asarray(x))) != _native.nearest_codes(table, x)))
                total += x.size
        failures += differ
        print(f"{bits} bits, signed={signed}: {total:,} floats, {differ} differ ({time.perf_counter() - start:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
