"""`python tests/helpers/run_commands.py < cases.json`: many command lines, each run as
`python -m vae_lightning.<command> <args>` in its own process, for the price of one interpreter start.

Input: a JSON list of [module, [args...]]. Output (stdout): a JSON list of {"rc", "stdout", "stderr"}.
With `--serve`, one case per line in and one result per line out, for as long as the input is open.
This process imports the heavy libraries once (and runs no torch computation, so forking is safe);
each command then runs in a forked child through `runpy`, exactly as `python -m` runs it, with its
own stdout and stderr. A CLI test costs a fork instead of 4-10 s of imports.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lightning  # noqa: E402, F401
import matplotlib.figure  # noqa: E402, F401
import torch  # noqa: E402, F401

import vae_lightning.callbacks  # noqa: E402, F401
import vae_lightning.cli  # noqa: E402, F401
import vae_lightning.data  # noqa: E402, F401
import vae_lightning.runs.training  # noqa: E402, F401


def run(module: str, args: list[str]) -> dict[str, object]:
    """Run `python -m module args` in a forked child; its exit status and output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # noqa: SIM115
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
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {"rc": os.waitstatus_to_exitcode(status), "stdout": out.read().decode(), "stderr": err.read().decode()}


def serve() -> None:
    """`--serve`: one JSON [module, [args...]] per input line, one JSON result per output line, until EOF
    (for tests that decide their next command from the last one's outcome, e.g. a property-based test)."""
    for line in sys.stdin:
        module, args = json.loads(line)
        sys.__stdout__.write(json.dumps(run(module, args)) + "\n")
        sys.__stdout__.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        print(json.dumps([run(module, args) for module, args in json.load(sys.stdin)]))
