"""PyTorch trajectories of the family members torch has (RAdam, NAdam): live from torch, or recorded.

The same rule as :mod:`torch_reference` (whose problem, objective and
live-or-recorded machinery this module reuses): with torch importable each run
is made live *and* checked against ``tests/reference/family_trajectories.npz``
(a disagreement raises ``StaleReferenceError``); without torch (or with
``ADAMJAX_NO_TORCH=1``) the recorded runs are returned. Nothing is skipped.

Regenerate with ``python tests/reference/make_torch_reference.py`` (torch==2.13.0, CPU).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import torch_reference as tr

FAMILY_FILE = tr.REFERENCE_DIR / "family_trajectories.npz"


@dataclasses.dataclass(frozen=True)
class FamilyCase:
    """One ``torch.optim.RAdam`` or ``torch.optim.NAdam`` run on :func:`torch_reference.objective`, in float64."""

    name: str
    optimizer: str  # "RAdam" or "NAdam"
    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled_weight_decay: bool = False
    momentum_decay: float = 4e-3  # NAdam only
    steps: int = 80

    @property
    def state_keys(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq", "mu_product") if self.optimizer == "NAdam" else ("exp_avg", "exp_avg_sq")

    def torch_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            lr=self.lr,
            betas=(self.b1, self.b2),
            eps=self.eps,
            weight_decay=self.weight_decay,
            decoupled_weight_decay=self.decoupled_weight_decay,
        )
        if self.optimizer == "NAdam":
            kwargs["momentum_decay"] = self.momentum_decay
        return kwargs


FAMILY_CASES: tuple[FamilyCase, ...] = (
    FamilyCase("radam", "RAdam", lr=0.05),
    # b2=0.95: rho_inf = 39, the rectification switches on at step 3 instead of 6.
    FamilyCase("radam_hyper", "RAdam", lr=0.02, b1=0.8, b2=0.95, eps=1e-3),
    FamilyCase("radam_l2", "RAdam", lr=0.03, weight_decay=0.1),
    FamilyCase("radam_decoupled", "RAdam", lr=0.03, weight_decay=0.1, decoupled_weight_decay=True),
    FamilyCase("nadam", "NAdam", lr=0.02),
    FamilyCase("nadam_momentum_decay", "NAdam", lr=0.02, b1=0.8, b2=0.95, eps=1e-6, momentum_decay=0.05),
    FamilyCase("nadam_l2", "NAdam", lr=0.02, weight_decay=0.1, momentum_decay=0.01),
    FamilyCase("nadam_decoupled", "NAdam", lr=0.02, weight_decay=0.1, decoupled_weight_decay=True),
)
FAMILY_CASES_BY_NAME = {case.name: case for case in FAMILY_CASES}


def _state_row(optimizer: Any, params: list[Any], key: str) -> list[np.ndarray]:
    values = []
    for p in params:
        value = optimizer.state[p][key]
        values.append(np.asarray(value.item() if value.ndim == 0 else value.numpy(), np.float64).copy())
    return values


def _run_torch_case(case: FamilyCase) -> tr.Trajectory:
    torch = tr.torch
    default_dtype = torch.get_default_dtype()
    # torch keeps its step counter and NAdam's running product of momenta in the default
    # dtype (float32 unless changed): NAdam's mu_product then carries a 1e-8 relative error
    # into every step. With float64 as the default the whole run is float64.
    torch.set_default_dtype(torch.float64)
    try:
        return _run_in_float64(case)
    finally:
        torch.set_default_dtype(default_dtype)


def _run_in_float64(case: FamilyCase) -> tr.Trajectory:
    torch = tr.torch
    with tr._one_thread():
        data = {key: torch.tensor(value, dtype=torch.float64) for key, value in tr.problem_data().items()}
        params = [data["w0"].clone().requires_grad_(True), data["M0"].clone().requires_grad_(True)]
        optimizer = getattr(torch.optim, case.optimizer)(params, foreach=False, **case.torch_kwargs())
        param_rows = [[p.detach().numpy().copy() for p in params]]
        state_rows = []
        for _ in range(case.steps):
            optimizer.zero_grad()
            tr.objective(params[0], params[1], data, torch).backward()
            optimizer.step()
            param_rows.append([p.detach().numpy().copy() for p in params])
            state_rows.append({key: _state_row(optimizer, params, key) for key in case.state_keys})
    names = tr.PARAM_NAMES
    return tr.Trajectory(
        params={name: np.stack([row[i] for row in param_rows]) for i, name in enumerate(names)},
        state={
            key: {name: np.stack([row[key][i] for row in state_rows]) for i, name in enumerate(names)}
            for key in case.state_keys
        },
        lr=np.full(case.steps, case.lr, np.float64),
    )


def _keys(case: FamilyCase) -> list[str]:
    keys = [f"{case.name}/params/{name}" for name in tr.PARAM_NAMES]
    keys += [f"{case.name}/{key}/{name}" for key in case.state_keys for name in tr.PARAM_NAMES]
    return [*keys, f"{case.name}/lr"]


@functools.cache
def torch_trajectory(name: str) -> tr.Trajectory:
    """The torch run of ``FAMILY_CASES`` entry ``name`` (live and checked against the file, or recorded).

    ``params[name]`` is ``(steps + 1, *shape)`` (row 0 the start); ``state[key][name]``
    is ``(steps, *shape)`` after each step (``mu_product`` is per array, ``(steps,)``).
    """
    case = FAMILY_CASES_BY_NAME[name]
    flat = tr._live_or_recorded(FAMILY_FILE, _keys(case), lambda: _run_torch_case(case).flat(name), exact=False)
    return tr.Trajectory(
        params={p: flat[f"{name}/params/{p}"] for p in tr.PARAM_NAMES},
        state={key: {p: flat[f"{name}/{key}/{p}"] for p in tr.PARAM_NAMES} for key in case.state_keys},
        lr=flat[f"{name}/lr"],
    )


def record_all() -> dict[Any, dict[str, np.ndarray]]:
    """Every family entry, computed live with torch (used by the regeneration script)."""
    if tr.torch is None:
        raise RuntimeError("recording needs torch (and ADAMJAX_NO_TORCH unset).")
    family: dict[str, np.ndarray] = {}
    for case in FAMILY_CASES:
        family.update(_run_torch_case(case).flat(case.name))
    return {FAMILY_FILE: family}
