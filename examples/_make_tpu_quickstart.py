"""Writes ``examples/tpu_quickstart.ipynb`` from the cells below and executes it on this machine.

Edit the notebook here, then run ``python examples/_make_tpu_quickstart.py``: it
is committed with the outputs of a CPU run, so it shows something when browsed.
``tests/test_integration_examples.py`` checks that the committed notebook has
this script's cells and that its outputs are current (timings aside).
"""

from __future__ import annotations

from pathlib import Path

import _notebook
import nbformat
from _notebook import build_notebook

NOTEBOOK = Path(__file__).with_name("tpu_quickstart.ipynb")

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        r"""# adamjax on a TPU or GPU

A small model trained with an adamjax optimizer inside an `optax.chain`, then a learning-rate
sweep in which every learning rate trains at once, side by side, under `jax.vmap`.

On Colab choose *Runtime → Change runtime type → TPU* (or a GPU) and run all cells. Nothing
here is specific to an accelerator: the same cells run on a laptop's CPU, only slower.

The first cell installs adamjax from its repository when it is missing (`OWNER` in the URL is a
placeholder until the repository has a public address; replace it, or set `ADAMJAX` to the path
of a wheel uploaded to this runtime). Where adamjax is installed already, the cell does nothing.""",
    ),
    (
        "code",
        '''import importlib.util

# or a wheel: ADAMJAX = "/content/adamjax-0.1.0-cp312-cp312-linux_x86_64.whl"
ADAMJAX = "adamjax @ git+https://github.com/OWNER/adamjax"
if importlib.util.find_spec("adamjax") is None:
    if "OWNER" in ADAMJAX:
        raise RuntimeError("set ADAMJAX to adamjax's repository address or to an uploaded wheel's path")
    %pip install --quiet "{ADAMJAX}"''',
    ),
    (
        "code",
        """import time

import jax
import jax.numpy as jnp
import optax

import adamjax

backend = jax.default_backend()  # "tpu", "gpu" or "cpu"
print(f"adamjax {adamjax.__version__}, jax {jax.__version__}")
print(f"backend: {backend}, {jax.device_count()} device(s): {jax.devices()[0].device_kind}")
if backend == "cpu":
    print("No accelerator found; everything below runs on the CPU too, only slower.")""",
    ),
    (
        "markdown",
        r"""## A small model

A multilayer perceptron regresses $y = \sin(3\, x \cdot w)$ from 16 inputs. The optimizer is
optax's gradient clipping chained with `adamjax.adamw` under a warm-up cosine schedule.
`train(learning_rate)` runs the whole training as one `lax.scan`, compiled once: on a TPU this
keeps the loop on the device instead of returning to Python at every step.""",
    ),
    (
        "code",
        """STEPS = 300
key_x, key_w, key_init = jax.random.split(jax.random.key(0), 3)
x = jax.random.normal(key_x, (512, 16), jnp.float32)
y = jnp.sin(3 * x @ (jax.random.normal(key_w, (16, 1), jnp.float32) / 4))


def init_mlp(key, sizes=(16, 64, 64, 1)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n), jnp.float32) * (2 / m) ** 0.5, "b": jnp.zeros(n, jnp.float32)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, y):
    return jnp.mean((mlp(params, x) - y) ** 2)


def train(learning_rate, steps=STEPS):
    \"\"\"Trains from the same initial weights and returns the loss at every step.\"\"\"
    # The shape of the schedule times the (possibly traced) peak: optax's schedule makers
    # branch on their arguments in Python, so they take the peak as a plain number only.
    shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=steps // 10, decay_steps=steps)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        adamjax.adamw(lambda count: learning_rate * shape(count), weight_decay=1e-4),
    )
    params = init_mlp(key_init)

    def step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    _, losses = jax.lax.scan(step, (params, tx.init(params)), length=steps)
    return losses


start = time.perf_counter()
losses = jax.block_until_ready(jax.jit(train)(3e-3))
print(f"{STEPS} steps on {backend} in {time.perf_counter() - start:.2f} s, compilation included")
for t in (1, 10, 100, STEPS):
    print(f"step {t:4d}  loss {float(losses[t - 1]):.2e}")""",
    ),
    (
        "code",
        """%matplotlib inline
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogy(jnp.arange(1, STEPS + 1), losses)
ax.set(xlabel="step", ylabel="mean squared error", title="optax.chain(clip, adamjax.adamw), learning rate 3e-3")
ax.grid(alpha=0.3)
plt.show()""",
    ),
    (
        "markdown",
        r"""## A learning-rate sweep in one call

adamjax accepts a traced learning rate (and traced `b1`, `b2`, `eps`), so `jax.vmap(train)`
trains one model per learning rate, in parallel, in one compiled program. On a TPU or GPU the
sweep costs little more than a single run.""",
    ),
    (
        "code",
        """learning_rates = jnp.logspace(-4, 0, 9, dtype=jnp.float32)
sweep = jax.jit(jax.vmap(train))
start = time.perf_counter()
curves = jax.block_until_ready(sweep(learning_rates))
print(f"{len(learning_rates)} runs x {STEPS} steps in {time.perf_counter() - start:.2f} s, compilation included")
final = curves[:, -20:].mean(axis=1)
for learning_rate, loss in zip(learning_rates, final, strict=True):
    print(f"learning rate {float(learning_rate):.1e}  final loss {float(loss):.2e}")
best = int(jnp.argmin(final))
print(f"best learning rate: {float(learning_rates[best]):.1e}")""",
    ),
    (
        "code",
        """fig, (ax_curves, ax_final) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
colors = plt.cm.viridis(jnp.linspace(0, 1, len(learning_rates)))
for learning_rate, curve, color in zip(learning_rates, curves, colors, strict=True):
    ax_curves.semilogy(jnp.arange(1, STEPS + 1), curve, color=color, label=f"{float(learning_rate):.0e}")
ax_curves.set(xlabel="step", ylabel="mean squared error", title="loss over training, one curve per learning rate")
ax_curves.legend(title="learning rate", fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
ax_final.loglog(learning_rates, final, marker="o")
ax_final.set(xlabel="peak learning rate", ylabel="final loss", title="which learning rate trains best?")
for ax in (ax_curves, ax_final):
    ax.grid(alpha=0.3)
plt.show()""",
    ),
    (
        "markdown",
        r"""Too small a learning rate has not converged in 300 steps; from about 0.3 up, Adam's steps are
too large for this model and the loss stalls high. Next: `adamjax.save_state` / `adamjax.restore_state` checkpoint the optimizer state
with orbax, `examples/flax_nnx.py` uses adamjax with `flax.nnx.Optimizer`, and
`examples/adam_explained.ipynb` looks inside Adam's moments.""",
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs, with Colab metadata asking for an accelerator."""
    return build_notebook(CELLS, accelerator="TPU", colab={"provenance": []})


if __name__ == "__main__":
    raise SystemExit(_notebook.main(build, NOTEBOOK, __doc__.splitlines()[0]))
