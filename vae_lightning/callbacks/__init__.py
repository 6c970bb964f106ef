"""Lightning callbacks, one per file. Four are part of what a checkpoint means and always installed by
`runs.training`: `KLAnnealing` (the KL weight of every step, its schedule's state in the checkpoint),
`RunConfig` (the config sections that define the model), `RandomState` (the RNG state) and
`NonFiniteGuard` (no NaN/inf in the loss or a saved checkpoint). The others are chosen by the
`callbacks` config group (conf/callbacks/): `PriorGrid` (the study's pictures), `Diagnostics`
(posterior collapse), `LastCheckpoint` (last.ckpt between epochs, a clean stop on signals), `ProgressBar`
(the short training bar), and the benchmark's `EpochTimer`.

Adding a callback: a file here with one `lightning.pytorch.callbacks.Callback`, exported below, and
an entry under `callbacks:` in a conf/callbacks/ file (`_target_: vae_lightning.callbacks.<Class>`).
Nothing a callback draws may touch the global RNG (use `core.rng.seeded` or a generator of its own),
so that training is the same with and without it.
"""

from vae_lightning.callbacks.diagnostics import Diagnostics
from vae_lightning.callbacks.epoch_timer import EpochTimer
from vae_lightning.callbacks.kl_annealing import KLAnnealing
from vae_lightning.callbacks.last_checkpoint import LastCheckpoint
from vae_lightning.callbacks.non_finite_guard import NonFiniteGuard
from vae_lightning.callbacks.prior_grid import PriorGrid
from vae_lightning.callbacks.progress_bar import ProgressBar
from vae_lightning.callbacks.random_state import RandomState
from vae_lightning.callbacks.run_config import RunConfig

__all__ = ["Diagnostics", "EpochTimer", "KLAnnealing", "LastCheckpoint", "NonFiniteGuard", "PriorGrid", "ProgressBar",
           "RandomState", "RunConfig"]
