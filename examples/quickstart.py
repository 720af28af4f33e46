"""adamjax in one minute: train a small MLP with both APIs and print progress.

Run: ``python examples/quickstart.py``

1. The transformation API: ``adamjax.adamw`` inside ``optax.chain`` with
   optax's gradient clipping and a warm-up cosine schedule, in a jitted step.
2. The triple API: ``adamjax.optimizers.adam``, a drop-in for
   ``jax.example_libraries.optimizers``, called from a plain Python loop (its
   update is compiled once for you).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import adamjax
from adamjax import optimizers


def make_data(key: jax.Array, n: int = 256, d_in: int = 8) -> tuple[jax.Array, jax.Array]:
    """A smooth nonlinear regression target, y = sin(x @ w) + 0.1 * noise."""
    kx, kw, kn = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, d_in), jnp.float32)
    w = jax.random.normal(kw, (d_in, 1), jnp.float32)
    y = jnp.sin(x @ w) + 0.1 * jax.random.normal(kn, (n, 1), jnp.float32)
    return x, y


def init_mlp(key: jax.Array, sizes: tuple[int, ...] = (8, 64, 64, 1)) -> list[dict[str, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (m, n), jnp.float32) * jnp.sqrt(jnp.float32(2.0 / m)),
            "b": jnp.zeros((n,), jnp.float32),
        }
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params: list[dict[str, jax.Array]], x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((mlp(params, x) - y) ** 2)


def train_with_transformation(params, x, y, steps: int = 600) -> None:
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=50, decay_steps=steps)
    tx = optax.chain(optax.clip_by_global_norm(1.0), adamjax.adamw(schedule, weight_decay=1e-4))
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    start = time.perf_counter()
    for i in range(steps):
        params, state, loss = step(params, state)
        if i % 100 == 0 or i == steps - 1:
            print(f"  [optax.chain + adamjax.adamw] step {i:4d}  loss {float(loss):.5f}")
    print(f"  {steps} steps in {time.perf_counter() - start:.2f} s (compile included)")


def train_with_triple(params, x, y, steps: int = 600) -> None:
    init, update, get_params = optimizers.adam(optimizers.exponential_decay(3e-3, 300, 0.5))
    opt_state = init(params)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    start = time.perf_counter()
    for i in range(steps):
        loss, grads = grad_fn(get_params(opt_state), x, y)
        opt_state = update(i, grads, opt_state)  # no jax.jit written by the user
        if i % 100 == 0 or i == steps - 1:
            print(f"  [adamjax.optimizers.adam triple] step {i:4d}  loss {float(loss):.5f}")
    print(f"  {steps} steps in {time.perf_counter() - start:.2f} s (compile included)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=600, help="training steps for each API")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be a positive integer; got {args.steps}")
    print(f"adamjax {adamjax.__version__} on {jax.default_backend()} ({jax.device_count()} device(s))")
    x, y = make_data(jax.random.PRNGKey(0))
    params = init_mlp(jax.random.PRNGKey(1))
    print(f"initial loss {float(loss_fn(params, x, y)):.5f}")
    train_with_transformation(params, x, y, args.steps)
    train_with_triple(params, x, y, args.steps)


if __name__ == "__main__":
    main()
