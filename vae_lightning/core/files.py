"""Atomic writes: a file is replaced whole or not at all, so a reader or a crash never sees a part
of it (checkpoints, status files, evaluation results, caches)."""

from __future__ import annotations

import errno
import io
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from vae_lightning.core.errors import WriteFailed

log = logging.getLogger(__name__)

# the errors of a write that the machine refused for want of resources, in words
EXHAUSTED = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
             errno.EFBIG: "file too large for its file system", errno.EROFS: "read-only file system",
             errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}


def resource_error(err: BaseException | None) -> OSError | None:
    """The OSError of exhausted resources (EXHAUSTED) behind `err`: itself, or its cause or context (torch's zip
    writer reports a full disk as a RuntimeError raised while handling the OSError); None if there is none."""
    return next((e for e in causes(err) if isinstance(e, OSError) and e.errno in EXHAUSTED), None)


def causes(err: BaseException | None) -> Iterator[BaseException]:
    """`err`, then what it was raised from or while handling, and so on."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def write_atomically(path: Path, write: Callable[[BinaryIO], None], sync: bool = False,
                     size: int | None = None) -> None:
    """Write `path` by `write(file)` into `.<name>.tmp-<pid>` beside it, then rename that over
    `path` (atomic within a folder): readers and crashes see the previous complete file or the new
    one, never a part of it. The temporary file is removed on any failure; a failure for want of space, quota or
    permission is a WriteFailed naming the file and its size (`size`: what it would have had, when known).
    `sync`: flush it to the disk before the rename (for files whose loss would lose work: checkpoints)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        written = tmp.stat().st_size if tmp.is_file() else None
        tmp.unlink(missing_ok=True)
        cause = resource_error(err)
        if cause is None:
            raise
        raise WriteFailed(path, EXHAUSTED[cause.errno], written, size) from err


def write_text_atomically(path: Path, text: str) -> None:
    """`path` holds `text` (UTF-8), written atomically (`write_atomically`)."""
    data = text.encode()
    write_atomically(path, lambda f: f.write(data), size=len(data))


@contextmanager
def atomic_text(path: Path) -> Iterator[io.StringIO]:
    """A text file written atomically: what the block writes (newlines as written, as `open(newline="")` keeps them,
    for csv) reaches `path` when the block ends, whole."""
    buffer = io.StringIO(newline="")
    yield buffer
    write_text_atomically(path, buffer.getvalue())


def save_figure(figure: Any, path: Path, **kwargs: Any) -> None:
    """A matplotlib figure saved to `path` atomically, in the format of its suffix (`kwargs`: savefig's)."""
    buffer = io.BytesIO()  # drawn first: a failed write can say how large the file was to be
    figure.savefig(buffer, format=path.suffix.lstrip("."), **kwargs)
    data = buffer.getvalue()
    write_atomically(path, lambda f: f.write(data), size=len(data))


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
