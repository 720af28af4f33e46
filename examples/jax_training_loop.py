"""A plain-JAX training loop with the triple API: minibatches, epochs, a validation loss.

Run: ``pip install "adamjax[examples]" && python examples/jax_training_loop.py [--out figures] [--epochs 20]``

Code written for ``jax.example_libraries.optimizers`` runs unchanged after one
import line changes; the update is compiled once for you, so the loop below has
no ``jax.jit`` around it::

    from adamjax import optimizers      # was: from jax.example_libraries import optimizers
    init, update, get_params = optimizers.adam(optimizers.exponential_decay(1e-2, 100, 0.8))
    opt_state = init(params)
    opt_state = update(i, grads, opt_state)

A small MLP fits a noisy 1-D curve from 512 samples, in minibatches of 32
reshuffled every epoch; 128 held-out samples give the validation loss, which
the progress bar (tqdm: epochs per second, time left) shows after each epoch.
The curves go to ``<out>/jax_training_loop_loss.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from adamjax import optimizers

BATCH = 32


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """y = sin(2x) + x / 2 plus noise (variance 0.01), for x uniform in [-2, 2]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 1))
    y = np.sin(2 * x) + x / 2 + 0.1 * rng.normal(size=(n, 1))
    return x.astype(np.float32), y.astype(np.float32)


def init_params(key: jax.Array, sizes: tuple[int, ...] = (1, 64, 64, 1)) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (m, n), jnp.float32) * jnp.sqrt(jnp.float32(2.0 / m)), jnp.zeros((n,), jnp.float32))
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def predict(params: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def loss_fn(params: list[tuple[jax.Array, jax.Array]], x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((predict(params, x) - y) ** 2)


value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
validation_loss = jax.jit(loss_fn)


def plot(train: np.ndarray, validation: np.ndarray, steps_per_epoch: int, path: Path) -> None:
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(np.arange(1, len(train) + 1) / steps_per_epoch, train, alpha=0.4, label="training minibatch")
    ax.semilogy(np.arange(len(validation)), validation, marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel="mean squared error", title="MLP regression, adamjax.optimizers.adam (triple API)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", default="figures", help="directory for the PNG file (created if missing)")
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x_train, y_train = make_data(512, seed=0)
    x_valid, y_valid = make_data(128, seed=1)
    steps_per_epoch = len(x_train) // BATCH
    rng = np.random.default_rng(2)

    init, update, get_params = optimizers.adam(optimizers.exponential_decay(1e-2, 100, 0.8))
    opt_state = init(init_params(jax.random.PRNGKey(0)))

    train_losses = []
    validation_losses = [validation_loss(get_params(opt_state), x_valid, y_valid)]
    step = 0
    with tqdm(range(args.epochs), desc="adamjax.optimizers.adam", unit="epoch") as bar:
        for _ in bar:
            order = rng.permutation(len(x_train))
            for batch in np.split(order[: steps_per_epoch * BATCH], steps_per_epoch):
                loss, grads = value_and_grad(get_params(opt_state), x_train[batch], y_train[batch])
                opt_state = update(step, grads, opt_state)
                train_losses.append(loss)
                step += 1
            validation_losses.append(validation_loss(get_params(opt_state), x_valid, y_valid))
            bar.set_postfix(loss=f"{float(validation_losses[-1]):.4f}", refresh=False)
    train_losses = np.asarray(jax.device_get(train_losses))
    validation_losses = np.asarray(jax.device_get(validation_losses))

    print(f"{step} steps in {args.epochs} epochs of {steps_per_epoch} minibatches of {BATCH}")
    print(f"validation loss {validation_losses[0]:.4f} -> {validation_losses[-1]:.4f}")
    path = out / "jax_training_loop_loss.png"
    plot(train_losses, validation_losses, steps_per_epoch, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
