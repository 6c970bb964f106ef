"""Rerun the commands whose times the docs quote, and write their times with the machine named beside them.

    python docs/timings.py                      # every command; writes docs/results/timings.md (+ .json)
    python docs/timings.py --only help,refusals # a subset (names: python docs/timings.py --list)

The commands run as a user runs them (`python -m vae_lightning.<command> ...`, each in its own process, from a
temporary folder that holds their outputs), with the data of `VAE_DATA_ROOT`. For each: wall-clock seconds, the
CPU seconds of the process and its children, the exit status; for `evaluate`, its own per-part times
(`timings_s` of metrics.json). The page names the machine (CPU model, cores, memory), the load average before
and after each command, torch's thread setting, the date and the commit: a time means nothing without them.
The docs quote these numbers and link the page; rerun the script after a change that moves them.

`--set command:key=value` adds an override to one command (e.g. `--set train:trainer.max_epochs=1` for a quick
check; the page then lists the overrides that were added, so a quick page is never mistaken for the real one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results" / "timings.md"


@dataclass(frozen=True)
class Timed:
    """One command of the docs: `argv` after `python -m vae_lightning.`; `{tmp}` is the scratch folder."""

    name: str
    argv: tuple[str, ...]
    what: str
    exit_code: int = 0  # what a correct run exits with (a refusal: 2)


# In the order they run: evaluate and sample use the run that train writes.
COMMANDS = (
    Timed("help", ("train", "--help"), "`--help` of a command"),
    Timed("refusals", ("train", "prior=betta"), "a typo in a group's option, refused", 2),
    Timed("refusal_value", ("train", "prior=beta", "prior.alpha=-1"), "a value out of range, refused", 2),
    Timed("refusal_folder", ("report", "{tmp}/no_such_sweep"), "report on a folder that does not exist", 2),
    Timed("train", ("train", "prior=beta", "prior.alpha=4", "prior.beta=3", "hydra.run.dir={tmp}/run",
                    "paths.log_dir={tmp}/logs", "callbacks.progress_bar.refresh_rate=0"),
          "the headline command: 20 epochs on 55k images"),
    Timed("evaluate", ("evaluate", "ckpt_path={tmp}/run", "progress=false"),
          "evaluate at its defaults (the classifier cached beforehand)"),
    Timed("sample", ("sample", "ckpt_path={tmp}/run", "paths.log_dir={tmp}/logs"), "sample 64 images from the prior"),
)


@dataclass
class Measured:
    name: str
    command: str
    what: str
    wall_s: float
    cpu_s: float
    exit_code: int
    expected_exit_code: int
    load_before: float
    load_after: float
    parts_s: dict[str, float] = field(default_factory=dict)


def machine() -> dict[str, object]:
    """What the times were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else \
        platform.processor()
    memory_gb = None
    if Path("/proc/meminfo").exists():
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory_gb = round(kb / 2**20, 1)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory_gb, "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset (torch's default)"),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit}


def run(timed: Timed, tmp: Path, extra: list[str]) -> Measured:
    argv = [a.format(tmp=tmp) for a in timed.argv] + extra
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"vae_lightning.{argv[0]}", *argv[1:]], cwd=tmp,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != timed.exit_code:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"error: {timed.name} exited {done.returncode}, expected {timed.exit_code}: "
                         + " | ".join(tail))
    parts: dict[str, float] = {}
    metrics = tmp / "run" / "eval" / "metrics.json"
    if timed.name == "evaluate" and metrics.exists():
        parts = {k: round(float(v), 1) for k, v in json.loads(metrics.read_text()).get("timings_s", {}).items()
                 if isinstance(v, (int, float))}
    shown = " ".join(a if a != str(tmp) else "<tmp>" for a in argv).replace(str(tmp), "<tmp>")
    return Measured(timed.name, f"python -m vae_lightning.{shown}", timed.what, round(wall, 2), round(cpu, 2),
                    done.returncode, timed.exit_code, round(load_before, 2), round(os.getloadavg()[0], 2), parts)


def page(found: dict[str, object], rows: list[Measured], added: dict[str, list[str]]) -> str:
    lines = ["# Timings", "",
             "The times the docs quote, measured by `python docs/timings.py` (it reruns the commands and rewrites",
             "this page). Wall-clock and CPU seconds of each command as a user runs it, one process per command.",
             "", f"Machine: {found['cpu']}, {found['cores']} cores, {found['memory_gb']} GB; Python "
             f"{found['python']}; OMP_NUM_THREADS {found['omp_num_threads']}; measured {found['date']} at "
             f"commit {found['commit']}.", ""]
    if added:
        lines += ["**Not the defaults**: these overrides were added: "
                  + "; ".join(f"{k}: {' '.join(v)}" for k, v in added.items()) + ".", ""]
    lines += ["| command | what | wall s | CPU s | load before / after | exit |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r.command}` | {r.what} | {r.wall_s} | {r.cpu_s} | {r.load_before} / {r.load_after} | "
                     f"{r.exit_code} |")
    for r in rows:
        if r.parts_s:
            lines += ["", f"`{r.name}` by part (its `timings_s`, seconds):", "", "| part | s |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in r.parts_s.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the names and commands, run nothing")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:ARGUMENT",
                        help="an extra argument (an override) for one command (repeatable)")
    parser.add_argument("--out", type=Path, default=PAGE, help=f"the page to write (default {PAGE})")
    args = parser.parse_args(argv)
    if args.list:
        for t in COMMANDS:
            print(f"{t.name:15} python -m vae_lightning.{' '.join(t.argv)}")
        return
    names = [t.name for t in COMMANDS]
    chosen = args.only.split(",") if args.only else names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise SystemExit(f"error: --only {','.join(unknown)} is not a timed command; choose from {', '.join(names)}")
    added: dict[str, list[str]] = {}
    for item in args.set:
        name, sep, override = item.partition(":")
        if not sep or name not in names or not override:
            raise SystemExit(f"error: --set {item} is not NAME:ARGUMENT with NAME one of {', '.join(names)}")
        added.setdefault(name, []).append(override)
    if {"evaluate", "sample"} & set(chosen) and "train" not in chosen:
        raise SystemExit("error: evaluate and sample use the run that train writes; add train to --only")
    found = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vae_timings_") as scratch:
        for timed in COMMANDS:
            if timed.name in chosen:
                rows.append(run(timed, Path(scratch), added.get(timed.name, [])))
                print(f"{rows[-1].name}: {rows[-1].wall_s} s wall, {rows[-1].cpu_s} s CPU", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page(found, rows, added))
    args.out.with_suffix(".json").write_text(json.dumps({"machine": found, "added": added,
                                                         "commands": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
