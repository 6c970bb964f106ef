"""K seeds of one configuration trained in one process: `python -m vae_lightning.train 'seeds=[0,1,2,3]'`.

The members are stacked into one model (model/members.py) and trained by one Lightning Trainer; every member is
still a run in its own right, in its own folder `<run>/seed_<s>/`:

- it starts from the weights a single run at seed s starts from (`build_module(..., seed=s)`), and sees the
  batches a single run at seed s sees (the data module's `MemberShuffle`), so members of two configurations at
  one seed are paired exactly like single runs;
- its folder holds what `evaluate`, `sample`, `beta_grid`, `load_model` and `report` read from a run folder:
  `checkpoints/last.ckpt` and the best by its own val/elbo, `.hydra/config.yaml` (its config: `seed=s`),
  `.hydra/overrides.yaml` (the command's overrides with `seed=s` for `seeds`), its tracker events (TensorBoard:
  `tensorboard/<label>,seed=s`: its train, val and posterior-collapse diagnostics per epoch), `train.log` (one
  line per epoch), `status.json` (its final metrics, as a sweep job's), and at the end its sample grid and
  reconstructions (samples/final/: the pictures are not drawn every epoch);
- what it does not share with a single run: the reparameterisation and binarization noise is drawn for all
  members at once from the run's one global generator (seeded by the first seed), so a member agrees with the
  single run at its seed in distribution, not draw for draw.

The group folder `<run>/` holds the stacked checkpoint (`checkpoints/last.ckpt`: resume all members with
`ckpt_path=<run>/checkpoints/last.ckpt`), the command's `.hydra/` and `train.log`. A non-finite loss in any member
stops all members (the error names the member's seed); the checkpoints written before stay as they were.
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from vae_lightning import tracking
from vae_lightning.callbacks import Diagnostics, KLAnnealing
from vae_lightning.checkpoints import (
    CHECKPOINT_KEY,
    MEMBERS_KEY,
    AtomicCheckpointIO,
    check_compatible,
    check_members,
    load_checkpoint,
    stored_sections,
)
from vae_lightning.core import console
from vae_lightning.core.building import build
from vae_lightning.core.checks import SEED, check_settings
from vae_lightning.core.errors import ParameterError, UserError
from vae_lightning.core.files import write_atomically
from vae_lightning.core.memory import FLOAT_BYTES, check_fits
from vae_lightning.evaluation.metrics import HPARAMS, columns
from vae_lightning.launchers import slurm
from vae_lightning.model.building import build_module
from vae_lightning.model.likelihoods import check_targets
from vae_lightning.model.members import MemberStack
from vae_lightning.model.vae import VAEModule
from vae_lightning.pictures.grids import image_grid, reconstruction_grid
from vae_lightning.runs import sweep, threads
from vae_lightning.runs.folders import SEED as SEED_KEY
from vae_lightning.runs.folders import split_override
from vae_lightning.runs.lock import other_rank, run_lock
from vae_lightning.runs.training import (
    TRAINER_SETTINGS,
    PageWriter,
    build_callbacks,
    machine_faults,
    run_line,
    shown,
    train,
)

log = logging.getLogger(__name__)

# The per-run callbacks a K-member run applies to each member itself (MemberRuns): the best checkpoint by val/elbo,
# the posterior-collapse diagnostics; the pictures (prior_grid) are drawn once, at the end (`sample` and `evaluate`
# on a member make the rest)
REPLACED_CALLBACKS = ("prior_grid", "diagnostics", "model_checkpoint")
# Callbacks kept as they are: those of the whole run (the KL schedule, the stored config, the RNG state, the
# non-finite guard: of the stacked model as a whole) and those that never look inside the model (checkpoint timing
# and signals, the bar, the benchmark's clock)
KEPT_CALLBACKS = ("kl_annealing", "run_config", "random_state", "non_finite_guard", "last_checkpoint",
                  "progress_bar", "bench_timer")


def train_any(cfg: DictConfig, page: PageWriter | None = None) -> dict[str, float]:
    """What `python -m vae_lightning.train` runs: `runs.training.train` (with the page writer `page`), or with
    `seeds` set the K-member run (whose members' pages `explore sweep=<run>` writes)."""
    return train(cfg, page) if cfg.get("seeds") is None else train_members(cfg)


def member_folder(run: Path, seed: int) -> Path:
    return run / f"seed_{seed}"


def check_seeds(value: Any) -> list[int]:
    """The `seeds` list, checked: distinct seeds, at least one."""
    seeds = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    example = "e.g. 'seeds=[0,1,2,3]' (quoted for the shell)"
    if not isinstance(seeds, list) or not seeds:
        raise ParameterError("seeds", seeds, f"a non-empty list of seeds, {example}; null: one run at `seed`")
    for seed in seeds:
        SEED.check("seeds[...]", seed)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ParameterError("seeds", seeds, f"distinct seeds (repeated: {', '.join(map(str, repeated))}): a member is "
                                             "one seed")
    return [int(s) for s in seeds]


def check_vectorisable(cfg: DictConfig) -> None:
    """Options whose meaning would change, or that cannot run, with members stacked: one line each."""
    trainer = cfg.trainer
    if trainer.get("gradient_clip_val"):
        raise UserError(f"trainer.gradient_clip_val={trainer.gradient_clip_val} clips the gradient of all members "
                        "together (one norm over the stack); with seeds=[...] leave it null, or train the seeds as "
                        "single runs: -m seed=0,1,2")
    devices, strategy = trainer.get("devices"), str(trainer.get("strategy", "auto"))
    if devices not in (1, "auto") or "ddp" in strategy or trainer.get("num_nodes", 1) != 1:
        raise UserError(f"trainer.devices={devices} trainer.strategy={strategy}: a K-member run trains on one device "
                        "(the members are its batch); set trainer.devices=1, or train the seeds as single runs")
    unknown = [k for k, c in (cfg.get("callbacks") or {}).items()
               if c is not None and k not in (*REPLACED_CALLBACKS, *KEPT_CALLBACKS)]
    if unknown:
        raise UserError(f"callbacks.{unknown[0]} is a per-model callback that a K-member run does not know how to "
                        f"apply to each member; set callbacks.{unknown[0]}=null, or train the seeds as single runs")


def member_config(cfg: DictConfig, seed: int, folder: Path) -> DictConfig:
    """The config of the member at `seed`: the run's, with `seed` set, no `seeds`, and its own folder."""
    member = cfg.copy()
    with open_dict(member):
        member.seed, member.seeds = seed, None
        member.paths.output_dir = str(folder)
    return member


def member_overrides(seed: int) -> list[str]:
    """The command's overrides as a single run at `seed` would have them (`seeds=[...]` -> `seed=s`)."""
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [o for o in task if split_override(o)[0] not in ("seeds", SEED_KEY)]
    return [*kept, f"{SEED_KEY}={seed}"]


def check_member_memory(cfg: DictConfig, module: VAEModule, k: int) -> None:
    """K members' weights, gradients and Adam moments, and their activations for one batch, must fit."""
    params = sum(p.numel() for p in module.parameters())
    widths = sum(p.shape[0] for p in module.parameters() if p.dim() == 2)  # units of the dense layers
    activations = int(cfg.data.batch_size) * (4 * 784 + 4 * widths) * 3
    check_fits("seeds", k, (4 * params + activations) * FLOAT_BYTES, what="(as the length of the list) ")


def build_members(configs: list[DictConfig], seeds: list[int]) -> list[VAEModule]:
    """The members, each built as a single run at its seed builds its model (so two configurations' members at one
    seed start from the same network weights); the memory of all K checked after the first."""
    first = build_module(configs[0], seed=seeds[0])
    check_member_memory(configs[0], first, len(seeds))
    return [first, *(build_module(c, seed=s) for c, s in zip(configs[1:], seeds[1:], strict=True))]


class MemberRuns(Callback):
    """Writes every member's run folder while the stack trains (see the module docstring): its tracker scalars and
    `train.log` line per epoch, `last.ckpt` whenever the stack saves, its best checkpoint by its own val/elbo."""

    def __init__(self, stack: MemberStack, folders: list[Path], loggers: list[list[Any]],
                 stored: list[dict[str, Any]], diagnostics: list[Diagnostics] | None = None,
                 val_images: torch.Tensor | None = None) -> None:
        self.stack, self.folders, self.loggers, self.stored = stack, folders, loggers, stored
        k = len(folders)
        self.best: list[tuple[float, str]] = [(-math.inf, "")] * k  # (val/elbo, checkpoint file) per member
        # each member's Diagnostics (callbacks.diagnostics of its config) on the first validation images
        self.diagnostics, self.val_images = diagnostics, val_images
        self.diagnostic_values: list[dict[str, float]] = [{} for _ in range(k)]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = [tuple(b) for b in state_dict["best"]]

    def member_checkpoint(self, trainer: L.Trainer, k: int, optimizer_state: dict[str, Any] | None) -> dict[str, Any]:
        """Member k as a single run's checkpoint: its weights, config sections and step (what `load_model`,
        `evaluate` and `sample` read), which run of members it belongs to, and (in last.ckpt) its slice of the
        optimizer's state. It resumes only with its run (`checkpoint.check_members`)."""
        member = self.stack.members[k]
        checkpoint: dict[str, Any] = {
            "epoch": trainer.current_epoch, "global_step": trainer.global_step,
            "pytorch-lightning_version": L.__version__,
            "state_dict": {n: t.detach().cpu().clone() for n, t in member.state_dict().items()},
            CHECKPOINT_KEY: self.stored[k],
            MEMBERS_KEY: {"seed": self.stack.seeds[k], "seeds": self.stack.seeds,
                          "run": str(self.folders[k].parent)},
        }
        if optimizer_state is not None:
            checkpoint["optimizer_states"] = [self.stack.member_optimizer_state(optimizer_state, k)]
        return checkpoint

    def _save(self, checkpoint: dict[str, Any], path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda f: torch.save(checkpoint, f))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[MEMBERS_KEY] = {"seeds": self.stack.seeds}
        optimizer = (checkpoint.get("optimizer_states") or [None])[0]
        for k, folder in enumerate(self.folders):
            self._save(self.member_checkpoint(trainer, k, optimizer), folder / "checkpoints" / "last.ckpt")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        values = self.stack.member_values.get("val")
        if trainer.sanity_checking or values is None:
            return
        if self.diagnostics and self.val_images is not None:
            x = self.val_images[: self.diagnostics[0].n_images].to(pl_module.device).unsqueeze(1).float().div(255)
            self.diagnostic_values = [d.values(m, x) for d, m in zip(self.diagnostics, self.stack.members, strict=True)]
        for k, folder in enumerate(self.folders):
            score = float(values["elbo"][k])
            if math.isfinite(score) and score > self.best[k][0]:
                path = folder / "checkpoints" / f"epoch_{trainer.current_epoch:03d}.ckpt"
                self._save(self.member_checkpoint(trainer, k, None), path)
                if self.best[k][1] and Path(self.best[k][1]) != path:
                    Path(self.best[k][1]).unlink(missing_ok=True)
                self.best[k] = (score, str(path))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        train_values = self.stack.train_epoch_values() or {}
        val_values = self.stack.member_values.get("val", {})
        for k, folder in enumerate(self.folders):
            scalars = {f"train/{n}_epoch": float(v[k]) for n, v in train_values.items()}
            scalars.update({f"val/{n}": float(v[k]) for n, v in val_values.items()})
            scalars.update(self.diagnostic_values[k])
            scalars["epoch"] = trainer.current_epoch
            for logger in self.loggers[k]:
                logger.log_metrics(scalars, step=trainer.global_step)
                logger.save()
            train_elbo, val_elbo = scalars.get("train/elbo_epoch", math.nan), scalars.get("val/elbo", math.nan)
            line = (f"epoch {trainer.current_epoch}, step {trainer.global_step}: train elbo {train_elbo:.2f}, "
                    f"val elbo {val_elbo:.2f}")
            with open(folder / "train.log", "a") as f:
                f.write(line + "\n")


def start_member_folder(folder: Path, member: DictConfig, seed: int) -> list[Any]:
    """A member's `.hydra/` (its config, and its first command line: a resumed member keeps it, and with it its events'
    label) and its trackers, built from its config."""
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    overrides = folder / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        OmegaConf.save(OmegaConf.create(member_overrides(seed)), overrides)
    OmegaConf.save(OmegaConf.create(OmegaConf.to_container(member, resolve=True)), folder / ".hydra" / "config.yaml")
    return [build(c, f"logger.{k}") for k, c in (member.get("logger") or {}).items() if c is not None]


def _member_pictures(module: VAEModule, x: torch.Tensor, folder: Path, seed: int, loggers: list[Any],
                     step: int) -> None:
    """The member's final pictures (samples/final/ and its trackers): 64 digits decoded from its prior's fixed
    noise of its seed, and validation images above their reconstructions (the posterior mean decoded), the
    pictures PriorGrid draws for the model's own prior at a single run's last epoch."""
    module.eval()
    with torch.no_grad():
        x = x.to(module.device)
        images = {"samples/prior": image_grid(module.sample(64, seed=seed), nrow=8),
                  "space/reconstructions": reconstruction_grid(x, module.decode(module.encode(x).mean), 8)}
    tracking.log_images(loggers, images, step, "samples", folder / "samples" / "final")


def train_members(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configuration of `cfg` at each of `cfg.seeds` as one stacked model; returns the members'
    mean final metrics (each member's are in its `status.json`)."""
    start = time.perf_counter()
    console.route_library_logs()
    console.quiet_warnings(console.is_verbose(cfg.get("verbose")))
    seeds = check_seeds(cfg.seeds)
    check_settings(cfg, TRAINER_SETTINGS)
    check_vectorisable(cfg)
    checkpoint = load_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if checkpoint is not None:
        check_members(checkpoint, seeds, cfg.ckpt_path)

    output = Path(HydraConfig.get().runtime.output_dir if HydraConfig.initialized()
                  else cfg.trainer.get("default_root_dir") or Path.cwd())
    folders = [member_folder(output, s) for s in seeds]
    configs = [member_config(cfg, s, f) for s, f in zip(seeds, folders, strict=True)]
    stored = [stored_sections(c) for c in configs]
    group_stored = stored_sections(cfg)
    for node in (cfg.get("logger") or {}).values():  # a tracker whose package is missing is bad input
        if node is not None:
            build(node, "logger")

    threads.set_threads(cfg.get("threads", "auto"))
    L.seed_everything(seeds[0], workers=True, verbose=False)
    datamodule = build(cfg.data, "data")
    modules = build_members(configs, seeds)
    stack = MemberStack(modules, seeds)
    datamodule.member_shuffle_seeds = [int(c.data.shuffle_seed) for c in configs]
    check_targets(modules[0].likelihood, datamodule.binarize)
    if checkpoint is not None:
        check_compatible(checkpoint, group_stored, cfg.ckpt_path, seeds)
    datamodule.prepare_data()
    datamodule.setup("fit")

    trainer: L.Trainer | None = None
    with machine_faults(output, cfg, lambda: trainer):  # a full disk, a read-only folder, memory: one line
        writer = run_lock(output, shlex.join(["python", "-m", "vae_lightning.train", *sys.argv[1:]]))
        with nullcontext() if other_rank() else writer:
            loggers = [start_member_folder(folder, member, seed)
                       for seed, folder, member in zip(seeds, folders, configs, strict=True)]
            kept = build_callbacks(cfg, group_stored, keep=lambda name: name in KEPT_CALLBACKS)
            annealing = next(c for c in kept if isinstance(c, KLAnnealing))
            diagnostics = [build(c.callbacks.diagnostics, "callbacks.diagnostics") for c in configs] \
                if (cfg.get("callbacks") or {}).get("diagnostics") is not None else None
            members = MemberRuns(stack, folders, loggers, stored, diagnostics, datamodule.splits["val"].images)
            # the stacked last.ckpt after every epoch (ModelCheckpoint's save_last alone, with no top-k to keep, would
            # only save at the end of training); each member's last and best are written by MemberRuns
            saver = ModelCheckpoint(dirpath=output / "checkpoints", filename="last", monitor=None, save_top_k=1,
                                    save_last=False, enable_version_counter=False)
            callbacks = [*kept, members, saver]
            trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=False,
                            plugins=[AtomicCheckpointIO(), *slurm.cluster_plugins()])
            threads.check_strategy(trainer)
            console.say("%s: %s, %d members (seeds %s)", "resuming" if checkpoint is not None else "run",
                        run_line(output, modules[0], annealing, cfg, trainer).replace(f", seed {cfg.seed}", ""),
                        len(seeds), ", ".join(map(str, seeds)))
            with threads.cached_cuda_check(isinstance(trainer.accelerator, CPUAccelerator)):
                if cfg.get("train"):
                    trainer.fit(stack, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
                results = [{**{f"val/{n}": float(v[k]) for n, v in stack.member_values.get("val", {}).items()},
                            **members.diagnostic_values[k]} for k in range(len(seeds))]
                images = datamodule.splits["val"].images[:32].unsqueeze(1).float().div(255)
                for k, (seed, folder) in enumerate(zip(seeds, folders, strict=True)):  # the last weights, as a run's
                    _member_pictures(stack.members[k], images, folder, seed, loggers[k], trainer.global_step)
                if cfg.get("test"):
                    for k, (_, best) in enumerate(members.best):  # each member's best checkpoint, as a single run's
                        if best:
                            stack.members[k].load_state_dict(load_checkpoint(best)["state_dict"])
                    trainer.test(stack, datamodule=datamodule, verbose=False)
                    for k in range(len(seeds)):
                        results[k].update({f"test/{n}": float(v[k]) for n, v in stack.member_values["test"].items()})
            lr = OmegaConf.select(cfg, "model.optimizer.lr")
            for k, (seed, folder) in enumerate(zip(seeds, folders, strict=True)):
                params = tracking.hyperparameters(stack.members[k], annealing.schedule, lr, seed)
                tracking.log_hyperparameters(loggers[k], params, results[k], trainer.global_step, columns(HPARAMS))
                sweep.write_status(folder, {"status": "completed", "metrics": results[k], "overrides":
                                            member_overrides(seed), "threads": torch.get_num_threads(),
                                            "member_of": {"run": str(output), "seeds": seeds}})
            metrics = {key: sum(r[key] for r in results) / len(results) for key in results[0]} if results else {}
            for line in summary_lines(output, seeds, results, time.perf_counter() - start):
                console.say("%s", line)
            return metrics


def summary_lines(output: Path, seeds: list[int], results: list[dict[str, float]], seconds: float) -> list[str]:
    minutes, rest = divmod(round(seconds), 60)
    took = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    stage = "test" if results and "test/elbo" in results[0] else "val"
    lines = [f"done in {took}: {len(seeds)} members, one folder each ({shown(member_folder(output, seeds[0]))}, ...)"]
    if results and f"{stage}/elbo" in results[0]:
        values = [r[f"{stage}/elbo"] for r in results]
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        each = ", ".join(f"seed {s} {v:.2f}" for s, v in zip(seeds, values, strict=True))
        lines.append(f"{stage} elbo {mean:.2f} ± {sd:.2f} (sd over members) nats per image: {each}")
    if sweep.in_multirun():
        return lines
    run, first = shown(output), shown(member_folder(output, seeds[0]))
    return lines + ["next:", f"  tensorboard --logdir {run}",
                    f"  python -m vae_lightning.evaluate ckpt_path={first}   # one member (all: report --evaluate)",
                    f"  python -m vae_lightning.report {run} --evaluate",
                    f"  python -m vae_lightning.explore sweep={run}   # the members' latent spaces side by side",
                    f"  python -m vae_lightning.train ckpt_path={shown(output / 'checkpoints' / 'last.ckpt')} "
                    "trainer.max_epochs=40   # resume all members, train longer"]
