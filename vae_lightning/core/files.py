"""Atomic writes: a file is replaced whole or not at all, so a reader or a crash never sees a part
of it (checkpoints, status files, evaluation results, caches)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)


def write_atomically(path: Path, write: Callable[[BinaryIO], None], sync: bool = False) -> None:
    """Write `path` by `write(file)` into `.<name>.tmp-<pid>` beside it, then rename that over
    `path` (atomic within a folder): readers and crashes see the previous complete file or the new
    one, never a part of it. The temporary file is removed on any failure. `sync`: flush it to the
    disk before the rename (for files whose loss would lose work: checkpoints)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(target: Path) -> None:
    """Delete temporary files of `target` left by writers that no longer run (killed mid-save).

    Only on POSIX, where `os.kill(pid, 0)` tells whether a process exists (on Windows it would
    terminate it)."""
    if os.name != "posix":
        return
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        pid = tmp.name.rpartition("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            log.info("removed %s, left by a writer that was killed", tmp)
        except PermissionError:  # alive, another user's
            continue
