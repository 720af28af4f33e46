"""Records bitsandbytes' blockwise quantization for tests/test_quantize.py.

Run from the repository root with bitsandbytes==0.50.2 (its CPU build) installed::

    pip install bitsandbytes==0.50.2
    python tests/reference/make_bnb_reference.py

It writes ``bnb_quantize.npz``: for each input of ``test_quantize.bnb_cases``
the codes and scales of ``bitsandbytes.functional.quantize_blockwise`` run
with adamjax's codebook (the 4-bit ones padded to 256 entries by repeating the
top value, codes clamped back to 15), the codes with bitsandbytes' own 8-bit
codebooks, and those codebooks. The inputs and the code that calls
bitsandbytes live in ``tests/test_quantize.py``; this script only saves what
it computes. With bitsandbytes installed the tests rerun it and fail if the
file disagrees, so regenerate after changing a case.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's adamjax, then the test module

import test_quantize  # noqa: E402


def main() -> None:
    try:
        import bitsandbytes
    except ImportError:
        sys.exit(f"make_bnb_reference.py needs bitsandbytes=={test_quantize.BNB_VERSION} (pip install it).")
    if bitsandbytes.__version__ != test_quantize.BNB_VERSION:
        sys.exit(
            f"bitsandbytes {bitsandbytes.__version__} is installed; the recording is pinned to {test_quantize.BNB_VERSION}."
        )
    arrays = test_quantize.record_bnb()
    np.savez_compressed(test_quantize.REFERENCE, **arrays)
    size = test_quantize.REFERENCE.stat().st_size / 1024
    print(f"wrote {test_quantize.REFERENCE} ({len(arrays)} arrays, {size:.0f} KiB)")


if __name__ == "__main__":
    main()
