"""`python -m helpers.faulty <command> <args>` (tests/ on PYTHONPATH; `run_cli("helpers.faulty", ...)` runs it in the
command server): `python -m vae_lightning.<command> <args>` with a fault of the machine injected, as the
environment chooses, so that a test meets a full disk, a read-only folder or memory running out at an exact
moment without needing one:

VAE_TEST_NO_SPACE=<pattern>[:<skip>]  the atomic write of a file whose name matches the glob <pattern> (a
                                      checkpoint, metrics.json, report.md) writes half of its first large block,
                                      then fails with ENOSPC, as a full disk does; the first <skip> such files are
                                      written whole
VAE_TEST_EVENTS_NO_SPACE=<n>          the n-th TensorBoard event that is written fails with ENOSPC
VAE_TEST_LOG_NO_SPACE=<n>             the n-th line written to a log file (train.log) fails with ENOSPC
VAE_TEST_READ_ONLY=1                  opening a log file fails with EROFS (a run folder on a read-only mount)
VAE_TEST_OOM_AT_STEP=<n>              training step n (the global step before it) runs out of memory
VAE_TEST_KILL_AT=<moment>:<n>         the process SIGKILLs itself (as the kernel's OOM killer or a scheduler would)
                                      step:<n>        inside the training step at global step n, after its forward pass
                                      validation:<n>  inside the n-th validation step of this process (the sanity
                                                      check's count too)
                                      save:<n>        halfway through writing the n-th checkpoint of this process
                                      flush:<n>       as the n-th TensorBoard flush of this process begins, its events
                                                      handed to the writer thread
"""

from __future__ import annotations

import errno
import fnmatch
import io
import logging
import os
import runpy
import signal
import sys
from pathlib import Path

import torch
from tensorboard.summary.writer import event_file_writer

import vae_lightning.core.files as files
from vae_lightning.model import VAEModule
from vae_lightning.model.members import MemberStack

# the training steps a fault can be injected into: a single run's and a K-member run's
MODELS = (VAEModule, MemberStack)


def no_space(error: int = errno.ENOSPC, filename: object = None) -> OSError:
    return OSError(error, os.strerror(error), *([filename] if filename is not None else []))


class HalfWritten(io.FileIO):
    """A file on a disk that fills during its first large write (512 bytes or more, or past 64 kB in all): half of that
    write lands, then ENOSPC."""

    written = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        if len(view) < 512 and self.written + len(view) <= 65536:
            self.written += len(view)
            return super().write(view)
        super().write(view[: len(view) // 2])
        raise no_space()


def fill_disk_at(pattern: str, skip: int) -> None:
    writes = {"seen": 0}

    def faulty_open(path: str | os.PathLike, mode: str = "r", *args: object, **kwargs: object):
        name = Path(path).name
        target = name[1:].rpartition(".tmp-")[0] if ".tmp-" in name else name
        if "w" in mode and fnmatch.fnmatch(target, pattern):
            writes["seen"] += 1
            if writes["seen"] > skip:
                return HalfWritten(path, "wb")
        return open(path, mode, *args, **kwargs)

    files.open = faulty_open  # the module's `open`: what write_atomically calls


def fill_disk_at_event(n: int) -> None:
    write = event_file_writer._AsyncWriter.write
    count = {"seen": 0}

    def faulty_write(self, data: bytes) -> None:
        count["seen"] += 1
        if count["seen"] >= n:
            raise no_space()
        write(self, data)

    event_file_writer._AsyncWriter.write = faulty_write


def fill_disk_at_log_line(n: int) -> None:
    flush = logging.FileHandler.flush
    count = {"seen": 0}

    def faulty_flush(self: logging.FileHandler) -> None:
        count["seen"] += 1
        if count["seen"] >= n:
            raise no_space()
        flush(self)

    logging.FileHandler.flush = faulty_flush


def read_only_logs() -> None:
    def refuse(self: logging.FileHandler):
        raise no_space(errno.EROFS, self.baseFilename)

    logging.FileHandler._open = refuse


def out_of_memory_at(step: int) -> None:
    for model in MODELS:
        training_step = model.training_step

        def step_that_runs_out(self, batch, batch_idx, training_step=training_step):
            if self.global_step == step:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 1.00 GiB free)")
            return training_step(self, batch, batch_idx)

        model.training_step = step_that_runs_out


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at(moment: str, n: int) -> None:
    count = {"seen": 0}

    def nth() -> bool:
        count["seen"] += 1
        return count["seen"] == n

    if moment == "step":
        for model in MODELS:
            def step_then_die(self, batch, batch_idx, training_step=model.training_step):
                out = training_step(self, batch, batch_idx)
                if self.global_step == n:
                    die()
                return out

            model.training_step = step_then_die
    elif moment == "validation":
        for model in MODELS:
            def validate_then_die(self, batch, batch_idx, validation_step=model.validation_step):
                out = validation_step(self, batch, batch_idx)
                if nth():
                    die()
                return out

            model.validation_step = validate_then_die
    elif moment == "save":
        save = torch.save

        def half_then_die(obj, f, *args, **kwargs):
            if not (isinstance(obj, dict) and "state_dict" in obj and nth()):
                return save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            save(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            die()

        torch.save = half_then_die
    elif moment == "flush":
        flush = event_file_writer.EventFileWriter.flush

        def die_in_flush(self):
            if nth():
                die()
            flush(self)

        event_file_writer.EventFileWriter.flush = die_in_flush
    else:
        raise ValueError(f"VAE_TEST_KILL_AT={moment}:{n}: no such moment")


if "VAE_TEST_KILL_AT" in os.environ:
    moment, _, n = os.environ["VAE_TEST_KILL_AT"].partition(":")
    kill_at(moment, int(n))
if "VAE_TEST_NO_SPACE" in os.environ:
    pattern, _, skip = os.environ["VAE_TEST_NO_SPACE"].partition(":")
    fill_disk_at(pattern, int(skip or 0))
if "VAE_TEST_EVENTS_NO_SPACE" in os.environ:
    fill_disk_at_event(int(os.environ["VAE_TEST_EVENTS_NO_SPACE"]))
if "VAE_TEST_LOG_NO_SPACE" in os.environ:
    fill_disk_at_log_line(int(os.environ["VAE_TEST_LOG_NO_SPACE"]))
if os.environ.get("VAE_TEST_READ_ONLY") == "1":
    read_only_logs()
if "VAE_TEST_OOM_AT_STEP" in os.environ:
    out_of_memory_at(int(os.environ["VAE_TEST_OOM_AT_STEP"]))
command, *arguments = sys.argv[1:]
sys.argv = [f"vae_lightning.{command}", *arguments]
runpy.run_module(f"vae_lightning.{command}", run_name="__main__", alter_sys=True)
