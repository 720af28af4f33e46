"""Does Adam train as well with 8-bit or 4-bit moments, or with bfloat16 weights? Three problems.

Run: ``python benchmarks/convergence.py`` (about two minutes on two CPU
cores; ``--quick`` for a smoke run of a few steps). It prints one table per
problem and draws ``docs/figures/convergence.png`` (``--figure`` elsewhere).

Every row is a public adamjax optimizer, stepped as a training loop steps it:
a jitted function computes the loss and its gradient with
``jax.value_and_grad``, calls ``tx.update`` and ``optax.apply_updates``. The
loss casts the weights to float32, so bfloat16 weights get bfloat16 gradients
and every step's arithmetic is float32; rows differ only in what is stored
between steps.

Rows: float32 Adam; moments stored in bfloat16; moments quantized blockwise to
8 and 4 bits (``state_bits``; arrays under 4,096 elements keep float32
moments); bfloat16 weights with round-to-nearest, stochastic rounding or Kahan
summation (float32 moments, the default for bfloat16 weights); bfloat16
weights with stochastic rounding and 8-bit moments.

Problems: (a) the two-layer MLP (N, D_in, H, D_out = 64, 1000, 100, 10, summed
squared error, lr 1e-4, 500 steps, random data from a fixed key); (b) a
two-layer character-level transformer language model (d = 64) on text this
script generates from a small grammar, minibatches of 16 windows of 32
characters; (c) a three-layer classifier on scikit-learn's handwritten digits
(1,797 8x8 images, full batch).

Columns: the final loss (the last step's; for the minibatch problem the mean
of the last 10% of steps) and its change against float32 Adam; the curve gap,
the mean over the run of ``log10(loss / float32 loss)`` (in orders of
magnitude; 0 is identical); bytes per parameter of weights + optimizer state,
summed over the arrays ``tx.init`` returns, for this model and for one
4096 x 4096 matrix (its state's shapes from ``jax.eval_shape``).

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

import adamjax  # noqa: E402

FIGURE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "figures" / "convergence.png"
LARGE = (4096, 4096)

# ---------------------------------------------------------------- the rows: public optimizers


class Row(NamedTuple):
    name: str
    weights: Any  # the weights' dtype
    code: str  # how the optimizer is built, as printed
    make: Callable[[float], optax.GradientTransformation]


BF16 = jnp.bfloat16
ROWS = [
    Row("float32 Adam", jnp.float32, "adam(lr)", lambda lr: adamjax.adam(lr)),
    Row(
        "bf16 moments",
        jnp.float32,
        "adam(lr, mu_dtype=bfloat16, nu_dtype=bfloat16)",
        lambda lr: adamjax.adam(lr, mu_dtype=BF16, nu_dtype=BF16),
    ),
    Row("8-bit moments", jnp.float32, "adam(lr, state_bits=8)", lambda lr: adamjax.adam(lr, state_bits=8)),
    Row("4-bit moments", jnp.float32, "adam(lr, state_bits=4)", lambda lr: adamjax.adam(lr, state_bits=4)),
    Row("bf16 weights, nearest", BF16, "adam(lr)", lambda lr: adamjax.adam(lr)),
    Row(
        "bf16 weights, stochastic",
        BF16,
        'adam(lr, rounding="stochastic")',
        lambda lr: adamjax.adam(lr, rounding="stochastic"),
    ),
    Row("bf16 weights, Kahan", BF16, 'adam(lr, rounding="kahan")', lambda lr: adamjax.adam(lr, rounding="kahan")),
    Row(
        "bf16 weights + 8-bit",
        BF16,
        'adam(lr, state_bits=8, rounding="stochastic")',
        lambda lr: adamjax.adam(lr, state_bits=8, rounding="stochastic"),
    ),
]


def held_bytes(tree: Any) -> int:
    """Bytes of every array in ``tree`` (arrays or ``jax.ShapeDtypeStruct``s)."""
    return sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree))


def bytes_per_parameter(params: Any, state: Any) -> float:
    """Weights plus everything in the optimizer state (moments, codes, scales, Kahan buffers, counts)."""
    count = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
    return held_bytes((params, state)) / count


def large_matrix_bytes(row: Row) -> float:
    """``bytes_per_parameter`` of one 4096 x 4096 matrix, from the state's shapes (nothing is allocated)."""
    weights = jax.ShapeDtypeStruct(LARGE, row.weights)
    return bytes_per_parameter(weights, jax.eval_shape(row.make(1e-3).init, weights))


# ---------------------------------------------------------------- training


class Problem(NamedTuple):
    name: str
    params: Any  # float32 initial weights
    loss: Callable[[Any, jax.Array], jax.Array]  # (float32 weights, step index) -> loss
    learning_rate: float
    steps: int
    minibatch: bool  # noisy losses: the final loss is the mean of the last 10% of steps
    evaluate: Callable[[Any], str] | None = None


def train(problem: Problem, row: Row) -> tuple[np.ndarray, float, Any]:
    """The losses of every step, bytes per parameter and the final weights, for one row."""
    tx = row.make(problem.learning_rate)
    params = jax.tree.map(lambda p: p.astype(row.weights), problem.params)
    state = tx.init(params)
    footprint = bytes_per_parameter(params, state)

    def loss_of(params, index):
        return problem.loss(jax.tree.map(lambda p: p.astype(jnp.float32), params), index)

    @jax.jit
    def step(params, state, index):
        loss, grads = jax.value_and_grad(loss_of)(params, index)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for index in range(problem.steps):
        params, state, loss = step(params, state, jnp.int32(index))
        losses.append(loss)
    return np.asarray(jax.device_get(losses), np.float64), footprint, params


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

    return Problem("(a) MLP 64-1000-100-10, summed squared error, lr 1e-4", params, loss, 1e-4, steps, False)


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


def transformer_problem(steps: int, *, tiny: bool = False) -> Problem:
    """The character transformer; ``tiny`` (the smoke run) shrinks it so that it compiles in a second."""
    text = generated_text(2_000 if tiny else 60_000)
    vocabulary = sorted(set(text))
    tokens = jnp.asarray([vocabulary.index(c) for c in text], jnp.int32)
    d, heads, layers, context, batch = (16, 2, 1, 8, 4) if tiny else (64, 4, 2, 32, 16)
    vocab = len(vocabulary)
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

    return Problem(
        f"(b) character transformer, {layers} layers, d={d}, vocab {vocab}, lr 3e-3", params, loss, 3e-3, steps, True
    )


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

    return Problem(
        "(c) scikit-learn digits, MLP 64-128-128-10, cross-entropy, lr 1e-3", params, loss, 1e-3, steps, False, evaluate
    )


# ---------------------------------------------------------------- report


def final_loss(problem: Problem, losses: np.ndarray) -> float:
    """The last step's loss, or the mean of the last 10% of steps for minibatch losses."""
    if problem.minibatch:
        return float(np.mean(losses[-max(1, losses.size // 10) :]))
    return float(losses[-1])


COLUMNS = ("row", "final loss", "vs float32", "curve gap", "B/param", "B/param 4096^2", "goal")
# The goals set for quantized moments: final loss within this much of float32 Adam's (either way).
GOALS = {"8-bit moments": 1.0, "4-bit moments": 3.0}


def report(problem: Problem, results: dict[str, tuple[np.ndarray, float, Any]]) -> None:
    reference = results[ROWS[0].name][0]
    reference_final = final_loss(problem, reference)
    print(f"\n{problem.name}; {problem.steps} steps")
    header = (*COLUMNS, "evaluation") if problem.evaluate else COLUMNS
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in ROWS:
        losses, footprint, params = results[row.name]
        final = final_loss(problem, losses)
        gap = float(np.mean(np.log10(np.maximum(losses, 1e-30) / np.maximum(reference, 1e-30))))
        change = 100 * (final / reference_final - 1)
        goal = GOALS.get(row.name)
        cells = [
            row.name,
            f"{final:.4g}",
            f"{change:+.2f}%",
            f"{gap:+.4f}",
            f"{footprint:.2f}",
            f"{large_matrix_bytes(row):.2f}",
            "-" if goal is None else f"within {goal:g}%: {'met' if abs(change) <= goal else 'missed'}",
        ]
        if problem.evaluate:
            cells.append(problem.evaluate(params))
        print("| " + " | ".join(cells) + " |")


# Coinciding curves stay visible: each row has its own colour, line style and marker.
_STYLES = {
    "float32 Adam": ("black", "-", None, 2.6),
    "bf16 moments": ("tab:blue", "--", "o", 1.4),
    "8-bit moments": ("tab:green", "-.", "s", 1.4),
    "4-bit moments": ("tab:olive", ":", "^", 1.8),
    "bf16 weights, nearest": ("tab:red", "-", "v", 1.2),
    "bf16 weights, stochastic": ("tab:orange", "--", "D", 1.2),
    "bf16 weights, Kahan": ("tab:purple", "-.", "P", 1.2),
    "bf16 weights + 8-bit": ("tab:cyan", ":", "X", 1.6),
}


def _smoothed(problem: Problem, losses: np.ndarray) -> np.ndarray:
    """Minibatch losses as a running mean over 1/40 of the run, so the rows can be told apart; others as they are."""
    if not problem.minibatch:
        return losses
    width = max(1, losses.size // 40)
    return np.convolve(losses, np.ones(width) / width, mode="valid")


def draw(panels: list[tuple[Problem, dict[str, tuple[np.ndarray, float, Any]]]], path: pathlib.Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    fig = Figure(figsize=(6.2 * len(panels), 9.0), layout="constrained")
    axes = fig.subplots(2, len(panels), squeeze=False, sharex="col", height_ratios=(3, 2))
    for column, (problem, results) in enumerate(panels):
        top, bottom = axes[0, column], axes[1, column]
        reference = _smoothed(problem, results[ROWS[0].name][0])
        for number, row in enumerate(ROWS):
            losses = _smoothed(problem, results[row.name][0])
            steps = np.arange(1, losses.size + 1) + (results[row.name][0].size - losses.size) // 2
            color, style, marker, width = _STYLES[row.name]
            # Markers offset from row to row, so curves that coincide still show each row.
            every = max(1, losses.size // 10)
            look = dict(linestyle=style, color=color, linewidth=width, marker=marker, markersize=5)
            look["markevery"] = (number * every // len(ROWS), every)
            top.plot(steps, losses, label=f"{row.name}: adamjax.{row.code}", **look)
            bottom.plot(steps, losses / reference, **look)
        top.set_yscale("log")
        top.set_title(problem.name, fontsize=9)
        top.set_ylabel("training loss (log scale)" + (", running mean" if problem.minibatch else ""))
        # A ratio within a factor of a few reads better on a linear axis; orders of magnitude need a log one.
        ratios = np.concatenate([line.get_ydata() for line in bottom.get_lines()])
        spread = float(np.max(ratios) / np.min(ratios))
        bottom.set_yscale("log" if spread > 10 else "linear")
        bottom.axhline(1.0, color="black", linewidth=0.8)
        bottom.set_xlabel("step")
        bottom.set_ylabel("loss / float32 Adam's loss" + (" (log scale)" if spread > 10 else ""))
        for axis in (top, bottom):
            if axis.get_yscale() == "log":
                axis.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
                axis.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 1)))
            axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(
        "Does Adam train as well with 8-bit or 4-bit moments, or with bfloat16 weights?\n"
        "Above: the training loss; below: its ratio to float32 Adam's (1 = the same; curves on 1 coincide with it)",
        fontsize=11,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a few steps per problem and a tiny transformer (a smoke run)"
    )
    parser.add_argument("--figure", type=pathlib.Path, default=FIGURE, help="where to draw the figure")
    args = parser.parse_args()
    scale = 0.04 if args.quick else 1.0
    problems = [
        mlp_problem(int(500 * scale)),
        transformer_problem(int(300 * scale), tiny=args.quick),
        digits_problem(int(300 * scale)),
    ]
    print(
        f"jax {jax.__version__}, optax {optax.__version__}, adamjax {adamjax.__version__}, on {jax.devices()[0].platform}"
    )
    print("rows (lr is each problem's learning rate; bf16 rows start from the float32 weights rounded):")
    for row in ROWS:
        print(f"  {row.name:26s} {jnp.dtype(row.weights).name} weights, adamjax.{row.code}")
    panels = []
    for problem in problems:
        started = time.perf_counter()
        results = {row.name: train(problem, row) for row in ROWS}
        report(problem, results)
        print(f"({time.perf_counter() - started:.0f} s)")
        panels.append((problem, results))
    draw(panels, args.figure)


if __name__ == "__main__":
    main()
