"""Regenerates the recorded PyTorch trajectories in this folder.

Run from the repository root with torch==2.13.0 (CPU) installed::

    python tests/reference/make_torch_reference.py

It writes ``parity_trajectories.npz`` (the ``torch.optim`` runs of
``tests/torch_reference.PARITY_CASES``), ``seed001_mlp.npz`` (seed 001's
MLP: ``nn.Linear``'s float32 initial weights and the float64 losses of
``torch.optim.Adam``) and ``family_trajectories.npz`` (the ``torch.optim.RAdam``
and ``torch.optim.NAdam`` runs of ``tests/family_torch.FAMILY_CASES``). The
problems and settings live in ``tests/torch_reference.py`` and
``tests/family_torch.py``; this script only saves what it computes. When
torch is installed the tests rerun these computations and fail if the files
disagree, so regenerate after changing a case.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import family_torch  # noqa: E402
import torch_reference  # noqa: E402


def main() -> None:
    if torch_reference.torch is None:
        sys.exit("make_torch_reference.py needs torch (pip install 'adamjax[reference]') and ADAMJAX_NO_TORCH unset.")
    print(f"torch {torch_reference.torch.__version__}")
    for path, arrays in {**torch_reference.record_all(), **family_torch.record_all()}.items():
        np.savez_compressed(path, **arrays)
        print(f"wrote {path} ({len(arrays)} arrays, {path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
