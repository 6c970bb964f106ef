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


class FolderSnapshot:
    """What a folder holds at one moment (every file's size and times, every subfolder), so that a command
    that then fails can leave the folder as it was: files and folders it added are removed, and files it
    appended to (logs) are cut back to their size, with their times restored.

    A file written over with other bytes cannot be put back: commands write those only after their input
    is validated, or into a folder of their own.
    """

    def __init__(self, root: Path, files: dict[Path, tuple[int, int, int]], folders: set[Path]) -> None:
        self.root, self.files, self.folders = root, files, folders

    @classmethod
    def take(cls, root: Path) -> FolderSnapshot:
        files: dict[Path, tuple[int, int, int]] = {}
        folders: set[Path] = set()
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_dir():
                    folders.add(path)
                elif path.is_file():
                    stat = path.stat()
                    files[path] = (stat.st_size, stat.st_atime_ns, stat.st_mtime_ns)
        return cls(root, files, folders)

    def restore(self, since_ns: int) -> None:
        """Undo what was added to the folder: files and folders that are new, and empty files made after
        `since_ns` (the process start: the log file Hydra opened for this command), are removed; files that
        grew are cut back to their size and keep their times."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                if path not in self.folders and not any(path.iterdir()):
                    path.rmdir()
                continue
            before = self.files.get(path)
            if before is None or (before[0] == 0 and before[2] >= since_ns):
                path.unlink(missing_ok=True)
            elif path.stat().st_size > before[0]:
                os.truncate(path, before[0])
                os.utime(path, ns=(before[1], before[2]))
        for path in sorted(self.root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and path not in self.folders and not any(path.iterdir()):
                path.rmdir()
