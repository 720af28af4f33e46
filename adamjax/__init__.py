"""adamjax: the Adam family for JAX, as optax transformations and as triples.

Two faces on one core:

* ``adamjax.adam``, ``adamw``, ``amsgrad``, ``adamax``, ``adamaxw``, ``nadam``,
  ``nadamw``, ``adabelief`` and the core ``scale_by_adam`` (with
  ``scale_by_amsgrad``, ``scale_by_belief``, ``scale_by_adamax``) are
  ``optax.GradientTransformation`` objects with optax's signatures and state
  classes, composing with ``optax.chain`` and optax's wrappers.
* the newer members ``radam``, ``adopt``, ``ademamix``, ``lamb``,
  ``stable_adamw``, ``adam_mini`` (and ``nadam(momentum_decay=...)``,
  ``cautious=True`` on every alias) run on the same staged core;
* ``adamjax.optimizers`` is a maintained drop-in for
  ``jax.example_libraries.optimizers`` (``init, update, get_params`` triples).
"""

from adamjax import optimizers as optimizers
from adamjax import plot as plot
from adamjax import signals as signals
from adamjax._adabelief import adabelief as adabelief
from adamjax._adabelief import scale_by_belief as scale_by_belief
from adamjax._adam import adam as adam
from adamjax._adam import adamw as adamw
from adamjax._adam import scale_by_adam as scale_by_adam
from adamjax._adam_mini import adam_mini as adam_mini
from adamjax._adamax import adamax as adamax
from adamjax._adamax import adamaxw as adamaxw
from adamjax._adamax import scale_by_adamax as scale_by_adamax
from adamjax._ademamix import ademamix as ademamix
from adamjax._ademamix import scale_by_ademamix as scale_by_ademamix
from adamjax._adopt import adopt as adopt
from adamjax._adopt import scale_by_adopt as scale_by_adopt
from adamjax._alias_chain import scale_by_learning_rate as scale_by_learning_rate
from adamjax._amsgrad import amsgrad as amsgrad
from adamjax._amsgrad import scale_by_amsgrad as scale_by_amsgrad
from adamjax._checkpoint import restore_state as restore_state
from adamjax._checkpoint import save_state as save_state
from adamjax._core import AdamConfig as AdamConfig
from adamjax._core import ScaleByAdamState as ScaleByAdamState
from adamjax._core import ScaleByAmsgradState as ScaleByAmsgradState
from adamjax._core import ScaleByBeliefState as ScaleByBeliefState
from adamjax._flat import FlatParams as FlatParams
from adamjax._fused import apply_step as apply_step
from adamjax._fused import native_status as native_status
from adamjax._hyperparams import get_hyperparams as get_hyperparams
from adamjax._hyperparams import set_hyperparams as set_hyperparams
from adamjax._lamb import lamb as lamb
from adamjax._nadam import NadamState as NadamState
from adamjax._nadam import nadam as nadam
from adamjax._nadam import nadamw as nadamw
from adamjax._radam import radam as radam
from adamjax._radam import scale_by_radam as scale_by_radam
from adamjax._sharding import state_shardings as state_shardings
from adamjax._simulate import Trace as Trace
from adamjax._simulate import simulate as simulate
from adamjax._stable_adamw import stable_adamw as stable_adamw
from adamjax._stages import AdamStep as AdamStep
from adamjax._stages import adam_step as adam_step
from adamjax._stats import adam_stats as adam_stats

__version__ = "0.1.0"

__all__ = [
    "AdamConfig",
    "AdamStep",
    "FlatParams",
    "NadamState",
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "Trace",
    "adabelief",
    "adam",
    "adam_mini",
    "adam_stats",
    "adam_step",
    "adamax",
    "adamaxw",
    "adamw",
    "ademamix",
    "adopt",
    "amsgrad",
    "apply_step",
    "get_hyperparams",
    "lamb",
    "nadam",
    "nadamw",
    "native_status",
    "optimizers",
    "plot",
    "radam",
    "restore_state",
    "save_state",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_learning_rate",
    "scale_by_radam",
    "set_hyperparams",
    "signals",
    "simulate",
    "stable_adamw",
    "state_shardings",
]
