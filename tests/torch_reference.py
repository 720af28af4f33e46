"""PyTorch reference trajectories for the parity tests: live from torch, or recorded.

The parity tests compare adamjax against ``torch.optim`` in float64. This
module owns the PyTorch side: the problems (written once, for any array
namespace), the optimizer settings, and the runs themselves. Every public
function answers the same question in one of two ways:

* **torch importable** -- the run is made live with torch, *and* checked
  against the recorded file in ``tests/reference/``; a disagreement raises
  :class:`StaleReferenceError`, so the recorded data cannot drift from what
  torch actually does.
* **torch absent** -- the recorded trajectories are returned. Nothing is
  skipped: the tests compare against the same numbers, recorded.

Environment:
  ADAMJAX_NO_TORCH: set to ``1`` to behave as if torch were not installed
    (use the recorded files only), e.g.
    ``ADAMJAX_NO_TORCH=1 python -m pytest tests/test_torch_parity.py``.

Regenerate the recorded files (torch==2.13.0, CPU) with
``python tests/reference/make_torch_reference.py``.

torch is a test tool only; adamjax never imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

REFERENCE_DIR = pathlib.Path(__file__).parent / "reference"
PARITY_FILE = REFERENCE_DIR / "parity_trajectories.npz"
MLP_FILE = REFERENCE_DIR / "seed001_mlp.npz"
REGENERATE = "python tests/reference/make_torch_reference.py"

# A live torch run may differ from the recorded one in the last bits (another
# CPU, another BLAS kernel); anything larger means the recording is stale.
HONESTY_ATOL = 1e-12
HONESTY_RTOL = 1e-10


class StaleReferenceError(AssertionError):
    """The recorded reference disagrees with a live torch run (or lacks an entry)."""


def _import_torch() -> Any:
    if os.environ.get("ADAMJAX_NO_TORCH", "").strip() not in ("", "0"):
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


torch = _import_torch()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread: these small float64 problems run several times faster
    than with torch's default pool sharing the cores with XLA, and reduce in a fixed order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------
# The closed-loop problem: a small nonconvex function of a vector and a matrix.
# --------------------------------------------------------------------------

PARAM_NAMES = ("w", "M")


@functools.cache
def problem_data() -> dict[str, np.ndarray]:
    """Fixed float64 design and starting point (NumPy's frozen ``RandomState`` stream)."""
    rng = np.random.RandomState(20250101)
    return {
        "X": rng.standard_normal((16, 4)),
        "y": rng.standard_normal(16),
        "C": rng.standard_normal((3, 5)),
        "w0": rng.uniform(-1.0, 1.0, 4),
        "M0": rng.uniform(-1.0, 1.0, (3, 5)),
    }


def objective(w: Any, M: Any, data: dict[str, Any], xp: Any) -> Any:
    """The problem, for any array namespace ``xp`` (``jax.numpy`` or ``torch``).

    A least-squares term with a fixed design, a periodic term in ``M`` and a
    coupling between ``w`` and ``M``: nonconvex, bounded below, with O(1)
    gradients, so each framework's gradients depend on its own parameters.
    """
    residual = data["X"] @ w - data["y"]
    return (
        0.5 * xp.mean(residual * residual)
        + xp.sum(data["C"] * xp.sin(M))
        + 0.05 * xp.sum(M * M)
        + 0.05 * xp.sum(w * w) * xp.mean(xp.cos(M))
    )


@dataclasses.dataclass(frozen=True)
class Case:
    """One ``torch.optim`` optimizer and its settings (torch's names).

    ``lr_decay`` makes the learning rate ``lr * lr_decay**t`` on the step with
    index ``t = 0, 1, ...``: torch gets it written into ``param_groups`` before
    each step, adamjax gets ``optax.exponential_decay(lr, 1, lr_decay)``, which
    optax calls with 0 on the first step.
    """

    name: str
    optimizer: str  # "Adam", "AdamW" or "Adamax"
    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    lr_decay: float | None = None
    steps: int = 60

    def lr_at(self, t: int) -> float:
        return self.lr if self.lr_decay is None else self.lr * self.lr_decay**t

    @property
    def state_keys(self) -> tuple[str, ...]:
        if self.optimizer == "Adamax":
            return ("exp_avg", "exp_inf")
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if self.amsgrad else ("exp_avg", "exp_avg_sq")


PARITY_CASES: tuple[Case, ...] = (
    Case("adam", "Adam", lr=0.05),
    Case("adam_hyper", "Adam", lr=0.02, b1=0.8, b2=0.95, eps=1e-3),
    Case("adam_l2", "Adam", lr=0.03, weight_decay=0.1),
    Case("adam_l2_hyper", "Adam", lr=0.05, b1=0.5, b2=0.9, eps=1e-6, weight_decay=0.5),
    Case("adam_lr_decay", "Adam", lr=0.1, lr_decay=0.95),
    Case("adamw", "AdamW", lr=0.05, weight_decay=0.01),
    Case("adamw_hyper", "AdamW", lr=0.05, b1=0.7, b2=0.99, eps=1e-4, weight_decay=0.3),
    Case("adamw_lr_decay", "AdamW", lr=0.1, weight_decay=0.2, lr_decay=0.95),
    Case("amsgrad", "Adam", lr=0.05, amsgrad=True),
    Case("amsgrad_hyper", "Adam", lr=0.03, b1=0.6, b2=0.9, eps=1e-5, weight_decay=0.05, amsgrad=True),
    Case("adamax", "Adamax", lr=0.05),
    Case("adamax_hyper", "Adamax", lr=0.02, b1=0.8, b2=0.95, eps=1e-3, weight_decay=0.1),
)
CASES_BY_NAME = {case.name: case for case in PARITY_CASES}


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A torch run, per step.

    Attributes:
      params: ``name -> (steps + 1, *shape)``; row ``t`` is after ``t`` steps.
      state: ``torch state key -> name -> (steps, *shape)``; row ``t`` is after
        step ``t + 1``.
      lr: ``(steps,)``, the learning rate used at each step.
    """

    params: dict[str, np.ndarray]
    state: dict[str, dict[str, np.ndarray]]
    lr: np.ndarray

    def flat(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}/params/{name}": value for name, value in self.params.items()}
        for key, per_param in self.state.items():
            out.update({f"{prefix}/{key}/{name}": value for name, value in per_param.items()})
        out[f"{prefix}/lr"] = self.lr
        return out


@_one_thread()
def _run_torch_case(case: Case) -> Trajectory:
    data = {key: torch.tensor(value, dtype=torch.float64) for key, value in problem_data().items()}
    params = [data["w0"].clone().requires_grad_(True), data["M0"].clone().requires_grad_(True)]
    kwargs: dict[str, Any] = dict(lr=case.lr, betas=(case.b1, case.b2), eps=case.eps, weight_decay=case.weight_decay)
    if case.optimizer != "Adamax":
        kwargs["amsgrad"] = case.amsgrad
    optimizer = getattr(torch.optim, case.optimizer)(params, foreach=False, **kwargs)

    param_rows = [[p.detach().numpy().copy() for p in params]]
    state_rows: list[dict[str, list[np.ndarray]]] = []
    lrs = []
    for t in range(case.steps):
        for group in optimizer.param_groups:
            group["lr"] = case.lr_at(t)
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        objective(params[0], params[1], data, torch).backward()
        optimizer.step()
        param_rows.append([p.detach().numpy().copy() for p in params])
        state_rows.append({key: [optimizer.state[p][key].numpy().copy() for p in params] for key in case.state_keys})

    return Trajectory(
        params={name: np.stack([row[i] for row in param_rows]) for i, name in enumerate(PARAM_NAMES)},
        state={
            key: {name: np.stack([row[key][i] for row in state_rows]) for i, name in enumerate(PARAM_NAMES)}
            for key in case.state_keys
        },
        lr=np.asarray(lrs, dtype=np.float64),
    )


# --------------------------------------------------------------------------
# Seed 001: the notebook's MLP, N, D_in, H, D_out = 64, 1000, 100, 10.
# --------------------------------------------------------------------------

MLP_SIZES = (64, 1000, 100, 10)
MLP_LR = 1e-4
MLP_STEPS = 500
MLP_TORCH_SEED = 0  # torch.manual_seed for nn.Linear's initialisation
MLP_DATA_SEED = 1  # NumPy RandomState for x and y
MLP_WEIGHT_NAMES = ("W1", "b1", "W2", "b2")


@functools.cache
def mlp_data() -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, D_in) and ``y`` (N, D_out), float64, regenerated from a fixed NumPy seed."""
    n, d_in, _, d_out = MLP_SIZES
    rng = np.random.RandomState(MLP_DATA_SEED)
    return rng.standard_normal((n, d_in)), rng.standard_normal((n, d_out))


def _torch_mlp_weights() -> dict[str, np.ndarray]:
    """nn.Linear's default init in float32 (as the notebook), torch layout ``[out, in]``."""
    _, d_in, hidden, d_out = MLP_SIZES
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MLP_TORCH_SEED)
        first = torch.nn.Linear(d_in, hidden, dtype=torch.float32)
        second = torch.nn.Linear(hidden, d_out, dtype=torch.float32)
    tensors = (first.weight, first.bias, second.weight, second.bias)
    return {name: t.detach().numpy().copy() for name, t in zip(MLP_WEIGHT_NAMES, tensors, strict=True)}


@_one_thread()
def _run_torch_mlp(weights: dict[str, np.ndarray]) -> np.ndarray:
    """The notebook's loop in float64: the loss before each of the 500 steps."""
    _, d_in, hidden, d_out = MLP_SIZES
    model = torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden, dtype=torch.float64),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, d_out, dtype=torch.float64),
    )
    with torch.no_grad():
        for tensor, name in zip(
            (model[0].weight, model[0].bias, model[2].weight, model[2].bias), MLP_WEIGHT_NAMES, strict=True
        ):
            tensor.copy_(torch.from_numpy(weights[name].astype(np.float64)))
    x, y = (torch.from_numpy(a) for a in mlp_data())
    loss_fn = torch.nn.MSELoss(reduction="sum")
    optimizer = torch.optim.Adam(model.parameters(), lr=MLP_LR, foreach=False)
    losses = []
    for _ in range(MLP_STEPS):
        loss = loss_fn(model(x), y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return np.asarray(losses, dtype=np.float64)


# --------------------------------------------------------------------------
# Live-or-recorded access, with the honesty check.
# --------------------------------------------------------------------------


@functools.cache
def _recorded(path: pathlib.Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise StaleReferenceError(f"{path} is missing; regenerate it with `{REGENERATE}` (needs torch==2.13.0).")
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def _recorded_entries(path: pathlib.Path, keys: list[str]) -> dict[str, np.ndarray]:
    recorded = _recorded(path)
    missing = [key for key in keys if key not in recorded]
    if missing:
        raise StaleReferenceError(f"{path.name} lacks {missing}; regenerate it with `{REGENERATE}`.")
    return {key: recorded[key] for key in keys}


def _check_honest(path: pathlib.Path, live: dict[str, np.ndarray], *, exact: bool = False) -> None:
    """Raises :class:`StaleReferenceError` unless the recorded entries equal the live ones."""
    recorded = _recorded_entries(path, list(live))
    for key, value in live.items():
        stored = recorded[key]
        same = stored.shape == value.shape and stored.dtype == value.dtype
        if same:
            same = (
                np.array_equal(stored, value)
                if exact
                else np.allclose(stored, value, rtol=HONESTY_RTOL, atol=HONESTY_ATOL)
            )
        if not same:
            diff = np.max(np.abs(stored - value)) if stored.shape == value.shape else "shape differs"
            raise StaleReferenceError(
                f"{path.name}[{key!r}] disagrees with live torch {torch.__version__} "
                f"(max abs diff {diff}); regenerate it with `{REGENERATE}`."
            )


def _unflatten(case: Case, flat: dict[str, np.ndarray]) -> Trajectory:
    prefix = case.name
    return Trajectory(
        params={name: flat[f"{prefix}/params/{name}"] for name in PARAM_NAMES},
        state={key: {name: flat[f"{prefix}/{key}/{name}"] for name in PARAM_NAMES} for key in case.state_keys},
        lr=flat[f"{prefix}/lr"],
    )


def _expected_keys(case: Case) -> list[str]:
    keys = [f"{case.name}/params/{name}" for name in PARAM_NAMES]
    keys += [f"{case.name}/{key}/{name}" for key in case.state_keys for name in PARAM_NAMES]
    return [*keys, f"{case.name}/lr"]


def _live_or_recorded(path: pathlib.Path, keys: list[str], run: Callable[[], dict[str, np.ndarray]], exact: bool):
    if torch is None:
        return _recorded_entries(path, keys)
    live = run()
    _check_honest(path, live, exact=exact)
    return live


@functools.cache
def torch_trajectory(name: str) -> Trajectory:
    """The torch run of ``PARITY_CASES`` entry ``name`` (live, or recorded)."""
    case = CASES_BY_NAME[name]
    flat = _live_or_recorded(PARITY_FILE, _expected_keys(case), lambda: _run_torch_case(case).flat(name), exact=False)
    return _unflatten(case, flat)


@functools.cache
def mlp_initial_weights() -> dict[str, np.ndarray]:
    """float32 ``W1 (H, D_in), b1, W2 (D_out, H), b2`` from ``nn.Linear``'s init (torch layout)."""
    keys = [f"init/{name}" for name in MLP_WEIGHT_NAMES]
    flat = _live_or_recorded(
        MLP_FILE, keys, lambda: {f"init/{k}": v for k, v in _torch_mlp_weights().items()}, exact=True
    )
    return {name: flat[f"init/{name}"] for name in MLP_WEIGHT_NAMES}


@functools.cache
def mlp_torch_losses() -> np.ndarray:
    """``torch.optim.Adam``'s float64 losses before each of the 500 steps (live, or recorded)."""
    weights = mlp_initial_weights()
    flat = _live_or_recorded(MLP_FILE, ["losses"], lambda: {"losses": _run_torch_mlp(weights)}, exact=False)
    return flat["losses"]


def record_all() -> dict[pathlib.Path, dict[str, np.ndarray]]:
    """Every recorded entry, computed live with torch (used by the regeneration script)."""
    if torch is None:
        raise RuntimeError("recording needs torch (and ADAMJAX_NO_TORCH unset).")
    parity: dict[str, np.ndarray] = {}
    for case in PARITY_CASES:
        parity.update(_run_torch_case(case).flat(case.name))
    weights = _torch_mlp_weights()
    mlp = {f"init/{name}": value for name, value in weights.items()}
    mlp["losses"] = _run_torch_mlp(weights)
    return {PARITY_FILE: parity, MLP_FILE: mlp}
