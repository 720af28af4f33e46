"""Determinism and concurrent use: the same inputs give the same bits, whoever runs them and how.

An optimizer object holds no state of its own (the state is what ``init``
returns), so running it twice, reusing the object, calling it from several
threads at once, or from several jitted functions at once must give results
bit-identical to one run alone. The comparisons are bitwise (``tobytes``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import optimizers

STEPS = 10
THREADS = 4


def decaying_rate(count):
    return 1e-2 * jnp.cos(jnp.pi / 2 * count.astype(jnp.float32) / STEPS)


MAKERS = {
    "adam": lambda: adamjax.adam(1e-2),
    "adamw_schedule": lambda: adamjax.adamw(decaying_rate, weight_decay=1e-2),
    "amsgrad": lambda: adamjax.amsgrad(1e-2),
    "adabelief": lambda: adamjax.adabelief(1e-2),
    "chain_clip_adam": lambda: optax.chain(optax.clip_by_global_norm(1.0), adamjax.adam(1e-2)),
}


def bits(tree):
    """Every leaf's dtype, shape and bytes: equal only if bit-identical."""
    return [(str(jnp.result_type(x)), np.shape(x), np.asarray(x).tobytes()) for x in jax.tree.leaves(tree)]


def grad_stream(seed, dtype, steps=STEPS):
    rng = np.random.default_rng(seed)
    return [
        {"w": jnp.asarray(rng.normal(size=(8, 4)), dtype), "b": jnp.asarray(rng.normal(size=(4,)), dtype)}
        for _ in range(steps)
    ]


def params_in(dtype):
    return {"w": jnp.linspace(-1, 1, 32, dtype=dtype).reshape(8, 4), "b": jnp.zeros(4, dtype)}


def train(tx, dtype, seed, step=None):
    """Runs ``tx`` on a gradient stream (``step``: a jitted update, else eager); returns params and state."""
    update = tx.update if step is None else step
    params = params_in(dtype)
    state = tx.init(params)
    for grads in grad_stream(seed, dtype):
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_repeated_runs_are_bit_identical(name, dtype):
    first = train(MAKERS[name](), dtype, seed=1)
    # A fresh object, the same object again, and the same object jitted twice.
    tx = MAKERS[name]()
    again = train(tx, dtype, seed=1)
    reused = train(tx, dtype, seed=1)
    step = jax.jit(tx.update)
    jitted = train(tx, dtype, seed=1, step=step)
    jitted_again = train(tx, dtype, seed=1, step=step)
    assert bits(again) == bits(first)
    assert bits(reused) == bits(first)
    assert bits(jitted_again) == bits(jitted)
    # ... and the runs did something: another gradient stream gives other bits.
    assert bits(train(tx, dtype, seed=2)) != bits(first)


def test_triple_and_simulator_runs_are_bit_identical():
    def triple_run():
        init, update, get_params = optimizers.adam(1e-2)
        state = init(params_in(jnp.float32))
        for i, grads in enumerate(grad_stream(3, jnp.float32)):
            state = update(i, grads, state)
        return get_params(state), state

    assert bits(triple_run()) == bits(triple_run())
    grads = adamjax.signals.swinging_soft(2000, seed=1)
    tx = adamjax.adam(1e-3)
    assert bits(adamjax.simulate(tx, grads)) == bits(adamjax.simulate(adamjax.adam(1e-3), grads))


def run_in_threads(work, seeds):
    """Calls ``work(seed)`` for every seed, all threads released at once; returns the results in order."""
    barrier = threading.Barrier(len(seeds))

    def job(seed):
        barrier.wait()
        return work(seed)

    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        return list(pool.map(job, seeds))


@pytest.mark.parametrize("name", ["adam", "adamw_schedule", "chain_clip_adam"])
def test_one_optimizer_shared_by_threads_gives_what_it_gives_alone(name):
    tx = MAKERS[name]()
    step = jax.jit(tx.update)
    seeds = list(range(10, 10 + THREADS))
    alone = [train(tx, jnp.float32, seed, step=step) for seed in seeds]
    together = run_in_threads(lambda seed: train(tx, jnp.float32, seed, step=step), seeds)
    eager_together = run_in_threads(lambda seed: train(tx, jnp.float32, seed), seeds)
    for seed, a, b, c in zip(seeds, alone, together, eager_together, strict=True):
        assert bits(b) == bits(a)
        assert bits(c) == bits(train(tx, jnp.float32, seed))
    assert bits(alone[0]) != bits(alone[1])


def test_one_triple_shared_by_threads_gives_what_it_gives_alone():
    init, update, get_params = optimizers.adam(1e-2)

    def work(seed):
        state = init(params_in(jnp.float32))
        for i, grads in enumerate(grad_stream(seed, jnp.float32)):
            state = update(i, grads, state)
        return get_params(state)

    seeds = list(range(20, 20 + THREADS))
    together = run_in_threads(work, seeds)
    for seed, result in zip(seeds, together, strict=True):
        assert bits(result) == bits(work(seed))


def test_simulations_in_threads_record_their_own_internals():
    # The simulator reads the core through a context variable: each thread must see its own.
    tx = adamjax.adam(1e-3)
    streams = {seed: adamjax.signals.swinging(500, seed=seed) for seed in range(THREADS)}
    together = run_in_threads(lambda seed: adamjax.simulate(tx, streams[seed]), list(streams))
    for seed, trace in zip(streams, together, strict=True):
        assert bits(trace) == bits(adamjax.simulate(adamjax.adam(1e-3), streams[seed]))
        np.testing.assert_array_equal(trace.grad, streams[seed])


def test_one_optimizer_inside_several_jitted_functions_at_once():
    tx = adamjax.adam(1e-2)
    dtype = jnp.float32
    streams = [grad_stream(seed, dtype, steps=8) for seed in (31, 32)]

    def run(stream):
        params = params_in(dtype)
        state = tx.init(params)
        for grads in stream:
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params, state

    alone = [run(stream) for stream in streams]
    # Two independent trainings traced into one function, the same tx in a second jitted
    # function, and a vmap over both streams.
    jit_run = jax.jit(run)
    both = jax.jit(lambda a, b: (run(a), run(b)))(*streams)
    other = jit_run(streams[1])
    batched = jax.vmap(run)(jax.tree.map(lambda *xs: jnp.stack(xs), *streams))
    for i in range(2):
        assert bits(both[i]) == bits(jit_run(streams[i]))
        # Against eager and under vmap: a fused multiply-add may round once instead of twice.
        for got in (both[i], jax.tree.map(lambda x, i=i: x[i], batched)):
            np.testing.assert_allclose(np.asarray(got[0]["w"]), np.asarray(alone[i][0]["w"]), rtol=1e-6, atol=1e-7)
    assert bits(other) == bits(both[1])
