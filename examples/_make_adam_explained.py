"""Writes ``examples/adam_explained.ipynb`` from the cells below and executes it, so it is committed with its outputs.

Edit the notebook here, then run ``python examples/_make_adam_explained.py``
(about a minute on a CPU); ``tests/test_notebooks.py`` checks that the
committed notebook has these cells and that running it again prints the same
numbers and draws the same number of figures.
"""

from __future__ import annotations

from pathlib import Path

import _notebook
import nbformat
from _notebook import build_notebook

NOTEBOOK = Path(__file__).with_name("adam_explained.ipynb")

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        r"""# Adam explained, with the adamjax simulator

Questions people ask when they try to understand Adam, answered by feeding gradient
streams through it and looking inside -- one figure each:

1. Why does the second moment suppress a gradient that keeps swinging?
2. What does bias correction do at the first steps?
3. Should the second moment be *centered* (subtract the running mean)?
4. How does AMSGrad's running maximum behave?
5. What does a p-th power moment change?
6. What does `b2` change?
7. How do the Adam variants compare on the same gradients?

One step of Adam on one weight, with gradient $g_t$ at step $t = 1, 2, \dots$:

$$m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$$
$$\hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}, \qquad
\theta_t = \theta_{t-1} - \eta \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}$$

`adamjax.simulate(tx, grads)` runs an optimizer on a stream of gradients and returns a
`Trace` with every one of these quantities at every step; `direction` is
$\hat m_t / (\sqrt{\hat v_t} + \epsilon)$, the step before the learning rate.""",
    ),
    (
        "code",
        """%matplotlib inline
import jax.numpy as jnp

import adamjax
from adamjax import plot, signals

adam = adamjax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-7)  # the core alone: no learning rate""",
    ),
    (
        "markdown",
        r"""## 1. Why the second moment suppresses a swinging gradient

$\hat m_t$ is a running *mean* of the gradient and $\sqrt{\hat v_t}$ its running *root mean
square*. Their ratio is close to $\pm 1$ when the gradient keeps its sign and much smaller
when it swings, because the swings cancel in the mean but not in the mean square. The
`swinging` signal (sines of amplitude 20, 10 and 3 plus noise) swings between about
-20 and 30 around a mean of 5; `swinging_soft` swings between 5 and 15 around 10. On
average Adam's step is close to mean / RMS of the recent gradients: about 0.3 for the
first, 0.94 for the second, however large the gradients are.""",
    ),
    (
        "code",
        """swinging = signals.swinging(10_000, seed=1)
soft = signals.swinging_soft(10_000, seed=1)
last = slice(-1000, None)
for name, grads in [("swinging", swinging), ("swinging_soft", soft)]:
    trace = adamjax.simulate(adam, grads)
    mean, rms = float(trace.grad[last].mean()), float(jnp.sqrt((trace.grad[last] ** 2).mean()))
    print(
        f"{name:14s} mean g = {mean:6.2f}   RMS g = {rms:6.2f}   mean / RMS = {mean / rms:.3f}   "
        f"mean step = {float(trace.direction[last].mean()):.3f}"
    )""",
    ),
    (
        "code",
        """plot.suppression({"swinging": swinging, "swinging_soft": soft}, tx=adam)""",
    ),
    (
        "markdown",
        r"""The step only depends on the *ratio* of mean to RMS, so multiplying every gradient by
1000 leaves Adam's steps unchanged: a $\pm 0.001$ pattern gets the same steps as
a $\pm 1$ pattern, up to $\epsilon / |g| = 10^{-4}$:""",
    ),
    (
        "code",
        """small = adamjax.simulate(adam, signals.small_alternating(42))
large = adamjax.simulate(adam, 1000 * signals.small_alternating(42))
print("largest difference in the step:", float(jnp.abs(small.direction - large.direction).max()))""",
    ),
    (
        "markdown",
        r"""## 2. What bias correction does at the first steps

The moments start at zero, so after one step $m_1 = (1-\beta_1) g_1$ and
$v_1 = (1-\beta_2) g_1^2$: a tenth and a thousandth of their "true" values.
Dividing by $1 - \beta^t$ undoes exactly that: $\hat m_1 = g_1$, $\hat v_1 = g_1^2$, and the
first step is $g_1 / (|g_1| + \epsilon) \approx \pm 1$ whatever the gradient's size.
Without the correction the first step would be $0.1 / \sqrt{0.001} \approx 3.16$ and would grow
for a while before the moments warm up. (Counting steps from $t = 1$ also keeps $1 - \beta^t$
away from zero.) The figure's step axis is logarithmic, so the first steps are not squeezed
into a few pixels of a 3,000-step axis.""",
    ),
    (
        "code",
        """constant = jnp.full(3000, 0.01, jnp.float32)
corrected = adamjax.simulate(adamjax.scale_by_adam(), constant)
uncorrected = adamjax.simulate(adamjax.scale_by_adam(bias_correction=False), constant)
for t in (1, 2, 10, 100, 1000, 3000):
    print(
        f"t={t:5d}  corrected step {float(corrected.direction[t - 1]):.4f}   "
        f"uncorrected step {float(uncorrected.direction[t - 1]):.4f}"
    )
print("step 1 internals: g =", float(constant[0]), " m_hat =", float(corrected.mu_hat[0]),
      " sqrt(v_hat) =", float(jnp.sqrt(corrected.nu_hat[0])))""",
    ),
    (
        "code",
        """plot.bias_correction(constant)""",
    ),
    (
        "markdown",
        r"""## 3. Centered or not?

Should $v$ subtract the mean, as a variance does? The centered second moment (AdaBelief)
is $s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2$, so the denominator measures how far the
gradient strays from its running mean rather than how large it is. A consistent gradient
(the noisy line at 5, noise 0.5) then gets steps of about mean / spread, ten times Adam's
cap near 1. A gradient that swings strays far from its running mean too, so centering
changes much less there: its steps grow by a factor of two (`swinging`) to three
(`swinging_soft`), not ten.""",
    ),
    (
        "code",
        """centered = adamjax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-7, centered=True)
line = signals.noisy_line(10_000, seed=1)
for name, grads in [("noisy_line", line), ("swinging_soft", soft), ("swinging", swinging)]:
    plain_step = adamjax.simulate(adam, grads).direction[-1000:]
    centered_step = adamjax.simulate(centered, grads).direction[-1000:]
    print(f"{name:14s} mean step: Adam {float(plain_step.mean()):6.3f}   centered {float(centered_step.mean()):6.3f}")""",
    ),
    (
        "code",
        """plot.centered({"noisy_line": line, "swinging": swinging}, eps=1e-7)""",
    ),
    (
        "markdown",
        r"""## 4. AMSGrad's running maximum

AMSGrad divides by the root of $\max_{s \le t} v_s$ instead of $v_t$: once the gradients
shrink, Adam's second moment decays and its steps recover, while AMSGrad's maximum stays at
the largest value seen and its steps keep shrinking. On pulses whose heights fall from 0.4
to 0.05 (with $\beta_2 = 0.99$, so the moment forgets within the run):""",
    ),
    (
        "code",
        """pulses = signals.pulses()
plain_run = adamjax.simulate(adamjax.scale_by_adam(b2=0.99), pulses)
ams_run = adamjax.simulate(adamjax.scale_by_adam(b2=0.99, amsgrad=True), pulses)
print(f"last step: v = {float(plain_run.nu[-1]):.5f}   running max = {float(ams_run.nu_max[-1]):.5f}   "
      f"step Adam {float(plain_run.direction[-1]):.3f}   AMSGrad {float(ams_run.direction[-1]):.3f}")
plot.amsgrad(pulses)""",
    ),
    (
        "markdown",
        r"""## 5. A p-th power moment

Replacing $g^2$ and $\sqrt{\cdot}$ by $|g|^p$ and the $p$-th root weighs large gradients more
as $p$ grows; $p = \infty$ is Adamax, a decaying running maximum of $|g|$. `power` is a
switch on the same core. The pattern below has three parts (1, 0 alternating; blocks; a
$\pm 0.001$ alternation), each drawn on its own scale.""",
    ),
    (
        "code",
        """plot.power(powers=(2.0, 4.0, float("inf")))""",
    ),
    (
        "markdown",
        r"""## 6. What `b2` changes

The second moment remembers about $1/(1-\beta_2)$ steps. With $\beta_2 = 0.9$ it follows the
swings of the gradient, so the denominator rises and falls with them and the step stays
near $\pm 1$; with 0.99 or 0.999 it averages them out, and the step follows the gradient's
sign and size.""",
    ),
    (
        "code",
        """plot.b2_sweep(signals.swinging(2000, seed=1), b2s=(0.9, 0.99, 0.999))""",
    ),
    (
        "markdown",
        r"""## 7. The variants side by side

`plot.compare` takes a mapping from a name to an optimizer (or a config, or a trace) and
draws them on the same signals, one curve per optimizer. Where two draw the same curve
(AMSGrad equals Adam until Adam's second moment falls), the legend says so.""",
    ),
    (
        "code",
        """variants = {
    "adam": adamjax.adam(1e-3),
    "amsgrad": adamjax.amsgrad(1e-3),
    "adabelief": adamjax.adabelief(1e-3),
    "adamax": adamjax.adamax(1e-3),
}
plot.compare(variants, {"sine": signals.sine(300), "pulses": pulses},
             title="How do the Adam variants differ on the same gradients?")""",
    ),
    (
        "markdown",
        r"""## 8. The same numbers in a real training loop

`adamjax.adam_stats(state, updates, tx=tx)` reads the Adam state (alone or inside
`optax.chain`, or a flax `nnx.Optimizer`), takes `b1` and `b2` from the optimizer (or from
the state, with `optax.inject_hyperparams`), and returns scalars cheap enough to log every
step under `jit`: the update
RMS, the signal-to-noise ratio $|\hat m| / \sqrt{\hat v}$ and how far the bias correction still is
from 1.""",
    ),
    (
        "code",
        """import jax
import optax

key_x, key_w = jax.random.split(jax.random.key(0))
x = jax.random.normal(key_x, (256, 8), jnp.float32)
y = x @ jax.random.normal(key_w, (8,), jnp.float32)
params = jnp.zeros(8, jnp.float32)
tx = optax.chain(optax.clip_by_global_norm(10.0), adamjax.adam(0.05))
state = tx.init(params)

@jax.jit
def train_step(params, state):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean((x @ p - y) ** 2))(params)
    updates, state = tx.update(grads, state, params)
    stats = adamjax.adam_stats(state, updates, tx=tx)
    return optax.apply_updates(params, updates), state, loss, stats

for step in range(1, 301):
    params, state, loss, stats = train_step(params, state)
    if step in (1, 10, 50, 100, 300):
        print(f"step {step:3d}  loss {float(loss):9.5f}  update RMS {float(stats.update_rms):.4f}  "
              f"snr median {float(stats.snr_median):.2f}  nu correction gap {float(stats.nu_correction_gap):8.2f}")""",
    ),
    (
        "markdown",
        r"""Early on every coordinate moves by about the learning rate (snr near 1, the bias
correction still large); as the loss flattens the gradients shrink and change sign, the
snr drops and the steps shrink with it, even though the learning rate never changed.""",
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs."""
    return build_notebook(CELLS)


if __name__ == "__main__":
    raise SystemExit(_notebook.main(build, NOTEBOOK, __doc__.splitlines()[0]))
