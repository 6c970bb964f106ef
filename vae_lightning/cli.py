"""The one command layer of every entry point (`python -m vae_lightning.<command>`).

Bad input of any kind (an unknown option of a config group, an unknown key, an override that does
not parse, a value of the wrong type or range, a missing or unreadable file) ends as one line
`error: <key>=<value> ...; <what is accepted>` on stderr with exit status 2, without a traceback
(unless HYDRA_FULL_ERROR=1), and a failed command leaves its output folder as it was (a new one is
removed). An interrupted training prints the command that resumes it and exits 130 (SIGINT) or 143
(SIGTERM). `--help` is answered here, before Hydra or torch is imported: what the command does, where
it reads and writes, its config groups with the options found in conf/ (the current one in brackets),
its main keys with their defaults, and example command lines.

A Hydra command is a function `main(cfg)` whose body is `cli.run_task(...)`, started with
`cli.run(main, HELP, EXAMPLES, config_name)`; `report` and `bench` parse their flags with
`cli.ArgumentParser`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from vae_lightning.core.errors import Interrupted, RunStopped, UserError, WriteFailed
from vae_lightning.core.files import EXHAUSTED, FolderSnapshot, resource_error
from vae_lightning.core.paths import CONF_DIR, PROJECT_ROOT

if TYPE_CHECKING:
    from omegaconf import DictConfig

T = TypeVar("T")

# When this process started: files and folders made after it are this command's
PROCESS_START_NS = time.time_ns()
# HYDRA_FULL_ERROR=1 as the user set it when the process started (`run` sets it for Hydra's sake):
# full tracebacks instead of one-line errors.
FULL_ERROR = os.environ.get("HYDRA_FULL_ERROR") == "1"

# The run folder in the commands' examples (a real one is named like it)
EXAMPLE_RUN = "logs/train/runs/2026-01-31_09-30-00_000000"
# The flags of Hydra's command line; any other `-x` / `--xyz` is refused in one line (settings are key=value)
HYDRA_FLAGS = {"-m", "--multirun", "-c", "--cfg", "-p", "--package", "-i", "--info", "--resolve", "-cp",
               "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "-sc", "--shell-completion", "-r",
               "--run", "--hydra-help", "--version", "--experimental-rerun"}

# After a write that failed for want of space or permission (the files are written whole or not at all)
LEFT_AS_IT_WAS = "; nothing half-written is left: every file there is whole, the new one or the one before"

# What a command leaves in its output folder that an error must never remove: a run's checkpoints,
# an earlier evaluation's results.
RESULTS = ("checkpoints", "metrics.json")


def fail(message: str) -> NoReturn:
    """End the command: one line `error: <message>` on stderr (a message of several lines joined), exit status 2."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"error: {line}", file=sys.stderr)
    raise SystemExit(2)


def hydra_error_line(err: Exception) -> str:
    """One line for an error Hydra raises before the task starts."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.options and "/" in (err.missing_cfg_file or ""):
        group, _, option = err.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not an option of {group}: choose one of {', '.join(err.options)}"
    if isinstance(err, ConfigCompositionException) and isinstance(err.__cause__, (ConfigKeyError,
                                                                                   ConfigAttributeError)):
        override = re.search(r"use \+(\S+)", str(err))  # Hydra's message names the whole override
        given = override.group(1) if override else err.__cause__.full_key
        return (f"{given} is not a key of this command's config: choose one of those listed by --cfg job "
                f"(or add a new one with +{given})")
    if isinstance(err, OverrideParseException):
        return f"{err.override} is not a valid override ({err.message}): write key=value, group=option or +key=value"
    if isinstance(err, OSError) and err.filename:
        return (f"cannot create the run folder {err.filename} ({err.strerror}); set paths.log_dir (or VAE_LOG_DIR) "
                "to a folder you can write to")
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    cause = str(err.__cause__).strip().splitlines() if err.__cause__ is not None else []
    return f"{text} ({cause[0]})" if cause else text


def run(main: Callable[[DictConfig], Any], help_text: str, examples: Sequence[str], config_name: str) -> None:
    """Start a Hydra command: `main(cfg)` with the composed `conf/<config_name>.yaml`.

    `--help` is answered before anything heavy is imported. Hydra's own errors (an unknown option or
    key, a bad override, a run folder that cannot be created) become one `error:` line with exit status
    2. Hydra prints them over several lines and exits 1; with HYDRA_FULL_ERROR set it raises them
    instead, so it is set here (unless the user set it: then the traceback). An error raised inside the
    task function keeps its traceback.
    """
    args = sys.argv[1:]
    if any(a in ("--help", "-h") for a in args):
        print(command_help(config_name, help_text, examples, args))
        raise SystemExit(0)
    for arg in args:
        flag = arg.partition("=")[0]
        if arg.startswith("-") and flag not in HYDRA_FLAGS:
            example = next((w for e in examples for w in e.split()[3:] if "=" in w and not w.startswith("-")),
                           "key=value")
            fail(f"{flag} is not an option; write overrides as key=value, e.g. {example} (see --help)")
    from vae_lightning.checkpoints.renames import refuse_renamed

    try:
        refuse_renamed(config_name, [a for a in args if not a.startswith("-")])
    except UserError as err:
        fail(str(err))
    import hydra
    from hydra.errors import HydraException

    from vae_lightning.runs.folders import register_resolvers

    register_resolvers()
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(main)()
    except Exception as err:
        refused = resource_error(err)  # a read-only or full run folder: Hydra's log file is the first write
        if (FULL_ERROR or not (refused or isinstance(err, HydraException | OSError))
                or any(frame.f_code is main.__code__ for frame, _ in traceback.walk_tb(err.__traceback__))):
            raise
        discard_sweep()
        if refused is not None:
            print(f"error: {machine_line(refused, args)}", file=sys.stderr)
            raise SystemExit(1) from None
        fail(hydra_error_line(err))


def machine_line(err: OSError, args: Sequence[str]) -> str:
    """One line for a write that the machine refused before the command started (a read-only or full folder): what,
    that nothing was written, and for a resume its checkpoint, intact, and the command that resumes it."""
    reason = EXHAUSTED[err.errno]
    line = f"{reason}: writing {err.filename or 'the output folder'} failed before anything was written"
    given = next((a.partition("=")[2] for a in args if a.startswith("ckpt_path=")), "")
    if given and Path(given).is_file():
        from vae_lightning.runs.training import saved_step

        folder = Path(err.filename).parent if err.filename else "the folder"
        line += (f"; the checkpoint {given} (step {saved_step(Path(given))}) is intact; "
                 + (f"make {folder} writable (or copy the run folder where you can write)" if err.errno in (
                    errno.EROFS, errno.EACCES, errno.EPERM) else "free some space on that device")
                 + f", then resume with: {resume_command(given)}")
    return line


def run_task(task: Callable[[], T]) -> T:
    """The body of a Hydra command: bad input (UserError) ends it with one `error:` line and exit
    status 2 (the traceback only with HYDRA_FULL_ERROR=1), leaving its output folder as it was; an
    interrupted or stopped run prints one line (with the command that resumes it) and exits non-zero."""
    from hydra.core.hydra_config import HydraConfig

    snapshot = FolderSnapshot.take(Path(HydraConfig.get().runtime.output_dir)) if HydraConfig.initialized() else None
    try:
        return task()
    except UserError as err:
        discard_output(snapshot)
        discard_sweep()
        if FULL_ERROR:
            raise
        fail(str(err))
    except Interrupted as err:
        print(f"{err}; resume with: {resume_command(err.ckpt_path)}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except RunStopped as err:
        print(f"error: {err}{LEFT_AS_IT_WAS if type(err) is WriteFailed else ''}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except OSError as err:  # a full or read-only folder met by a write of a library (an event file, a figure)
        refused = resource_error(err)
        if refused is None or FULL_ERROR:
            raise
        print(f"error: {EXHAUSTED[refused.errno]}: writing {refused.filename or 'a file'} failed{LEFT_AS_IT_WAS}",
              file=sys.stderr)
        raise SystemExit(1) from None


def discard_output(snapshot: FolderSnapshot | None = None) -> None:
    """Leave the output folder as it was before the command: a new one is removed, unless it holds results
    (RESULTS) of earlier commands; in an existing one (a resumed run, an earlier evaluation) what this
    command added is undone (`snapshot`, taken when the task started: its log lines, this resume's
    `.hydra/resume_*`)."""
    from hydra.core.hydra_config import HydraConfig

    from vae_lightning.runs.folders import RESUME_PREFIX

    if not HydraConfig.initialized():  # called as a function, not as a command
        return
    hydra_cfg = HydraConfig.get()
    output = Path(hydra_cfg.runtime.output_dir)
    logging.shutdown()  # release the job's log file before it is cut back or its folder goes
    if hydra_cfg.output_subdir and Path(hydra_cfg.output_subdir).name.startswith(RESUME_PREFIX):
        shutil.rmtree(output / hydra_cfg.output_subdir, ignore_errors=True)
    if snapshot is not None:
        snapshot.restore(PROCESS_START_NS)
    if output.is_dir() and not any((output / name).exists() for name in RESULTS) and not _existed(snapshot):
        shutil.rmtree(output, ignore_errors=True)
        _remove_new_empty_parents(output)  # and the empty folders Hydra made for it (logs/<command>/runs/)


def discard_sweep() -> None:
    """A multirun refused on bad input before any job finished leaves no folder: the multirun folder this
    process created (runs.folders.NewFolders noted it) is removed, with the empty parents it made, when no job
    folder in it holds anything (a job that failed on bad input has removed its own folder already)."""
    from vae_lightning.runs import folders

    folder = folders.new_sweep
    if folder is None or not folder.is_dir() or any(p.is_dir() and any(p.iterdir()) for p in folder.iterdir()):
        return
    logging.shutdown()
    shutil.rmtree(folder, ignore_errors=True)
    _remove_new_empty_parents(folder)


def _remove_new_empty_parents(folder: Path) -> None:
    """The empty folders above `folder` that this process made (logs/<command>/runs/, .../multiruns/), as
    runs.folders.NewFolders noted them before Hydra made them; never one that existed before."""
    from vae_lightning.runs import folders

    for parent in folder.absolute().parents:
        if parent in folders.new_folders and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
        else:
            break


def _existed(snapshot: FolderSnapshot | None) -> bool:
    """Whether the output folder held files written before this command started (then it is kept)."""
    return snapshot is not None and any(mtime < PROCESS_START_NS for _, _, mtime in snapshot.files.values())


def resume_command(ckpt_path: str) -> str:
    """The command that resumes a checkpoint of a run folder (the folder holds the run's config)."""
    return f"python -m vae_lightning.train {shlex.quote(f'ckpt_path={Path(ckpt_path).absolute()}')}"


def run_plain(task: Callable[[], T]) -> T:
    """The body of a command without Hydra's app (report, bench): bad input (a UserError, or an
    error of composing a config) is one `error:` line and exit status 2."""
    from hydra.errors import HydraException

    try:
        return task()
    except (UserError, HydraException) as err:
        if FULL_ERROR:
            raise
        fail(str(err) if isinstance(err, UserError) else hydra_error_line(err))
    except (WriteFailed, OSError) as err:
        refused = resource_error(err)
        if FULL_ERROR or refused is None:
            raise
        what = str(err) if isinstance(err, WriteFailed) else (
            f"{EXHAUSTED[refused.errno]}: writing {refused.filename or 'a file'} failed")
        print(f"error: {what}{LEFT_AS_IT_WAS}", file=sys.stderr)
        raise SystemExit(1) from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands without Hydra's app (report, bench): a bad flag is one `error:`
    line and exit status 2 too, not argparse's usage block; every flag's help shows its default;
    `groups` and `examples` end the help."""

    def __init__(self, prog: str, description: str, examples: Sequence[str], groups: str = "") -> None:
        epilog = f"{groups}\n\n{examples_text(examples)}" if groups else examples_text(examples)
        super().__init__(prog=prog, description=description, epilog=epilog, formatter_class=_HelpFormatter)

    def error(self, message: str) -> NoReturn:
        fail(f"{message}; see {self.prog} --help")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description and epilog as written, and `(default: ...)` after every flag that has a value by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "(default" not in text:
            text += " (default: %(default)s)"  # once: a help that names its default already keeps its own words
        return text


# --- --help -----------------------------------------------------------------------------------


def examples_text(examples: Sequence[str]) -> str:
    return "Examples:\n" + "\n".join(f"  {e}" for e in examples)


def _defaults_list(config_name: str) -> dict[str, str | None]:
    """group -> option of a command config's defaults list (Hydra's own groups left out)."""
    import yaml

    entries = (yaml.safe_load((CONF_DIR / f"{config_name}.yaml").read_text()) or {}).get("defaults", [])
    chosen: dict[str, str | None] = {}
    for entry in entries:
        if isinstance(entry, dict):
            ((group, option),) = entry.items()
            if not group.startswith(("override ", "hydra")):
                chosen[group] = option
    return chosen


def command_groups(config_name: str, overrides: Sequence[str] = ()) -> str:
    """One line per config group of a command: the options found in conf/<group>/, the one chosen now
    (its default, or a `group=option` among `overrides`) in brackets."""
    chosen = _defaults_list(config_name)
    for override in overrides:
        group, _, option = override.partition("=")
        if group in chosen and option:
            chosen[group] = option
    width = max(map(len, chosen), default=0)
    lines = []
    for group in sorted(chosen):
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        shown = [f"[{o}]" if o == chosen[group] else o for o in options]
        lines.append(f"  {group:{width}}  {' | '.join(shown)}" + ("   (none chosen)" if chosen[group] is None else ""))
    return "\n".join(lines)


def _value(leaf: Any) -> str:
    return "null" if leaf is None else str(leaf).lower() if isinstance(leaf, bool) else str(leaf)


def _scalars(tree: dict[str, Any], prefix: str = "", depth: int = 1) -> list[str]:
    """`key=value` of a config tree's plain values (interpolations and `_target_`s left out), `depth` levels deep."""
    pairs = []
    for key, leaf in tree.items():
        if key in ("defaults", "hydra", "task_name", "eval_dir", "_target_", "_partial_", "_recursive_"):
            continue
        if isinstance(leaf, dict):
            if depth > 0:
                pairs += _scalars(leaf, f"{prefix}{key}.", depth - 1)
        elif not (isinstance(leaf, str) and "${" in leaf):
            pairs.append(f"{prefix}{key}={_value(leaf)}")
    return pairs


def _main_keys(config_name: str, overrides: Sequence[str]) -> str:
    """The command config's own keys with their defaults (one level into its sections), then those of the
    option chosen in each group (at most a few each), wrapped at 100 columns."""
    import yaml

    pairs = _scalars(yaml.safe_load((CONF_DIR / f"{config_name}.yaml").read_text()) or {})
    chosen = _defaults_list(config_name)
    for override in overrides:
        group, _, option = override.partition("=")
        if group in chosen and option:
            chosen[group] = option
    for group, option in sorted(chosen.items()):
        path = CONF_DIR / group / f"{option}.yaml"
        if option is not None and path.is_file() and group not in ("experiment", "debug", "sampler_set", "callbacks"):
            pairs += _scalars(yaml.safe_load(path.read_text()) or {}, f"{group}.", depth=0)[:8]
    lines, line = [], " "
    for pair in pairs:
        if len(line) + len(pair) > 100:
            lines.append(line)
            line = " "
        line += f" {pair}"
    return "\n".join([*lines, line]) if pairs else ""


def command_help(config_name: str, help_text: str, examples: Sequence[str], args: Sequence[str]) -> str:
    """The text of `python -m vae_lightning.<command> --help`."""
    data = os.environ.get("VAE_DATA_ROOT", str(PROJECT_ROOT / "data"))
    logs = os.environ.get("VAE_LOG_DIR", str(PROJECT_ROOT / "logs"))
    text = help_text.strip().format(data=data, logs=logs)
    sections = [text, "Config groups (group=option picks one, group.key=value sets one of its keys; [current]):\n"
                + command_groups(config_name, args)]
    keys = _main_keys(config_name, args)
    if keys:
        sections.append("Keys and their defaults (key=value sets one; every key with its value: --cfg job):\n" + keys)
    sections.append(examples_text(examples))
    return "\n\n".join(sections) + "\n"
