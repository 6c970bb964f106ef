"""Lightning callbacks, one per file, every one chosen by the `callbacks` config group (conf/callbacks/). Four make
a checkpoint what it is and come first in both sets (`default`, and `none`: no optional callback): `KLAnnealing`
(the KL weight of every step, its schedule's state in the checkpoint), `RunConfig` (the config sections that define
the model), `RandomState` (the RNG state) and `NonFiniteGuard` (no NaN/inf in the loss or a saved checkpoint).
Training gives KLAnnealing its schedule and RunConfig its sections after the config chose them, and refuses a run
without either in one line (runs.training.build_callbacks); without RandomState a resume is not bit-identical,
without NonFiniteGuard nothing stops a NaN loss. The optional ones: `PriorGrid` (the study's pictures),
`Diagnostics` (posterior collapse), `LastCheckpoint` (last.ckpt between epochs, a clean stop on signals),
`ProgressBar` (the short training bar), and the benchmark's `EpochTimer`. Callbacks reach checkpoints through
checkpoints/ and never import runs/.

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
