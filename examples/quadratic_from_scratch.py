"""Adam on the quadratic (w - 1)^2 from w = 0, in float64, reproduced to the last bit.

The "Adam from scratch in NumPy" tutorials minimise ``w**2 - 2*w + 1``
(gradient ``2w - 2``) with ``lr = 0.01`` and print the weight after each
iteration until an update no longer changes it; one such tutorial printed
0.9983202346112277 at iteration 257 (see docs/references.md).
This script does the same three ways and checks that they agree to the last bit:

1. ``adamjax.simulate`` in closed loop: the whole run is one compiled scan and
   the trace holds every moment and every weight;
2. a plain training loop around a jitted ``adamjax.adam`` update, stopping as
   the tutorial does when the weight stops changing (with a tqdm progress bar
   showing the rate, the time left and the loss);
3. the tutorial's NumPy loop, transcribed.

Bit-for-bit agreement needs one precaution. XLA on CPU fuses ``a*b + c`` into
a single fused multiply-add and rewrites ``(a/b)/c`` as ``a/(b*c)``; both are
more accurate or faster but round differently from NumPy's one operation at a
time, which moves the last digit of a few weights. On x86 this script turns
both off (``XLA_FLAGS``) before importing JAX; pass ``--fused`` to keep XLA's
defaults and see the last-bit differences.

Run: ``pip install "adamjax[examples]" && python examples/quadratic_from_scratch.py [--steps 1000] [--fused]``
"""

from __future__ import annotations

import os
import platform
import sys

if "--fused" not in sys.argv and platform.machine().lower() in ("x86_64", "amd64"):
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), "--xla_cpu_max_isa=AVX", "--xla_disable_hlo_passes=algsimp"]
    ).strip()

import argparse  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from tqdm import tqdm  # noqa: E402

import adamjax  # noqa: E402

TUTORIAL_PRINTED = {  # the weights the NumPy tutorial printed, iterations 257 to 280
    257: 0.9983202346112277,
    258: 0.9983944097882684,
    259: 0.9984656928634669,
    260: 0.998534181613794,
    261: 0.9985999710648938,
    262: 0.9986631535490955,
    263: 0.9987238187628614,
    264: 0.9987820538236523,
    265: 0.9988379433261909,
    266: 0.9988915693981099,
    267: 0.9989430117549652,
    268: 0.9989923477546039,
    269: 0.9990396524508698,
    270: 0.9990849986466379,
    271: 0.9991284569461627,
    272: 0.9991700958067327,
    273: 0.9992099815896199,
    274: 0.9992481786103167,
    275: 0.9992847491880505,
    276: 0.9993197536945726,
    277: 0.9993532506022106,
    278: 0.9993852965311832,
    279: 0.999415946296171,
    280: 0.9994452529521384,
}


def gradient(w: jax.Array) -> jax.Array:
    """d/dw of the loss w**2 - 2*w + 1."""
    return 2 * w - 2


def first_unchanged(weights: np.ndarray, start: float = 0.0) -> int | None:
    """The tutorial's stopping rule: the first iteration t whose update leaves w unchanged."""
    before = np.concatenate([[start], weights[:-1]])
    unchanged = np.nonzero(weights == before)[0]
    return int(unchanged[0]) + 1 if unchanged.size else None


def numpy_tutorial_loop(steps: int) -> np.ndarray:
    """The tutorial's Adam update for the weight, one NumPy float64 operation at a time."""
    eta, beta1, beta2, epsilon = 0.01, 0.9, 0.999, 1e-8
    w, m_dw, v_dw = 0.0, 0.0, 0.0
    weights = []
    for t in range(1, steps + 1):
        dw = 2 * w - 2
        m_dw = beta1 * m_dw + (1 - beta1) * dw
        v_dw = beta2 * v_dw + (1 - beta2) * (dw**2)
        m_dw_corr = m_dw / (1 - beta1**t)
        v_dw_corr = v_dw / (1 - beta2**t)
        w = w - eta * (m_dw_corr / (np.sqrt(v_dw_corr) + epsilon))
        weights.append(w)
    return np.array(weights)


def training_loop(tx: optax.GradientTransformation, max_steps: int) -> tuple[list[float], int | None]:
    """The tutorial's while-loop, with a jitted adamjax update and a progress bar."""
    w = jnp.zeros([], jnp.float64)
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        updates, state = tx.update(gradient(w), state, w)
        return optax.apply_updates(w, updates), state

    weights: list[float] = []
    converged_at = None
    with tqdm(range(1, max_steps + 1), desc="training loop", unit="step", mininterval=0.5) as bar:
        for t in bar:
            w_old = w
            w, state = step(w, state)
            weights.append(float(w))
            if converged_at is None and bool(w == w_old):
                converged_at = t
            if t % 50 == 0 or t == max_steps:
                bar.set_postfix(loss=f"{(weights[-1] - 1.0) ** 2:.3g}", refresh=False)
    return weights, converged_at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000, help="iterations to run (Adam converges at 746)")
    parser.add_argument("--fused", action="store_true", help="keep XLA's fused multiply-adds and rewrites")
    args = parser.parse_args(argv)

    tx = adamjax.adam(0.01)  # b1=0.9, b2=0.999, eps=1e-8, as in the tutorial
    trace = adamjax.simulate(tx, grad_fn=gradient, params=jnp.zeros([], jnp.float64), steps=args.steps)
    weights = np.asarray(trace.params)
    converged = first_unchanged(weights)

    for t in (1, 2, 3, *range(257, 282)):
        print(f"iteration {t}: weight={float(weights[t - 1])}")
    if converged is None:
        print(f"not converged after {args.steps} iterations; w = {float(weights[-1])}")
    else:
        print(f"converged after {converged} iterations")
    print(
        f"step 1 internals: g={float(trace.grad[0])!r}, m_hat={float(trace.mu_hat[0])!r}, "
        f"sqrt(v_hat)+eps={float(trace.denom[0])!r}"
    )

    loop_weights, loop_converged = training_loop(tx, args.steps)
    reference = numpy_tutorial_loop(args.steps)
    differences = int(np.sum(weights != reference))
    print(f"training loop agrees with the simulator bit for bit: {loop_weights == weights.tolist()}")
    print(f"training loop converged after {loop_converged} iterations")
    print(
        f"NumPy tutorial loop: converged after {first_unchanged(reference)} iterations; "
        f"{differences} of {args.steps} weights differ from adamjax "
        f"(largest difference {np.max(np.abs(weights - reference)):.3g})"
    )
    shown = {t: float(weights[t - 1]) for t in TUTORIAL_PRINTED if t <= args.steps}
    same = sum(shown[t] == TUTORIAL_PRINTED[t] for t in shown)
    print(f"weights the tutorial printed (iterations 257-280) reproduced exactly: {same} of {len(shown)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
