"""Train an MLP with its parameters and Adam's state sharded FSDP-style over every device.

Runs unchanged on one CPU, on simulated CPU devices, on a GPU box and on a TPU
pod slice::

    python examples/sharded_training.py
    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu python examples/sharded_training.py
    python examples/sharded_training.py --distributed    # on every host of a pod slice or cluster

The mesh has two axes: ``"data"`` splits the batch, ``"fsdp"`` splits the batch
too and every large parameter (FSDP: each device keeps a slice of each weight
and gathers the whole weight only inside the forward and backward pass). The
parameters are replicated along ``"data"``. Adam's moments are created with
the parameters' sharding through ``adamjax.state_shardings``, so no device
ever holds a full copy of the optimizer state, and the optimizer update runs
without any communication (the script checks the compiled HLO).

``--zero1`` trains data-parallel instead: one ``"data"`` axis over every
device, the parameters replicated on it, and Adam's state split over it with
``adamjax.state_shardings(tx, params, shard_state_over="data")`` (ZeRO stage 1,
Rajbhandari et al. 2020), so each of N devices keeps 1/N of the moments; the
step then gathers the updated parameters after the gradient all-reduce.

``--axes explicit`` (the default) uses JAX's explicit sharding (``jax.set_mesh``,
shardings in the types); ``--axes auto`` uses classic automatic axes, where
``jit`` needs ``out_shardings`` to create the state sharded. With
``--distributed`` the script first calls ``jax.distributed.initialize()``, which
finds the coordinator on Cloud TPU, SLURM, Open MPI and Kubernetes.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import adamjax

SIZES = (32, 256, 256, 1)  # divisible by any power-of-two device count up to 32
GLOBAL_BATCH = 512
COLLECTIVES = re.compile(r"\b(all-gather|all-reduce|reduce-scatter|collective-permute|all-to-all)(-start)?\b")


def make_mesh(axis_type: AxisType, zero1: bool = False) -> jax.sharding.Mesh:
    """``(data, fsdp)``: across hosts x within a host, or 2 x n/2 on one host with an even device count.

    With ``zero1``, one ``data`` axis over every device.
    """
    if zero1:
        return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(axis_type,))
    devices, processes = jax.device_count(), jax.process_count()
    if processes > 1:
        shape = (processes, devices // processes)
    else:
        data = 2 if devices % 2 == 0 and devices >= 4 else 1
        shape = (data, devices // data)
    return jax.make_mesh(shape, ("data", "fsdp"), axis_types=(axis_type, axis_type))


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int) -> P:
    """Shards the first axis ``fsdp`` divides; small or indivisible arrays stay replicated."""
    for axis, size in enumerate(shape):
        if size % fsdp_size == 0 and size >= fsdp_size:
            return P(*([None] * axis), "fsdp")
    return P()


def init_mlp(key: jax.Array) -> list[dict[str, jax.Array]]:
    keys = jax.random.split(key, len(SIZES) - 1)
    return [
        {
            "w": jax.random.normal(k, (m, n), jnp.float32) * jnp.sqrt(jnp.float32(2.0 / m)),
            "b": jnp.zeros((n,), jnp.float32),
        }
        for k, m, n in zip(keys, SIZES[:-1], SIZES[1:], strict=True)
    ]


def loss_fn(params: list[dict[str, jax.Array]], x: jax.Array, y: jax.Array) -> jax.Array:
    for index, layer in enumerate(params):
        # FSDP: gather the whole layer for the matmul; its gradient is scattered back.
        w = jax.sharding.reshard(layer["w"], P())
        b = jax.sharding.reshard(layer["b"], P())
        x = x @ w + b
        if index < len(params) - 1:
            x = jax.nn.relu(x)
    return jnp.mean((x - y) ** 2)


def host_batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    """The global batch of ``step`` (every process computes the same one and keeps its rows)."""
    rng = np.random.default_rng(step)
    x = rng.normal(size=(GLOBAL_BATCH, SIZES[0])).astype(np.float32)
    y = np.sin(x[:, :1] + 0.5 * x[:, 1:2] ** 2).astype(np.float32)
    return x, y


def device_batch(step: int, sharding: NamedSharding) -> tuple[jax.Array, jax.Array]:
    x, y = host_batch(step)
    rows = GLOBAL_BATCH // jax.process_count()
    local = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    return tuple(jax.make_array_from_process_local_data(sharding, a[local]) for a in (x, y))


def bytes_on_one_device(tree: Any) -> tuple[int, int]:
    """(bytes the first local device holds, bytes of one full copy) for the arrays in ``tree``."""
    device = jax.local_devices()[0]
    leaves = jax.tree.leaves(tree)
    held = sum(shard.data.nbytes for leaf in leaves for shard in leaf.addressable_shards if shard.device == device)
    return held, sum(leaf.nbytes for leaf in leaves)


def train(
    axes: str = "explicit", steps: int = 200, log_every: int = 50, verbose: bool = True, zero1: bool = False
) -> list[float]:
    """Trains on the current devices and returns the loss of every step.

    FSDP over ``(data, fsdp)``, or with ``zero1`` data parallelism with the
    optimizer state split over ``data``.
    """
    say = print if verbose and jax.process_index() == 0 else (lambda *args, **kwargs: None)
    mesh = make_mesh(AxisType.Explicit if axes == "explicit" else AxisType.Auto, zero1)
    fsdp_size = 0 if zero1 else mesh.shape["fsdp"]
    devices = f"{jax.device_count()} {jax.devices()[0].platform} devices in {jax.process_count()} process(es)"
    say(f"{devices}; mesh {dict(mesh.shape)}, {axes} axes")

    with jax.set_mesh(mesh):
        shapes = jax.eval_shape(init_mlp, jax.random.key(0))
        param_shardings = jax.tree.map(
            lambda s: NamedSharding(mesh, P() if zero1 else fsdp_spec(s.shape, fsdp_size)), shapes
        )
        # Each device draws only its own slices of the weights.
        params = jax.jit(init_mlp, out_shardings=param_shardings)(jax.random.key(0))

        warmup = max(1, steps // 10)
        schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=warmup, decay_steps=warmup + steps)
        tx = adamjax.adamw(schedule, weight_decay=1e-4)
        state_shardings = adamjax.state_shardings(tx, params, shard_state_over="data" if zero1 else None)
        opt_state = jax.jit(tx.init, out_shardings=state_shardings)(params)
        held, full = bytes_on_one_device(opt_state)
        say(f"Adam state: {held / 1024:.1f} KiB on each device of {full / 1024:.1f} KiB in all")
        mu_spec = opt_state[0].mu[0]["w"].sharding.spec
        if zero1:
            say(f"  first layer's mu: {mu_spec}, split over data (its weight: {params[0]['w'].sharding.spec})")
        else:
            say(f"  first layer's mu: {mu_spec}, like its weight")

        # The parameters stand in for gradients: same shapes, same shardings.
        update = jax.jit(tx.update).lower(params, opt_state, params).compile()
        found = sorted({m.group(0) for m in COLLECTIVES.finditer(update.as_text())})
        say(f"collectives in the compiled optimizer update: {', '.join(found) or 'none'}")

        def train_step(params, opt_state, x, y):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        batch_sharding = NamedSharding(mesh, P("data" if zero1 else ("data", "fsdp")))
        # Parameters and state keep their layouts from step to step and are updated in place.
        train_step = jax.jit(
            train_step,
            in_shardings=(param_shardings, state_shardings, batch_sharding, batch_sharding),
            out_shardings=(param_shardings, state_shardings, NamedSharding(mesh, P())),
            donate_argnums=(0, 1),
        )
        if zero1:
            x, y = device_batch(0, batch_sharding)
            compiled = train_step.lower(params, opt_state, x, y).compile()
            found = sorted({m.group(0) for m in COLLECTIVES.finditer(compiled.as_text())})
            say(f"collectives in the compiled training step: {', '.join(found) or 'none'}")
        losses = []
        start = time.perf_counter()
        for step in range(steps):
            x, y = device_batch(step, batch_sharding)
            params, opt_state, loss = train_step(params, opt_state, x, y)
            losses.append(float(loss))
            if step % log_every == 0 or step == steps - 1:
                say(f"  step {step:4d}  loss {losses[-1]:.6f}")
        kept = all(
            new.sharding.is_equivalent_to(old, new.ndim)
            for new, old in zip(jax.tree.leaves(opt_state), jax.tree.leaves(state_shardings), strict=True)
        )
        say(f"{steps} steps in {time.perf_counter() - start:.2f} s; state kept its sharding: {kept}")
        say(f"final loss {losses[-1]:.6f} (first {losses[0]:.6f})")
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--axes", choices=("explicit", "auto"), default="explicit", help="mesh axis type")
    parser.add_argument("--steps", type=int, default=200, help="training steps")
    parser.add_argument(
        "--zero1", action="store_true", help="data parallelism, Adam's state split over the devices (ZeRO-1)"
    )
    parser.add_argument(
        "--distributed", action="store_true", help="call jax.distributed.initialize() first (multi-host)"
    )
    args = parser.parse_args(argv)
    if args.distributed:
        jax.distributed.initialize()
    train(args.axes, args.steps, zero1=args.zero1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
