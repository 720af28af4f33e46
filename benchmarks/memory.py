"""Bytes of optimizer state per parameter, for every storage setting, on a transformer-like model.

Prints one Markdown table: for each setting, the state's bytes per parameter
counted from its arrays, the same figure from XLA's memory analysis of a
jitted, donated update step (its argument bytes minus gradients and
parameters), and the ratio to float32 Adam measured in the same run. Nothing
is timed. Run::

    python benchmarks/memory.py             # the default model (16.8 M parameters in 29 arrays)
    python benchmarks/memory.py --width 256 # a smaller one
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

import adamjax


def model(width: int, layers: int, vocab: int) -> dict:
    """Shapes of a small transformer: embeddings, per layer attention and MLP matrices, norms and biases."""
    params: dict = {"embed": jax.ShapeDtypeStruct((vocab, width), jnp.float32)}
    for i in range(layers):
        for name, shape in (
            ("qkv", (width, 3 * width)),
            ("out", (width, width)),
            ("up", (width, 4 * width)),
            ("down", (4 * width, width)),
            ("norm1", (width,)),
            ("norm2", (width,)),
            ("bias_up", (4 * width,)),
        ):
            params[f"layer{i}.{name}"] = jax.ShapeDtypeStruct(shape, jnp.float32)
    return params


SETTINGS = {
    "float32 Adam (optax's layout)": lambda: adamjax.adamw(1e-3),
    "bfloat16 mu": lambda: adamjax.adamw(1e-3, mu_dtype=jnp.bfloat16),
    "bfloat16 mu and nu": lambda: adamjax.adamw(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "8-bit moments (state_bits=8)": lambda: adamjax.adamw(1e-3, state_bits=8),
    "4-bit moments (state_bits=4)": lambda: adamjax.adamw(1e-3, state_bits=4),
    "Adam-mini (one nu per row)": lambda: adamjax.adam_mini(1e-3),
}


def state_bytes(tx, params) -> tuple[int, int | None]:
    """Bytes of ``tx.init(params)`` from its arrays, and from XLA's analysis of a donated update."""
    state = jax.eval_shape(tx.init, params)
    held = sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(state))
    compiled = jax.jit(tx.update, donate_argnums=(1,)).lower(params, state, params).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        return held, None
    weights = sum(math.prod(p.shape) * 4 for p in jax.tree.leaves(params))
    return held, analysis.argument_size_in_bytes - 2 * weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--width", type=int, default=512, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="transformer layers")
    parser.add_argument("--vocab", type=int, default=8192, help="embedding rows")
    args = parser.parse_args(argv)
    params = model(args.width, args.layers, args.vocab)
    count = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
    print(f"{count:,} parameters in {len(params)} arrays; jax {jax.__version__}, {jax.devices()[0].platform}\n")
    print("| state | bytes / parameter (arrays) | bytes / parameter (XLA, donated step) | vs float32 Adam |")
    print("|---|---|---|---|")
    base = None
    for name, make in SETTINGS.items():
        held, xla = state_bytes(make(), params)
        base = held if base is None else base
        xla_text = "n/a" if xla is None else f"{xla / count:.3f}"
        print(f"| {name} | {held / count:.3f} | {xla_text} | {held / base:.3f}x |")


if __name__ == "__main__":
    main()
