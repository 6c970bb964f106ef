"""Run folders: where a command writes (the OmegaConf resolvers behind `hydra.run.dir`, `hydra.output_subdir`
and evaluate's `eval_dir`), and resuming a run in its own folder with its own saved config plus the
command's overrides; the loggers a run folder trained with (`run_loggers`), which evaluate continues.

`register_resolvers()` must run before a config is composed (the commands and `compose_config` do).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from vae_lightning.checkpoints.renames import refuse_renamed, upgrade_config
from vae_lightning.core.building import build
from vae_lightning.core.errors import UserError
from vae_lightning.core.paths import CONF_DIR, PROJECT_ROOT
from vae_lightning.runs.lock import check_free, other_rank

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

RESUME_PREFIX = "resume_"
SEED = "seed"
# Overrides that say where a job reads and writes or how fast it runs, not what it trains: runs that differ
# only in them (e.g. two multiruns in two log folders) are the same configuration.
NOT_CONFIGURATION = ("paths.", "data.root", "data.download", "threads", "callbacks.progress_bar.", "hydra.",
                     "ckpt_path", "verbose")


def split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def configuration(overrides: Iterable[str]) -> tuple[str, ...]:
    """The overrides that define what a run trains: without its seed and without NOT_CONFIGURATION, sorted."""
    return tuple(sorted(o for o in overrides if split_override(o)[0] != SEED
                        and not split_override(o)[0].lstrip("~+").startswith(NOT_CONFIGURATION)))


def swept_keys(multirun_file: Path) -> set[str] | None:
    """The keys a sweep varies (comma lists on its command line, its sweeper's params), None when the file
    is not a sweep's multirun.yaml (a single run)."""
    if not multirun_file.is_file():
        return None
    sweep = OmegaConf.load(multirun_file)
    task = [str(o) for o in OmegaConf.select(sweep, "hydra.overrides.task", default=[]) or []]
    keys = {split_override(o)[0] for o in task if "," in split_override(o)[1]}
    params = OmegaConf.select(sweep, "hydra.sweeper.params", default=None) or {}
    return keys | {str(k) for k in params}


def run_label(output_dir: str) -> str:
    """The name of a run's TensorBoard events folder (<run>/tensorboard/<label>), so that TensorBoard lists
    runs by their settings: the prior, then the run's other command-line overrides that define what it
    trains (for a sweep job: the keys the sweep varies), and the seed: `prior=beta_4_3,annealing=linear,seed=0`.

    Read from the run folder's first `.hydra/` (the original command line), so a resumed run keeps its
    name; "" (events straight in <run>/tensorboard/) for a run folder written before runs were named and
    for a config composed outside a command."""
    run = Path(output_dir)
    overrides_file = run / ".hydra" / "overrides.yaml"
    if any((run / "tensorboard").glob("events.out.tfevents.*")) or not overrides_file.is_file():
        return ""
    overrides = [str(o) for o in OmegaConf.load(overrides_file)]
    seed = [o for o in overrides if split_override(o)[0] == SEED]
    # a sweep job's, or a member's of a K-member sweep job (<sweep>/<job>/seed_<s>: runs/members.py)
    sweep_file = run.parent / "multirun.yaml"
    if not sweep_file.is_file() and (run.parent / ".hydra").is_dir():
        sweep_file = run.parent.parent / "multirun.yaml"
    swept = swept_keys(sweep_file)
    kept = [o for o in configuration(overrides) if swept is None or split_override(o)[0] in swept] + seed
    prior = sorted((o for o in kept if split_override(o)[0] == "prior" or split_override(o)[0].startswith("prior.")),
                   key=lambda o: split_override(o)[0] != "prior")
    if not any(split_override(o)[0] == "prior" for o in prior):
        hydra_file = run / ".hydra" / "hydra.yaml"
        saved = OmegaConf.load(hydra_file) if hydra_file.is_file() else None
        choice = OmegaConf.select(saved, "hydra.runtime.choices.prior") if saved is not None else None
        prior = [f"prior={choice}", *prior] if choice else prior
    label = ",".join([*prior, *(o for o in kept if o not in prior)]) or "defaults"
    return re.sub(r"[^\w.=,+\-\[\]]", "_", label)[:150]


def run_dir_of(ckpt_path: str | Path) -> Path | None:
    """The run folder `<run>/` of a checkpoint at `<run>/checkpoints/*.ckpt`, if it has a Hydra config."""
    path = Path(ckpt_path)
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / ".hydra" / "config.yaml").is_file():
        return run
    return None



def _given_path(ckpt_path: object) -> str | None:
    """`ckpt_path` as the resolvers see it: a non-empty string, else None (a value of another kind is
    refused by the command's own check, with one line, after the folders are chosen)."""
    return ckpt_path if isinstance(ckpt_path, str) and ckpt_path.strip() else None


def run_dir(ckpt_path: str | None, default: str) -> str:
    """`hydra.run.dir`: the checkpoint's own run folder when resuming one, else a new folder."""
    ckpt_path = _given_path(ckpt_path)
    run = run_dir_of(ckpt_path) if ckpt_path else None
    return str(run) if run is not None else default


def hydra_subdir(ckpt_path: str | None) -> str:
    """`hydra.output_subdir`: `.hydra` for a new run; `.hydra/resume_<time>` when resuming one,
    so that the run's own `.hydra/config.yaml` is never overwritten."""
    ckpt_path = _given_path(ckpt_path)
    if ckpt_path and run_dir_of(ckpt_path) is not None:
        return f".hydra/{RESUME_PREFIX}{_start_time()}"
    return ".hydra"


def eval_dir(ckpt_path: str | None, default: str) -> str:
    """evaluate's output folder: `<run>/eval` for a checkpoint (or run folder) inside a run folder, else
    `default`."""
    ckpt_path = _given_path(ckpt_path)
    if not ckpt_path:
        return default
    path = Path(ckpt_path)
    run = path if (path / "checkpoints").is_dir() else run_dir_of(path)
    return str(run / "eval") if run is not None and (run / ".hydra" / "config.yaml").is_file() else default


@cache
def _start_time() -> str:
    """This process's start, fixed on first use: Hydra resolves its config more than once."""
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}"


def register_resolvers() -> None:
    for name, fn in (("vae_root", lambda: str(PROJECT_ROOT)), ("vae_run_dir", run_dir),
                     ("vae_hydra_subdir", hydra_subdir), ("vae_eval_dir", eval_dir), ("vae_run_label", run_label)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


def latest_run_config(run: Path, exclude: Path | None = None) -> DictConfig:
    """The config a run last trained with: its newest `.hydra/resume_*/config.yaml`, else `.hydra/config.yaml`."""
    hydra_dir = run / ".hydra"
    skip = exclude.resolve() if exclude is not None else None
    resumes = sorted(p for p in hydra_dir.glob(f"{RESUME_PREFIX}*/config.yaml") if p.parent.resolve() != skip)
    return upgrade_config(OmegaConf.load(resumes[-1] if resumes else hydra_dir / "config.yaml"))


def run_loggers(run: Path | None, fallback: Path) -> list[Logger]:
    """The loggers a run folder trained with: its last saved config's `logger` section, built with the run
    folder as `paths.output_dir` (so a copied or moved run folder finds its own files); the MLflow logger
    continues the run's MLflow run. For a checkpoint outside a run folder: TensorBoard in `fallback`.
    (Lightning is imported here: `report --help` reads this module and answers before torch is imported.)"""
    from lightning.pytorch.loggers import TensorBoardLogger

    if run is None:
        return [TensorBoardLogger(save_dir=str(fallback), name="tensorboard", version="", default_hp_metric=False)]
    cfg = latest_run_config(run)
    OmegaConf.update(cfg, "paths.output_dir", str(run), force_add=True)
    return [build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None]


def apply_overrides(base: DictConfig, composed: DictConfig, overrides: list[str]) -> DictConfig:
    """`base` with the keys named by command-line `overrides` taken from `composed`.

    `composed` is what Hydra built from today's files plus the overrides; `base` is the saved
    config of the run being resumed. A group override (`prior=beta`) replaces the whole section,
    a value override (`trainer.max_epochs=30`) one key; everything else stays as the run had it.
    Sections the saved config lacks (added to the project after the run started, e.g. `likelihood`)
    are today's defaults, which the checkpoint contract assumes for them (checkpoints.contract.DEFAULT_SECTIONS).
    """
    merged = base.copy()
    for section in set(composed) - set(base):
        merged[section] = composed[section]
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group.replace("/", ".")
        if key.split(".")[0] == "hydra":
            continue
        if override.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(merged, parent) if parent else merged
            if node is not None and leaf in node:
                del node[leaf]
            continue
        OmegaConf.update(merged, key, OmegaConf.select(composed, key), merge=False, force_add=True)
    return merged


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `python -m vae_lightning.<config_name> overrides...` would get, composed without
    running Hydra's app (for tests and the benchmark), with its output folder set to `output_dir`."""
    refuse_renamed(config_name, overrides)
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


# The folders that this process's run or sweep is about to create, deepest first (its output folder and those of
# its parents that do not exist yet), noted by NewFolders before Hydra makes them: the only folders a failed
# command removes (cli.discard_output, cli.discard_sweep). `new_sweep`: the multirun folder, when it is new.
new_folders: list[Path] = []
new_sweep: Path | None = None


class NewFolders(Callback):
    """Hydra callback: before a run or a multirun, note which of its output folder and its parents do not exist
    yet (a folder's modification time cannot tell: it changes when a folder is made inside it)."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        _note(Path(config.hydra.run.dir), sweep=False)

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        _note(Path(config.hydra.sweep.dir), sweep=True)


def _note(folder: Path, sweep: bool) -> None:
    global new_sweep
    folder = folder.absolute()
    new_folders.clear()
    for path in (folder, *folder.parents):
        if path.exists():
            break
        new_folders.append(path)
    new_sweep = folder if sweep and new_folders else None


class NoOverwrite(Callback):
    """Hydra callback: before a single training run, refuse a run folder that another process writes now
    (runs/lock.py), or that already holds a trained run (`<folder>/checkpoints/*.ckpt`; e.g. `hydra.run.dir=<run>`
    again from the shell history) unless `ckpt_path` resumes it, or `overwrite=true` moves it aside to
    `<folder>.replaced-<timestamp>` first. It acts before Hydra writes anything into the folder, so a refused
    command leaves the earlier run exactly as it was. (Hydra turns a callback's exception into a warning and goes
    on, so the refusal ends the command itself: one `error:` line, exit status 2, as the command layer would.)"""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        if other_rank():  # DDP's other processes share rank 0's folder and its lock
            return
        folder = Path(config.hydra.run.dir)
        try:
            check_free(folder)  # a folder another process writes (a resume of it too): refused before Hydra writes
            if config.get("ckpt_path") or "overwrite" not in config:
                return
            moved = move_aside(folder, config.overwrite)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        if moved is not None:
            print(f"overwrite=true: moved the earlier run in {config.hydra.run.dir} aside to {moved}", flush=True)


def move_aside(folder: Path, overwrite: object) -> Path | None:
    """With `overwrite` true, a run folder that holds checkpoints is renamed to `<folder>.replaced-<timestamp>`
    (returned); without it, a UserError naming the ways forward. None: nothing there to replace."""
    if not isinstance(overwrite, bool):
        raise UserError(f"overwrite={overwrite!r} is invalid: must be true or false")
    checkpoints = sorted(p.name for p in (folder / "checkpoints").glob("*.ckpt")) if folder.is_dir() else []
    if not checkpoints:
        return None
    if not overwrite:
        raise UserError(f"hydra.run.dir={folder} already holds a trained run ({', '.join(checkpoints)}); resume it "
                        f"with ckpt_path={folder / 'checkpoints' / 'last.ckpt'}, train into another folder, or add "
                        f"overwrite=true to move it aside to {folder.name}.replaced-<timestamp> first")
    aside = folder.with_name(f"{folder.name}.replaced-{datetime.now():%Y-%m-%d_%H-%M-%S_%f}")
    folder.rename(aside)
    return aside
