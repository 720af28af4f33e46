"""A maintained drop-in for ``jax.example_libraries.optimizers``.

Migrating is a one-line change::

    from jax.example_libraries import optimizers   # before
    from adamjax import optimizers                  # after

Every public name of ``jax.example_libraries.optimizers`` is here with the same
signature and numerics: ``init(params) -> state``, ``update(i, grads, state)
-> state``, ``get_params(state) -> params`` with ``get_params(init(p))`` being
``p``. What changes:

* ``update`` is jitted with ``i`` traced, so a plain Python loop compiles once
  (``jax.example_libraries``' Adam recompiles ``b ** (i + 1)`` every step when
  called eagerly);
* hyperparameters are checked when the optimizer is built, with messages that
  name the argument and the allowed range;
* :func:`adam` and :func:`adamax` run adamjax's one Adam core; the newer
  members (:func:`radam`, :func:`nadam`, :func:`adopt`, :func:`ademamix`,
  :func:`lamb`, :func:`stable_adamw`, :func:`adam_mini`) are their
  transformations stepped through :func:`from_transformation`;
* :func:`from_transformation` gives the triple of any optax transformation, and
  :data:`OptimizerResult` annotates a maker decorated with :func:`optimizer`.
"""

from adamjax._classic import adagrad as adagrad
from adamjax._classic import adam as adam
from adamjax._classic import adam_mini as adam_mini
from adamjax._classic import adamax as adamax
from adamjax._classic import ademamix as ademamix
from adamjax._classic import adopt as adopt
from adamjax._classic import clip_grads as clip_grads
from adamjax._classic import l2_norm as l2_norm
from adamjax._classic import lamb as lamb
from adamjax._classic import momentum as momentum
from adamjax._classic import nadam as nadam
from adamjax._classic import nesterov as nesterov
from adamjax._classic import radam as radam
from adamjax._classic import rmsprop as rmsprop
from adamjax._classic import rmsprop_momentum as rmsprop_momentum
from adamjax._classic import sgd as sgd
from adamjax._classic import sm3 as sm3
from adamjax._classic import stable_adamw as stable_adamw
from adamjax._schedules import Schedule as Schedule
from adamjax._schedules import constant as constant
from adamjax._schedules import exponential_decay as exponential_decay
from adamjax._schedules import inverse_time_decay as inverse_time_decay
from adamjax._schedules import make_schedule as make_schedule
from adamjax._schedules import piecewise_constant as piecewise_constant
from adamjax._schedules import polynomial_decay as polynomial_decay
from adamjax._triple import Array as Array
from adamjax._triple import InitFn as InitFn
from adamjax._triple import JoinPoint as JoinPoint
from adamjax._triple import Optimizer as Optimizer
from adamjax._triple import OptimizerResult as OptimizerResult
from adamjax._triple import OptimizerState as OptimizerState
from adamjax._triple import Params as Params
from adamjax._triple import ParamsFn as ParamsFn
from adamjax._triple import State as State
from adamjax._triple import Step as Step
from adamjax._triple import TransformationState as TransformationState
from adamjax._triple import UpdateFn as UpdateFn
from adamjax._triple import Updates as Updates
from adamjax._triple import from_transformation as from_transformation
from adamjax._triple import optimizer as optimizer
from adamjax._triple import pack_optimizer_state as pack_optimizer_state
from adamjax._triple import unpack_optimizer_state as unpack_optimizer_state

__all__ = [
    "Array",
    "InitFn",
    "JoinPoint",
    "Optimizer",
    "OptimizerResult",
    "OptimizerState",
    "Params",
    "ParamsFn",
    "Schedule",
    "State",
    "Step",
    "TransformationState",
    "UpdateFn",
    "Updates",
    "adagrad",
    "adam",
    "adam_mini",
    "adamax",
    "ademamix",
    "adopt",
    "clip_grads",
    "constant",
    "exponential_decay",
    "from_transformation",
    "inverse_time_decay",
    "l2_norm",
    "lamb",
    "make_schedule",
    "momentum",
    "nadam",
    "nesterov",
    "optimizer",
    "pack_optimizer_state",
    "piecewise_constant",
    "polynomial_decay",
    "radam",
    "rmsprop",
    "rmsprop_momentum",
    "sgd",
    "sm3",
    "stable_adamw",
    "unpack_optimizer_state",
]
