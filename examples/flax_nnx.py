"""A flax (nnx) model trained with ``adamjax.nnx.Optimizer`` and an adamjax transformation.

Run: ``pip install "adamjax[examples]" && python examples/flax_nnx.py [--out figures] [--steps 400]``

An MLP learns to tell apart the two arms of a spiral. The optimizer is an
ordinary optax chain with adamjax inside. ``adamjax.nnx.Optimizer`` is
``nnx.Optimizer`` with a fused update (one native pass on the CPU instead of
``tx.update`` plus ``optax.apply_updates``), the same state and the same
arguments, so it is a one-line change::

    tx = optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(schedule, weight_decay=1e-4))
    optimizer = adamjax.nnx.Optimizer(model, tx, wrt=nnx.Param)  # or nnx.Optimizer(...)
    ...
    optimizer.update(model, grads)  # inside an nnx.jit train step

The loss and accuracy curves go to ``<out>/flax_nnx_loss.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from matplotlib.figure import Figure
from tqdm import tqdm

import adamjax
import adamjax.nnx


def two_spirals(n_per_arm: int = 256, noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on two interleaved spiral arms, labelled 0 and 1."""
    rng = np.random.default_rng(seed)
    angle = np.sqrt(rng.uniform(0.05, 1.0, n_per_arm)) * 3 * np.pi
    arm = np.stack([angle * np.cos(angle), angle * np.sin(angle)], axis=1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + noise * rng.normal(size=(2 * n_per_arm, 2))
    y = np.concatenate([np.zeros(n_per_arm), np.ones(n_per_arm)])
    return x.astype(np.float32), y.astype(np.int32)


class MLP(nnx.Module):
    def __init__(self, hidden: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(2, hidden, rngs=rngs)
        self.linear2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.linear3 = nnx.Linear(hidden, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.linear1(x))
        x = jax.nn.relu(self.linear2(x))
        return self.linear3(x)


def loss_and_accuracy(model: MLP, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, jnp.mean(jnp.argmax(logits, axis=-1) == y)


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    (loss, accuracy), grads = nnx.value_and_grad(loss_and_accuracy, has_aux=True)(model, x, y)
    optimizer.update(model, grads)
    return loss, accuracy


def plot(losses: np.ndarray, accuracies: np.ndarray, path: Path) -> None:
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_loss, ax_accuracy = fig.subplots(1, 2)
    ax_loss.semilogy(losses)
    ax_loss.set(xlabel="step", ylabel="cross-entropy", title="training loss")
    ax_accuracy.plot(accuracies)
    ax_accuracy.set(xlabel="step", ylabel="accuracy", title="training accuracy", ylim=(0.4, 1.01))
    for ax in (ax_loss, ax_accuracy):
        ax.grid(alpha=0.3)
    fig.suptitle("flax nnx MLP, optax.chain(clip, adamjax.adamw)")
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", default="figures", help="directory for the PNG file (created if missing)")
    parser.add_argument("--steps", type=int, default=400, help="training steps (full batch)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x, y = (jnp.asarray(a) for a in two_spirals())
    model = MLP(64, rngs=nnx.Rngs(0))
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=args.steps // 10, decay_steps=args.steps)
    tx = optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(schedule, weight_decay=1e-4))
    optimizer = adamjax.nnx.Optimizer(model, tx, wrt=nnx.Param)

    losses, accuracies = [], []
    with tqdm(range(args.steps), desc="flax nnx + adamjax.adamw", unit="step") as bar:
        for step in bar:
            loss, accuracy = train_step(model, optimizer, x, y)
            losses.append(loss)
            accuracies.append(accuracy)
            if step % 20 == 0 or step == args.steps - 1:  # reading the loss waits for the step
                bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
    losses, accuracies = np.asarray(jax.device_get(losses)), np.asarray(jax.device_get(accuracies))

    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, accuracy {accuracies[0]:.3f} -> {accuracies[-1]:.3f}")
    path = out / "flax_nnx_loss.png"
    plot(losses, accuracies, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
