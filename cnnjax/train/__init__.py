"""Training with Optax under jit, vmap, pmap and sharded jit, with orbax checkpoints (see trainer.py).

XLA:CPU speed work (faster conv/pool forms inside the step, compile options, malloc settings, the loop form) lives
in :mod:`cnnjax.train.cpu_speed`.
"""
from . import averaging, cpu_speed, recipes, tta
from .callbacks import EarlyStopping
from .checkpoint import CheckpointMismatchError, Checkpointer
from .distributed import initialize
from .ensemble import create_ensemble, member, per_example_grads, vmap_eval_step, vmap_train_step, with_update_scale
from .trainer import LOOPS, NonFiniteLossError, epoch_order, evaluate, fit, predict
from .optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from .parallel import PARALLEL_MODES, Strategy, make_strategy
from .recipes import Recipe, cifar10_speedrun, mnist_speedrun, run_recipe
from .state import TrainState, create_state, param_signature
from .steps import make_eval_step, make_train_chunk, make_train_step

# The public surface. The trainer's parts (the strategies, the chunk runner, LOOPS, PARALLEL_MODES, cpu_speed's
# knobs) stay importable from here and from their modules for the command line and experiments, but are not listed.
__all__ = [
    "fit", "evaluate", "predict", "epoch_order", "TrainState", "create_state", "NonFiniteLossError",
    "Checkpointer", "CheckpointMismatchError", "EarlyStopping", "initialize",
    "make_optimizer", "make_schedule", "OPTIMIZERS", "SCHEDULES", "make_train_step", "make_eval_step",
    "create_ensemble", "member", "per_example_grads", "vmap_train_step", "vmap_eval_step",
    "averaging", "recipes", "Recipe", "cifar10_speedrun", "mnist_speedrun", "run_recipe",
]
