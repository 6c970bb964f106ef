"""One writer per run folder: training (a run, a resume, a sweep's job) holds an advisory lock on
`<run>/.lock` while it writes checkpoints, logs and events, and a second writer is refused in one line
naming the holder (host, pid, command, since when).

The lock is `flock(2)` on an open file: the kernel releases it when the holder's process ends, however it ends
(a kill, a crash, a SLURM requeue), so a killed run never leaves a stale lock that blocks its own resume; the
file's contents only name the last holder. Readers (evaluate of a checkpoint, report, TensorBoard) take no lock.
On NFS, Linux turns `flock` into a POSIX byte-range lock that the server arbitrates (NFSv4, or v3 with lockd), so
two machines of a cluster exclude each other too; on a filesystem without locking (some FUSE mounts) `flock`
fails, and training goes on without the lock after saying so in its log.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from vae_lightning.core.errors import UserError

LOCK_FILE = ".lock"
# where a process of a distributed run finds its global rank, in the order Lightning reads them
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
log = logging.getLogger(__name__)


def other_rank() -> bool:
    """Whether this process is a rank other than 0 of a distributed run: DDP's re-launched processes run the
    command again in the run folder of rank 0, which holds (and checks) its lock for all of them."""
    value = next((os.environ[name] for name in RANK_VARIABLES if name in os.environ), "0")
    return value.strip() not in ("", "0")


@contextmanager
def run_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold the run folder's lock for the block (`command`: what the holder runs, for whoever is refused); a
    UserError naming the holder when another process holds it."""
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy(folder, fd) from None
        except OSError as err:  # a filesystem without locks
            log.warning("%s cannot be locked (%s); training without the one-writer lock", path, err)
            yield
            return
        record = {"host": socket.gethostname(), "pid": os.getpid(), "command": command,
                  "since": datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # and with it the lock


def check_free(folder: Path) -> None:
    """A UserError naming the holder when another process holds the folder's lock now; nothing is written (a
    command checks this before Hydra writes its config and log into the folder, then takes the lock)."""
    path = folder / LOCK_FILE
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a writer's exclusive lock refuses it
    except BlockingIOError:
        raise busy(folder, fd) from None
    except OSError:  # a filesystem without locks: run_lock says so
        pass
    finally:
        os.close(fd)


def busy(folder: Path, fd: int) -> UserError:
    return UserError(f"{folder} is being written by another process ({holder(fd)}); wait for it to end, or train "
                     "into another folder")


def holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote into the lock file."""
    try:
        record = json.loads(os.pread(fd, 65536, 0) or b"{}")
        return f"pid {record['pid']} on {record['host']}, since {record['since']}: {record['command']}"
    except (ValueError, KeyError):
        return "a process that has not said who it is yet"
