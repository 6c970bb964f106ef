"""`python tests/helpers/run_commands.py --serve`: command lines run as `python -m vae_lightning.<command> <args>`,
each in its own process, for the price of one interpreter start (tests/helpers/commands.py's `run_cli` talks to
one such server per test process).

One JSON request per input line, one JSON result per output line, for as long as the input is open. A request
is {"module", "args", "env", "cwd", "timeout"}; a result is {"rc", "stdout", "stderr", "timed_out"}.

This process imports the heavy libraries once (torch, Lightning, Hydra, matplotlib, the library half of the
package) and runs no torch computation and no thread, so forking is safe. Each command then runs in a forked
child through `runpy`, exactly as `python -m` runs it: with the request's environment, working directory and
PYTHONPATH, its own stdout and stderr, no standard input, in a process group of its own (a timed-out command is
killed with whatever it started). The command layer (`vae_lightning.cli`) and the commands are not imported
here: each child imports them under its own environment. A CLI test costs a fork instead of 4-10 s of imports.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lightning  # noqa: E402, F401
import matplotlib.figure  # noqa: E402, F401
import torch  # noqa: E402, F401

import vae_lightning.callbacks  # noqa: E402, F401
import vae_lightning.data  # noqa: E402, F401
import vae_lightning.runs.training  # noqa: E402, F401

BASE_PATH = list(sys.path)


def child(module: str, args: list[str], env: dict[str, str] | None, cwd: str | None, out: int, err: int) -> None:
    """In the forked child: become `python -m module args` under `env` in `cwd`, then exit with its status."""
    os.setpgid(0, 0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # noqa: SIM115
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [*extra, *BASE_PATH]
    if cwd is not None:
        os.chdir(cwd)
    sys.argv = [module, *args]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int | None):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported like Python reports an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(module: str, args: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
        timeout: float | None = None) -> dict[str, object]:
    """Run `python -m module args` in a forked child; its exit status and output (killed after `timeout` s)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            child(module, args, env, cwd, out.fileno(), err.fileno())
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        out.seek(0)
        err.seek(0)
        return {"rc": os.waitstatus_to_exitcode(status), "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace"), "timed_out": timed_out}


def serve() -> None:
    """One request per input line, one result per output line, until EOF."""
    for line in sys.stdin:
        sys.__stdout__.write(json.dumps(run(**json.loads(line))) + "\n")
        sys.__stdout__.flush()


if __name__ == "__main__":
    serve()
