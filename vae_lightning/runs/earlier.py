"""An earlier result is never replaced unasked: what `evaluate`, `sample`, `beta_grid` and `report` do when their
output already holds one (training's own rule is `folders.NoOverwrite`).

One rule for all: the same result again replaces the earlier one without a word (the same checkpoint, at the
same step, with the same settings: a rerun from the shell history loses nothing); a different one is refused
in one line naming the output, what it holds and the two ways forward: the command's overwrite switch, or
another output. With the switch, what takes long to make is kept (an evaluation is moved aside to
`<eval_dir>.replaced-<timestamp>`, as training moves a run aside); what is redrawn in seconds from files that
stay (a picture, a report) is replaced.

What "the same settings" means: the command's config as it was written, without the keys that change how a
result is made but not what it is (`SAME_RESULT_IGNORES`: where it is written, progress bars, the device, batch
and chunk sizes). An evaluation records its config in `<eval_dir>/.hydra/config.yaml` and its checkpoint and
step in `metrics.json`; a picture carries them in a PNG text chunk (`PICTURE_KEY`); a report names its sweep
folders in report.md's first line, and a report of the same sweep folders is the same report, brought up to date.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vae_lightning.core.errors import UserError

# keys that change how a result is made, not what it is (`tensorboard`: log_to_trackers's name in evaluations
# recorded before it was renamed)
SAME_RESULT_IGNORES = ("hydra", "ckpt_path", "eval_dir", "output", "overwrite", "paths", "task_name", "verbose",
                       "progress", "log_to_trackers", "tensorboard", "device", "batch_size", "iwae.images_per_batch",
                       "iwae.chunk_size", "exact.chunk_size", "data.download", "classifier.cache_dir")
# the PNG text chunk that says what made a picture
PICTURE_KEY = "vae_lightning"
REPORT_TITLE = "# Sweep report: "


def check_switch(value: object, key: str = "overwrite") -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{key}={value!r} is invalid: must be true or false")
    return value


def settings(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The settings that make a result what it is: the config as written (interpolations unresolved), without
    SAME_RESULT_IGNORES."""
    tree = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else dict(cfg)
    for key in SAME_RESULT_IGNORES:
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return tree


def differences(before: dict[str, Any], now: dict[str, Any], most: int = 3) -> str:
    """The settings that differ, as `key=earlier->now` (at most `most` of them)."""
    def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(tree, dict):
            return {prefix[:-1]: tree}
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}

    a, b = flat(before), flat(now)
    changed = [f"{key}={a.get(key)}->{b.get(key)}" for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]
    return ", ".join(changed[:most]) + (", ..." if len(changed) > most else "")


def checkpoint_state(ckpt_path: str | Path) -> tuple[str, int]:
    """The checkpoint file a `ckpt_path` means (absolute) and its global step."""
    import torch

    from vae_lightning.checkpoints import resolve_checkpoint

    ckpt = resolve_checkpoint(ckpt_path)
    step = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True).get("global_step", 0)
    return str(ckpt.absolute()), int(step)


def _moment() -> str:
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}"


# --- evaluate


class KeepEvaluation(Callback):
    """Hydra callback of evaluate: with `overwrite=true`, an earlier evaluation in `eval_dir` that this one would
    replace is moved aside whole to `<eval_dir>.replaced-<timestamp>` before Hydra writes into the folder (a single
    run: before its log file opens there; a sweep's job, whose log is in the sweep's folder: as the job starts).
    Without it the evaluation itself refuses, once its settings are checked (`refuse_replacing`). Hydra turns a
    callback's exception into a warning, so a bad `overwrite` ends a single run here: one `error:` line, exit 2."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        try:
            move_aside(config)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def on_job_start(self, config: DictConfig, **kwargs: object) -> None:
        from hydra.types import RunMode

        if config.hydra.mode == RunMode.MULTIRUN:
            try:
                move_aside(config)
            except UserError:
                pass  # the job's own check of overwrite fails it, and the sweep goes on


def move_aside(config: DictConfig) -> None:
    """Under overwrite=true, `eval_dir`'s earlier evaluation, if this one would replace it, to its `.replaced-` name."""
    if not check_switch(config.get("overwrite", False)) or not config.get("ckpt_path"):
        return
    out = Path(config.eval_dir)
    if not (out / "metrics.json").is_file():
        return
    try:
        ckpt, step = checkpoint_state(config.ckpt_path)
    except (UserError, OSError, RuntimeError):
        return  # the command itself says what is wrong with ckpt_path
    if earlier_evaluation(out, config, ckpt, step) is not None:
        aside = out.with_name(f"{out.name}.replaced-{_moment()}")
        out.rename(aside)
        print(f"overwrite=true: moved the earlier evaluation in {out} aside to {aside}", flush=True)


def earlier_evaluation(out: Path, cfg: DictConfig, ckpt: str, step: int) -> str | None:
    """What the evaluation in `out` is, when this one (of `ckpt` at `step` with `cfg`) would replace it by another
    result; None when there is none, or it is the same evaluation again."""
    metrics, config = out / "metrics.json", out / ".hydra" / "config.yaml"
    if not metrics.is_file():
        return None
    earlier = json.loads(metrics.read_text())
    before = (str(Path(earlier.get("checkpoint", "")).absolute()), earlier.get("global_step"))
    earlier_settings = settings(OmegaConf.load(config)) if config.is_file() else {}
    if before != (str(Path(ckpt).absolute()), step):
        return f"of {before[0]} at step {before[1]}"
    if earlier_settings != settings(cfg):
        return f"with other settings ({differences(earlier_settings, settings(cfg))})"
    return None


def refuse_replacing(out: Path, cfg: DictConfig, ckpt: str | Path, step: int) -> None:
    """A UserError when `out` holds an evaluation that this one would replace by another result (not asked:
    overwrite=true has moved it aside before the command started)."""
    check_switch(cfg.get("overwrite", False))
    what = earlier_evaluation(out, cfg, str(ckpt), step)
    if what is not None:
        raise UserError(f"{out} holds an earlier evaluation {what} (metrics.json), which this evaluation of "
                        f"{Path(ckpt).absolute()} at step {step} would replace; add overwrite=true to move it aside "
                        f"to {out.name}.replaced-<timestamp> first, or write elsewhere with eval_dir=<folder>")


# --- sample, beta_grid


def picture_record(command: str, cfg: DictConfig, ckpt: str, step: int) -> str:
    """What a picture is (kept in its PNG): the command, the checkpoint and step, the settings."""
    return json.dumps({"command": command, "checkpoint": ckpt, "global_step": step, "settings": settings(cfg)},
                      sort_keys=True)


def check_picture(path: Path, record: str, overwrite: object) -> None:
    """Whether a command may write its picture to `path`: nothing there, the same picture again, or overwrite=true;
    else a UserError naming what is there."""
    from PIL import Image, UnidentifiedImageError

    if not check_switch(overwrite) and path.exists():
        try:
            with Image.open(path) as image:
                earlier = getattr(image, "text", {}).get(PICTURE_KEY)
        except (OSError, UnidentifiedImageError):
            earlier = None
        if earlier == record:
            return
        made, ours = (json.loads(earlier) if earlier else None), json.loads(record)
        what = ("a file this command did not write" if made is None else
                f"a {made['command']} picture of {made['checkpoint']} at step {made['global_step']}"
                + (" with other settings" if (made["checkpoint"], made["global_step"]) == (ours["checkpoint"],
                                                                                         ours["global_step"]) else ""))
        raise UserError(f"output={path} exists ({what}); add overwrite=true to replace it, or choose another "
                        "output=<file.png>")


# --- report


def report_sources(report: Path) -> list[Path] | None:
    """The sweep folders an earlier report.md was made of (its first line), None when it does not say."""
    try:
        first = report.read_text().partition("\n")[0]
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith(REPORT_TITLE):
        return None
    return [Path(p) for p in first[len(REPORT_TITLE):].split(", ")]


def check_report(out: Path, sweep_dirs: list[Path], overwrite: bool) -> None:
    """Whether `report` may write into `out`: no report there, a report of the same sweep folders (the same report
    brought up to date), or --overwrite; else a UserError naming the folder and what its report is of."""
    report = out / "report.md"
    if overwrite or not report.is_file():
        return
    sources = report_sources(report)
    if sources is not None and {p.absolute() for p in sources} == {p.absolute() for p in sweep_dirs}:
        return
    what = f"of {', '.join(map(str, sources))}" if sources is not None else "this command did not write"
    raise UserError(f"{out} holds a report {what}, which this report of {', '.join(map(str, sweep_dirs))} would "
                    "replace; add --overwrite to replace it, or write elsewhere with --out <folder>")
