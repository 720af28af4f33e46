"""A two-layer MLP trained with adamjax through both APIs, as PyTorch's Adam would train it.

Run: ``pip install "adamjax[examples]" && python examples/mlp_both_apis.py``

The network and settings are those of the "Understanding Adam" notebook, which
explains ``torch.optim.Adam`` (see docs/references.md): N, D_in, H, D_out = 64,
1000, 100, 10; Linear -> ReLU -> Linear; summed squared error; Adam with lr
1e-4 for 500 steps. The weights start as ``torch.nn.Linear`` would draw them
(uniform in +-1/sqrt(fan_in)). The loss is printed at steps 99, 199, ..., 499,
as the notebook does; it falls by about six orders of magnitude. The progress
bars (tqdm) show the rate, the time left and the loss.
``tests/test_mlp_against_torch.py`` checks the same training step by step against
``torch.optim.Adam`` from identical weights.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from tqdm import tqdm

import adamjax
from adamjax import optimizers

N, D_IN, H, D_OUT = 64, 1000, 100, 10
LEARNING_RATE = 1e-4
STEPS = 500


def init_params(key: jax.Array) -> dict[str, jax.Array]:
    """``torch.nn.Linear``'s default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    bound1, bound2 = 1 / D_IN**0.5, 1 / H**0.5
    uniform = jax.random.uniform
    return {
        "w1": uniform(k1, (D_IN, H), jnp.float32, -bound1, bound1),
        "b1": uniform(k2, (H,), jnp.float32, -bound1, bound1),
        "w2": uniform(k3, (H, D_OUT), jnp.float32, -bound2, bound2),
        "b2": uniform(k4, (D_OUT,), jnp.float32, -bound2, bound2),
    }


def loss_fn(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
    prediction = hidden @ params["w2"] + params["b2"]
    return jnp.sum((prediction - y) ** 2)


def train_transformation(params, x, y, steps: int = STEPS) -> list[float]:
    tx = adamjax.adam(LEARNING_RATE)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    with tqdm(range(steps), desc="adamjax.adam", unit="step") as bar:
        for _ in bar:
            params, state, loss = step(params, state)
            losses.append(float(loss))
            bar.set_postfix(loss=f"{losses[-1]:.3g}", refresh=False)
    return losses


def train_triple(params, x, y, steps: int = STEPS) -> list[float]:
    init, update, get_params = optimizers.adam(LEARNING_RATE)
    opt_state = init(params)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    losses = []
    with tqdm(range(steps), desc="adamjax.optimizers.adam", unit="step") as bar:
        for i in bar:
            loss, grads = value_and_grad(get_params(opt_state), x, y)
            opt_state = update(i, grads, opt_state)
            losses.append(float(loss))
            bar.set_postfix(loss=f"{losses[-1]:.3g}", refresh=False)
    return losses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=STEPS, help="Adam steps for each API")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be a positive integer; got {args.steps}")
    kx, ky, kp = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (N, D_IN), jnp.float32)
    y = jax.random.normal(ky, (N, D_OUT), jnp.float32)
    params = init_params(kp)
    tx_losses = train_transformation(params, x, y, args.steps)
    triple_losses = train_triple(params, x, y, args.steps)
    print("step   adamjax.adam (optax API)   adamjax.optimizers.adam (triple API)")
    for t in sorted({*range(99, args.steps, 100), args.steps - 1}):
        print(f"{t:4d}   {tx_losses[t]:24.6g}   {triple_losses[t]:24.6g}")


if __name__ == "__main__":
    main()
