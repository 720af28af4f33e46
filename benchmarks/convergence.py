"""Convergence of Adam with low-precision moments and weights, on three problems.

Run: ``python benchmarks/convergence.py`` (a few minutes on two CPU cores;
``--quick`` for a smoke run). It prints one table per problem and draws
``docs/figures/convergence.png``.

Rows: float32 Adam; moments stored in bfloat16; moments quantized blockwise
to 8 and 4 bits; bfloat16 weights updated with round-to-nearest, stochastic
rounding or Kahan summation (float32 moments); bfloat16 weights with
stochastic rounding and 8-bit moments. In every row the arithmetic of a step
is float32; only what is stored between steps changes.

Problems: (a) the two-layer MLP (N, D_in, H, D_out = 64, 1000, 100, 10, summed
squared error, lr 1e-4, 500 steps, random data from a fixed key); (b) a
two-layer character-level transformer language model (d = 64) on text this
script generates from a small grammar; (c) a three-layer classifier on
scikit-learn's handwritten digits (1,797 8x8 images).

Columns: the final loss and its change against float32 Adam; the mean over
the run of ``log10(loss / float32 loss)`` (the curve-wise gap, in orders of
magnitude; 0 is identical); bytes per parameter of weights + optimizer state
for this model and for one large 4096 x 4096 matrix.

References:
  Tim Dettmers, Mike Lewis, Sam Shleifer, Luke Zettlemoyer, "8-bit Optimizers
  via Block-wise Quantization", ICLR 2022.
  Bingrui Li, Jianfei Chen, Jun Zhu, "Memory Efficient Optimizers with 4-bit
  States", NeurIPS 2023.
  Pedram Zamirai, Jian Zhang, Christopher R. Aberger, Christopher De Sa,
  "Revisiting BFloat16 Training", 2020.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from adamjax._quantize import (  # noqa: E402
    QuantizedArray,
    bytes_per_element,
    dequantize,
    quantize_like,
    should_quantize,
    zeros,
)
from adamjax._rounding import rounded_update  # noqa: E402

FIGURE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "figures" / "convergence.png"

# ---------------------------------------------------------------- the optimizer under test


class LowPrecisionAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    compensation: Any  # Kahan buffers (the weights' dtype), or None per leaf


def low_precision_adam(
    learning_rate: float,
    *,
    moments: str | int = "float32",
    rounding: str | None = None,
    seed: int = 0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Adam whose moments are stored as ``moments`` and whose 16-bit weights round with ``rounding``.

    ``moments``: ``"float32"``, ``"bfloat16"``, ``8`` or ``4`` (blockwise
    quantized; arrays under 4,096 elements keep float32). ``rounding``:
    ``None`` for float32 weights, else ``"nearest"``, ``"stochastic"`` or
    ``"kahan"`` for bfloat16 weights; the returned updates land exactly on the
    rounded weights through ``optax.apply_updates``.
    """

    def store(value: jax.Array, like: Any) -> Any:
        if isinstance(like, QuantizedArray):
            return quantize_like(value, like)
        return value.astype(like.dtype)

    def load(stored: Any) -> jax.Array:
        return dequantize(stored) if isinstance(stored, QuantizedArray) else stored.astype(jnp.float32)

    def empty(param: jax.Array, signed: bool) -> Any:
        if moments in (8, 4) and should_quantize(param):
            return zeros(param.shape, bits=moments, signed=signed)
        dtype = jnp.bfloat16 if moments == "bfloat16" else jnp.float32
        return jnp.zeros(param.shape, dtype)

    def init(params):
        mu = jax.tree.map(lambda p: empty(p, True), params)
        nu = jax.tree.map(lambda p: empty(p, False), params)
        compensation = jax.tree.map(lambda p: jnp.zeros_like(p) if rounding == "kahan" else None, params)
        return LowPrecisionAdamState(jnp.zeros([], jnp.int32), mu, nu, compensation)

    def update(grads, state, params):
        count = state.count + 1
        bias1 = 1 - jnp.float32(b1) ** count.astype(jnp.float32)
        bias2 = 1 - jnp.float32(b2) ** count.astype(jnp.float32)
        is_stored = lambda x: isinstance(x, QuantizedArray)  # noqa: E731
        leaves_g, treedef = jax.tree.flatten(grads)
        leaves_p = treedef.flatten_up_to(params)
        leaves_mu = jax.tree.leaves(state.mu, is_leaf=is_stored)
        leaves_nu = jax.tree.leaves(state.nu, is_leaf=is_stored)
        leaves_c = treedef.flatten_up_to(state.compensation)
        out_u, out_mu, out_nu, out_c = [], [], [], []
        for index, (g, p, mu, nu, c) in enumerate(zip(leaves_g, leaves_p, leaves_mu, leaves_nu, leaves_c, strict=True)):
            g = g.astype(jnp.float32)
            m = b1 * load(mu) + (1 - b1) * g
            v = b2 * load(nu) + (1 - b2) * g * g
            step = -learning_rate * (m / bias1) / (jnp.sqrt(v / bias2) + eps)
            if rounding is None:
                u, c = step.astype(p.dtype), None
            else:
                key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), count), index)
                u, new_c = rounded_update(p, step, rounding=rounding, key=key, compensation=c)
                c = new_c if rounding == "kahan" else None
            out_u.append(u)
            out_mu.append(store(m, mu))
            out_nu.append(store(v, nu))
            out_c.append(c)
        unflatten = lambda leaves: jax.tree.unflatten(treedef, leaves)  # noqa: E731
        state = LowPrecisionAdamState(count, unflatten(out_mu), unflatten(out_nu), unflatten(out_c))
        return unflatten(out_u), state

    return optax.GradientTransformation(init, update)


class Row(NamedTuple):
    name: str
    weights: Any  # the weights' dtype
    make: Callable[[float], optax.GradientTransformation]
    large_bytes: float  # weights + state bytes per parameter of a 4096 x 4096 matrix


LARGE = (4096, 4096)
_Q8 = 2 * bytes_per_element(LARGE, bits=8)
_Q4 = 2 * bytes_per_element(LARGE, bits=4)

# One line per row: the optimizer each row trains with.
ROWS = [
    Row("float32 Adam", jnp.float32, lambda lr: low_precision_adam(lr), 4 + 8),
    Row("bf16 moments", jnp.float32, lambda lr: low_precision_adam(lr, moments="bfloat16"), 4 + 4),
    Row("8-bit moments", jnp.float32, lambda lr: low_precision_adam(lr, moments=8), 4 + _Q8),
    Row("4-bit moments", jnp.float32, lambda lr: low_precision_adam(lr, moments=4), 4 + _Q4),
    Row("bf16 weights, nearest", jnp.bfloat16, lambda lr: low_precision_adam(lr, rounding="nearest"), 2 + 8),
    Row("bf16 weights, stochastic", jnp.bfloat16, lambda lr: low_precision_adam(lr, rounding="stochastic"), 2 + 8),
    Row("bf16 weights, Kahan", jnp.bfloat16, lambda lr: low_precision_adam(lr, rounding="kahan"), 2 + 8 + 2),
    Row(
        "bf16 weights (stoch.) + 8-bit",
        jnp.bfloat16,
        lambda lr: low_precision_adam(lr, moments=8, rounding="stochastic"),
        2 + _Q8,
    ),
]


def bytes_per_parameter(params: Any, state: LowPrecisionAdamState) -> float:
    """Weights plus moments plus Kahan buffers, over the number of parameters."""
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    held = sum(x.nbytes for x in jax.tree.leaves((params, state.mu, state.nu, state.compensation)))
    return held / count


# ---------------------------------------------------------------- training


class Problem(NamedTuple):
    name: str
    params: Any  # float32 initial weights
    loss: Callable[[Any, jax.Array], jax.Array]  # (float32 params, step) -> loss
    learning_rate: float
    steps: int
    evaluate: Callable[[Any], str] | None = None


def train(problem: Problem, row: Row) -> tuple[np.ndarray, float, Any]:
    tx = row.make(problem.learning_rate)
    params = jax.tree.map(lambda p: p.astype(row.weights), problem.params)
    state = tx.init(params)
    footprint = bytes_per_parameter(params, state)

    def step(carry, index):
        params, state = carry
        as_float32 = jax.tree.map(lambda p: p.astype(jnp.float32), params)
        loss, grads = jax.value_and_grad(problem.loss)(as_float32, index)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    run = jax.jit(lambda carry: jax.lax.scan(step, carry, jnp.arange(problem.steps)))
    (params, _), losses = run((params, state))
    return np.asarray(losses, np.float64), footprint, params


# ---------------------------------------------------------------- (a) the MLP


def mlp_problem(steps: int) -> Problem:
    n, d_in, hidden, d_out = 64, 1000, 100, 10
    kx, ky, kp = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (n, d_in), jnp.float32)
    y = jax.random.normal(ky, (n, d_out), jnp.float32)
    k1, k2, k3, k4 = jax.random.split(kp, 4)
    b1, b2 = 1 / d_in**0.5, 1 / hidden**0.5
    params = {
        "w1": jax.random.uniform(k1, (d_in, hidden), jnp.float32, -b1, b1),
        "b1": jax.random.uniform(k2, (hidden,), jnp.float32, -b1, b1),
        "w2": jax.random.uniform(k3, (hidden, d_out), jnp.float32, -b2, b2),
        "b2": jax.random.uniform(k4, (d_out,), jnp.float32, -b2, b2),
    }

    def loss(p, _):
        prediction = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        return jnp.sum((prediction - y) ** 2)

    return Problem("(a) MLP 64-1000-100-10, sum-MSE, lr 1e-4", params, loss, 1e-4, steps)


# ---------------------------------------------------------------- (b) a character-level transformer


def generated_text(characters: int) -> str:
    """Sentences from a small grammar, drawn with a fixed NumPy generator."""
    rng = np.random.default_rng(1)
    subjects = ["the cat", "a dog", "the old man", "my sister", "the bird", "a child", "the teacher"]
    verbs = ["sees", "likes", "finds", "paints", "follows", "carries", "hears"]
    objects = ["the red ball", "a small house", "the river", "an apple", "the green tree", "a letter"]
    endings = [".", " today.", " again.", " in the morning.", " near the hill."]
    parts = []
    while sum(map(len, parts)) < characters:
        parts.append(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(endings)} ")
    return "".join(parts)[:characters]


def transformer_problem(steps: int) -> Problem:
    text = generated_text(60_000)
    vocabulary = sorted(set(text))
    tokens = jnp.asarray([vocabulary.index(c) for c in text], jnp.int32)
    vocab, d, heads, layers, context, batch = len(vocabulary), 64, 4, 2, 32, 16
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 64))

    def dense(fan_in, fan_out):
        return jax.random.normal(next(keys), (fan_in, fan_out), jnp.float32) / math.sqrt(fan_in)

    params = {"embed": jax.random.normal(next(keys), (vocab, d), jnp.float32) * 0.1}
    params["position"] = jax.random.normal(next(keys), (context, d), jnp.float32) * 0.1
    # The layers are stacked on a leading axis and run by lax.scan: one copy of a layer to compile.
    params["layers"] = {
        "norm1": jnp.ones((layers, d), jnp.float32),
        "qkv": jnp.stack([dense(d, 3 * d) for _ in range(layers)]),
        "out": jnp.stack([dense(d, d) for _ in range(layers)]),
        "norm2": jnp.ones((layers, d), jnp.float32),
        "up": jnp.stack([dense(d, 4 * d) for _ in range(layers)]),
        "down": jnp.stack([dense(4 * d, d) for _ in range(layers)]),
    }
    params["final_norm"] = jnp.ones(d, jnp.float32)
    params["unembed"] = dense(d, vocab)

    def norm(x, scale):
        x = x - x.mean(-1, keepdims=True)
        return x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + 1e-5) * scale

    mask = jnp.tril(jnp.ones((context, context), bool))

    def block(x, layer):
        q, k, v = jnp.split(norm(x, layer["norm1"]) @ layer["qkv"], 3, axis=-1)
        split = lambda t: t.reshape(t.shape[0], context, heads, d // heads)  # noqa: E731
        scores = jnp.einsum("bqhc,bkhc->bhqk", split(q), split(k)) / math.sqrt(d // heads)
        weights = jax.nn.softmax(jnp.where(mask, scores, -1e9), axis=-1)
        attended = jnp.einsum("bhqk,bkhc->bqhc", weights, split(v)).reshape(x.shape)
        x = x + attended @ layer["out"]
        return x + jax.nn.gelu(norm(x, layer["norm2"]) @ layer["up"]) @ layer["down"], None

    def forward(p, window):
        x, _ = jax.lax.scan(block, p["embed"][window] + p["position"], p["layers"])
        return norm(x, p["final_norm"]) @ p["unembed"]

    def loss(p, index):
        starts = jax.random.randint(
            jax.random.fold_in(jax.random.PRNGKey(2), index), (batch,), 0, tokens.size - context - 1
        )
        windows = jax.vmap(lambda s: jax.lax.dynamic_slice(tokens, (s,), (context + 1,)))(starts)
        logits = forward(p, windows[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:]).mean()

    return Problem(f"(b) char transformer, 2 layers, d=64, vocab {vocab}, lr 3e-3", params, loss, 3e-3, steps)


# ---------------------------------------------------------------- (c) digits


def digits_problem(steps: int) -> Problem:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    features = (digits.data[order] / 16.0).astype(np.float32)
    labels = digits.target[order].astype(np.int32)
    split = 1437
    x_train, y_train = jnp.asarray(features[:split]), jnp.asarray(labels[:split])
    x_test, y_test = jnp.asarray(features[split:]), jnp.asarray(labels[split:])
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    sizes = [(64, 128), (128, 128), (128, 10)]
    params = {
        f"w{i}": jax.random.normal(k, s, jnp.float32) * math.sqrt(2 / s[0])
        for i, (k, s) in enumerate(zip(keys, sizes, strict=True))
    }
    params.update({f"b{i}": jnp.zeros(s[1], jnp.float32) for i, s in enumerate(sizes)})

    def logits(p, x):
        h = jax.nn.relu(x @ p["w0"] + p["b0"])
        h = jax.nn.relu(h @ p["w1"] + p["b1"])
        return h @ p["w2"] + p["b2"]

    def loss(p, _):
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, x_train), y_train).mean()

    def evaluate(p):
        p = jax.tree.map(lambda a: a.astype(jnp.float32), p)
        return f"test acc {float(jnp.mean(jnp.argmax(logits(p, x_test), -1) == y_test)):.3f}"

    return Problem("(c) sklearn digits, MLP 64-128-128-10, cross-entropy, lr 1e-3", params, loss, 1e-3, steps, evaluate)


# ---------------------------------------------------------------- report


def final_loss(losses: np.ndarray) -> float:
    """The last step's loss, or the mean of the last 10% for noisy minibatch losses."""
    return float(np.mean(losses[-max(1, losses.size // 10) :]))


def report(problem: Problem, results: dict[str, tuple[np.ndarray, float, Any]], smooth: bool) -> None:
    reference = results[ROWS[0].name][0]
    ref_final = final_loss(reference) if smooth else float(reference[-1])
    print(f"\n{problem.name}; {problem.steps} steps")
    extra = "  evaluation" if problem.evaluate else ""
    print(
        f"{'row':32s} {'final loss':>11s} {'vs fp32':>9s} {'curve gap':>10s} {'B/param':>8s} {'B/param 4096^2':>15s}{extra}"
    )
    for row in ROWS:
        losses, footprint, params = results[row.name]
        final = final_loss(losses) if smooth else float(losses[-1])
        gap = float(np.mean(np.log10(np.maximum(losses, 1e-30) / np.maximum(reference, 1e-30))))
        change = 100 * (final / ref_final - 1)
        evaluation = f"  {problem.evaluate(params)}" if problem.evaluate else ""
        print(
            f"{row.name:32s} {final:11.4g} {change:+8.2f}% {gap:+10.4f} {footprint:8.2f} {row.large_bytes:15.2f}{evaluation}"
        )


def draw(panels: list[tuple[Problem, dict[str, tuple[np.ndarray, float, Any]]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8))
    styles = ["-", "--", "-.", ":", "-", "--", "-.", ":"]
    colors = ["black", "tab:blue", "tab:green", "tab:olive", "tab:red", "tab:orange", "tab:purple", "tab:cyan"]
    for axis, (problem, results) in zip(np.atleast_1d(axes), panels, strict=True):
        for row, style, color in zip(ROWS, styles, colors, strict=True):
            losses = results[row.name][0]
            if losses.size > 100:  # minibatch losses: a running mean over 1/50 of the run
                width = max(1, losses.size // 50)
                losses = np.convolve(losses, np.ones(width) / width, mode="valid")
            axis.plot(losses, style, color=color, label=row.name, linewidth=1.4 if row is ROWS[0] else 1.1)
        axis.set_yscale("log")
        axis.set_title(problem.name, fontsize=9)
        axis.set_xlabel("step")
        axis.set_ylabel("training loss")
        axis.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("Adam with low-precision moments and weights (float32 arithmetic in every step)")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=120)
    print(f"\nwrote {FIGURE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps per problem (a smoke run)")
    args = parser.parse_args()
    scale = 0.05 if args.quick else 1.0
    problems = [
        (mlp_problem(int(500 * scale)), False),
        (transformer_problem(int(400 * scale)), True),
        (digits_problem(int(300 * scale)), False),
    ]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    panels = []
    for problem, smooth in problems:
        started = time.perf_counter()
        results = {row.name: train(problem, row) for row in ROWS}
        report(problem, results, smooth)
        print(f"({time.perf_counter() - started:.0f} s)")
        panels.append((problem, results))
    draw(panels)


if __name__ == "__main__":
    main()
