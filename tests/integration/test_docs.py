"""The documentation: the MkDocs site builds without a warning, and every command line that README.md and
docs/ show is a command that runs (its flags parse and its overrides compose with the real config)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser

from vae_lightning.runs.folders import PROJECT_ROOT, compose_config

DOC_FILES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]
# command -> the config it composes; report and bench take flags (argparse), bench then train's overrides
HYDRA_COMMANDS = {"train": "train", "evaluate": "evaluate", "sample": "sample", "beta_grid": "beta_grid",
                  "classifier": "train_classifier", "explore": "explore"}
FLAG_COMMANDS = ("report", "bench")
# flags of a Hydra app that are not overrides: (flag, takes a value)
HYDRA_FLAGS = {"-m": False, "--multirun": False, "--help": False, "-h": False, "--hydra-help": False,
               "--info": False, "--resolve": False, "--cfg": True, "-c": True, "--package": True, "-p": True}
# what the pages write for the values a reader fills in; <run> is a run folder (a fake one: composing only
# names it), every other placeholder must be one of these too, so that no command line goes unchecked
PLACEHOLDERS = {"<timestamp>": "2026-01-31_09-30-00_000000", "<job>": "0", "<study>": "2026-11-30_01-05-25_823940",
                "<free_bits>": "2026-11-30_01-21-10_054532", "<flow>": "2026-12-01_10-44-03_279880"}
FENCE = re.compile(r"^\s*(```|~~~)")
ENV_ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*=\S*\s+)+")
TOOLS = {"mkdocs": "mkdocs", "material": "mkdocs-material", "mkdocstrings": "mkdocstrings",
         "mkdocstrings_handlers.python": "mkdocstrings-python"}


def command_lines() -> list[tuple[str, str]]:
    """(file:line, command) for every `python -m vae_lightning.<command>` line inside a fenced code block of
    README.md and docs/**/*.md: continued lines (`\\`) joined, leading environment assignments
    (`OMP_NUM_THREADS=1 python -m ...`) dropped. A console transcript's `$ python -m ...` (showing an error on
    purpose) does not start with `python` and is not collected."""
    found = []
    for path in DOC_FILES:
        lines = path.read_text().splitlines()
        fenced, i = False, 0
        while i < len(lines):
            line, start = lines[i], i + 1
            i += 1
            if FENCE.match(line):
                fenced = not fenced
                continue
            if not fenced:
                continue
            text = line.strip()
            while text.endswith("\\") and i < len(lines):
                text = text[:-1] + " " + lines[i].strip()
                i += 1
            text = ENV_ASSIGNMENT.sub("", text)
            if text.startswith("python -m vae_lightning."):
                found.append((f"{path.relative_to(PROJECT_ROOT)}:{start}", text))
    return found


def substitute(text: str, run: Path) -> str:
    text = text.replace("<run>", str(run))
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The override lists a sweep's command line stands for, without composing all its combinations: its
    first job (each comma list or range at its first value), then each other value of each list with the
    rest at their first values. Hydra's own parser tells a sweep (`a=1,2`) from a list value (`a=[1,2]`)."""
    values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
              else [o.input_line] for o in OverridesParser.create().parse_overrides(overrides)]
    first = [choices[0] for choices in values]
    return [first] + [[*first[:i], value, *first[i + 1:]] for i, choices in enumerate(values) for value in choices[1:]]


def hydra_overrides(args: list[str]) -> tuple[list[str], bool]:
    """The overrides among a Hydra command's arguments, and whether the line asks for a multirun."""
    overrides, multirun, i = [], False, 0
    while i < len(args):
        arg = args[i]
        if arg in HYDRA_FLAGS:
            multirun |= arg in ("-m", "--multirun")
            i += 2 if HYDRA_FLAGS[arg] else 1
            continue
        overrides.append(arg)
        i += 1
    return overrides, multirun


def compose_line(command: str, args: list[str], output_dir: Path) -> None:
    if command in HYDRA_COMMANDS:
        overrides, multirun = hydra_overrides(args)
        for job in sweep_jobs(overrides) if multirun else [overrides]:
            compose_config(HYDRA_COMMANDS[command], job, output_dir)
        return
    module = importlib.import_module(f"vae_lightning.{command}")
    if "--help" in args or "-h" in args:
        return
    parsed = module.argument_parser().parse_args(args)
    if command == "bench":
        compose_config("train", parsed.overrides, output_dir)


def test_site_builds_strict(tmp_path):
    """`mkdocs build --strict`: every page of the nav exists, every link and API reference resolves, and
    mkdocstrings renders every module's docstrings without a warning."""
    missing = [package for module, package in TOOLS.items() if importlib.util.find_spec(module.split(".")[0]) is None
               or importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: pip install -e \".[docs]\"")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site),
                             "--config-file", str(PROJECT_ROOT / "mkdocs.yml")], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-5000:]
    assert "LatentDistribution" in (site / "api" / "latent" / "index.html").read_text()
    assert 'id="vae_lightning.load_model"' in (site / "api" / "index.html").read_text()
    assert (site / "results" / "study" / "report_curves.png").is_file()


def test_readme_links_resolve():
    """README's relative links (GitHub renders them from the repository root) name files that exist inside the
    repository (a clone has nothing beside it), and it names no file outside it."""
    text = (PROJECT_ROOT / "README.md").read_text()
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]
    assert targets, "README links into docs/"
    root = PROJECT_ROOT.resolve()
    assert [t for t in targets if t and not ((PROJECT_ROOT / t).exists()
                                              and (PROJECT_ROOT / t).resolve().is_relative_to(root))] == []
    assert "../" not in text  # no path above the repository, linked or not


@pytest.mark.full  # about 200 Hydra compositions: a minute
def test_every_documented_command_parses_and_composes(tmp_path):
    """Each documented command line names one of the seven commands, and its overrides compose with the real
    config (a `-m` sweep's first job, and each other value of its comma lists in turn), or its flags parse
    (report, bench; bench's overrides compose too). Trailing `# comments` are dropped; `<run>` stands for
    a run folder."""
    lines = command_lines()
    assert len(lines) > 50, "the command lines of README.md and docs/ were not found"
    run = tmp_path / "logs" / "train" / "runs" / PLACEHOLDERS["<timestamp>"]
    failures = []
    try:
        for where, text in lines:
            words = shlex.split(substitute(text, run), comments=True)
            command = words[2].removeprefix("vae_lightning.")
            leftover = [w for w in words if re.search(r"<[^>]*>", w)]
            if command not in (*HYDRA_COMMANDS, *FLAG_COMMANDS):
                failures.append(f"{where}: {command!r} is not one of the commands: {text}")
            elif leftover:
                failures.append(f"{where}: placeholder {leftover} (use <run> or one of {list(PLACEHOLDERS)}): {text}")
            else:
                try:
                    compose_line(command, words[3:], tmp_path / "out")
                except (Exception, SystemExit) as err:  # every line that fails, each with its place
                    failures.append(f"{where}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}: "
                                    f"{text}")
    finally:
        HydraConfig.instance().cfg = None
    assert failures == []
