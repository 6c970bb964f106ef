"""The one command layer of every entry point (`python -m vae_lightning.<command>`).

Bad input of any kind (an unknown option of a config group, an unknown key, an override that does
not parse, a value of the wrong type or range, a missing or unreadable file) ends as one line
`error: <key>=<value> ...; <what is accepted>` on stderr with exit status 2, without a traceback
(unless HYDRA_FULL_ERROR=1) and without a new output folder. An interrupted training prints the
command that resumes it and exits 130 (SIGINT) or 143 (SIGTERM). `--help` prints what the command
does, its config groups with the options found in conf/, and example command lines.

A Hydra command is a `@hydra.main` function whose body is `cli.run_task(...)`, started with
`cli.run(main, __doc__, EXAMPLES)`; `report` and `bench` parse their flags with `cli.ArgumentParser`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import shutil
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from vae_lightning.core.errors import Interrupted, RunStopped, UserError
from vae_lightning.runs.folders import CONF_DIR, RESUME_PREFIX

T = TypeVar("T")

# HYDRA_FULL_ERROR=1 as the user set it when the process started (`run` sets it for Hydra's sake):
# full tracebacks instead of one-line errors.
FULL_ERROR = os.environ.get("HYDRA_FULL_ERROR") == "1"

# The run folder in the commands' examples (a real one is named like it)
EXAMPLE_RUN = "logs/train/runs/2026-01-31_09-30-00_000000"

# What a command leaves in its output folder that an error must never remove: a run's checkpoints,
# an earlier evaluation's results.
RESULTS = ("checkpoints", "metrics.json")


def fail(message: str) -> NoReturn:
    """End the command: one line `error: <message>` on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def hydra_error_line(err: Exception) -> str:
    """One line for an error Hydra raises before the task starts."""
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


def run(main: Callable[[], Any], doc: str | None, examples: Sequence[str]) -> None:
    """Start a `@hydra.main` command, its help being `doc`, its config groups and `examples`.

    Hydra's own errors (an unknown option or key, a bad override, a run folder that cannot be
    created) become one `error:` line with exit status 2. Hydra prints them over several lines and
    exits 1; with HYDRA_FULL_ERROR set it raises them instead, so it is set here (unless the user
    set it: then the traceback). An error raised inside the task function keeps its traceback.
    """
    _register_help(doc or "", examples)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OSError) as err:
        task = main.__wrapped__.__code__  # the function under @hydra.main
        if FULL_ERROR or any(frame.f_code is task for frame, _ in traceback.walk_tb(err.__traceback__)):
            raise
        fail(hydra_error_line(err))


def run_task(task: Callable[[], T]) -> T:
    """The body of a Hydra command: bad input (UserError) ends it with one `error:` line and exit
    status 2 (the traceback only with HYDRA_FULL_ERROR=1), leaving no new output folder behind; an
    interrupted or stopped run prints one line (with the command that resumes it) and exits non-zero."""
    try:
        return task()
    except UserError as err:
        discard_output()
        if FULL_ERROR:
            raise
        fail(str(err))
    except Interrupted as err:
        print(f"{err}; resume with: {resume_command(err.ckpt_path)}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except RunStopped as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None


def discard_output() -> None:
    """Remove what Hydra created for this command: its output folder, unless that holds results
    (RESULTS) of earlier commands; for a resumed run only this resume's `.hydra/resume_*`."""
    if not HydraConfig.initialized():  # called as a function, not as a command
        return
    hydra_cfg = HydraConfig.get()
    output = Path(hydra_cfg.runtime.output_dir)
    logging.shutdown()  # release the job's log file before its folder goes
    if Path(hydra_cfg.output_subdir).name.startswith(RESUME_PREFIX):
        shutil.rmtree(output / hydra_cfg.output_subdir, ignore_errors=True)
    elif not any((output / name).exists() for name in RESULTS):
        shutil.rmtree(output, ignore_errors=True)


def resume_command(ckpt_path: str) -> str:
    """The command that resumes a checkpoint of a run folder (the folder holds the run's config)."""
    return f"python -m vae_lightning.train {shlex.quote(f'ckpt_path={Path(ckpt_path).absolute()}')}"


def run_plain(task: Callable[[], T]) -> T:
    """The body of a command without Hydra's app (report, bench): bad input (a UserError, or an
    error of composing a config) is one `error:` line and exit status 2."""
    try:
        return task()
    except (UserError, HydraException) as err:
        if FULL_ERROR:
            raise
        fail(str(err) if isinstance(err, UserError) else hydra_error_line(err))


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands without Hydra's app (report, bench): a bad flag is one `error:`
    line and exit status 2 too, not argparse's usage block; `groups` and `examples` end the help."""

    def __init__(self, prog: str, doc: str | None, examples: Sequence[str], groups: str = "") -> None:
        epilog = f"{groups}\n\n{examples_text(examples)}" if groups else examples_text(examples)
        super().__init__(prog=prog, description=doc, epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message: str) -> NoReturn:
        fail(f"{message}; see {self.prog} --help")


# --- --help -----------------------------------------------------------------------------------


def examples_text(examples: Sequence[str]) -> str:
    return "Examples:\n" + "\n".join(f"  {e}" for e in examples)


def config_groups(choices: Mapping[str, str | None]) -> str:
    """One line per config group of a composed config (`hydra.runtime.choices`, Hydra's own groups
    left out): its options, the files of conf/<group>/, and the one chosen now."""
    lines = []
    for group in sorted(g for g in choices if not g.startswith("hydra")):
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        lines.append(f"  {group}: {', '.join(options)}  (now: {choices[group] or 'none'})")
    return "\n".join(lines)


def command_groups(config_name: str) -> str:
    """`config_groups` of a command's config composed without overrides, for commands that compose
    it themselves (bench)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return config_groups(compose(config_name, return_hydra_config=True).hydra.runtime.choices)


def _register_help(doc: str, examples: Sequence[str]) -> None:
    """The resolver behind conf/hydra/help/command.yaml's template, for this process's command."""
    def text() -> str:
        groups = config_groups(HydraConfig.get().runtime.choices)
        body = (f"{doc.strip()}\n\nConfig groups (group=option; group.key=value sets one key):\n{groups}\n\n"
                f"{examples_text(examples)}\n\nAll keys and their values: --cfg job. Hydra's own flags: --hydra-help\n")
        return body.replace("$", "$$")  # Hydra reads the template with string.Template
    OmegaConf.register_new_resolver("vae_help", text, replace=True)

