"""`python tests/helpers/instrumented_train.py <overrides>`: the real `python -m vae_lightning.train`, with a
test instrument chosen by the environment, so that a test can act at an exact moment of a run.

VAE_TEST_PAUSE_AT_STEP=N  before training step N, create $VAE_TEST_MARKER and wait (up to 5 min)
                          until $VAE_TEST_MARKER.go exists; the test sends a signal meanwhile.
VAE_TEST_SLOW_SAVE=1      a `torch.save` into a file that replaces an existing last.ckpt writes half
                          its bytes, creates $VAE_TEST_MARKER and hangs; the test kills the process.
"""

from __future__ import annotations

import io
import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vae_lightning.model import VAEModule  # noqa: E402

MARKER = Path(os.environ["VAE_TEST_MARKER"])


def wait_for(path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def pause_at(step: int) -> None:
    training_step = VAEModule.training_step

    def paused_training_step(self, batch, batch_idx):
        if self.global_step == step:
            MARKER.touch()
            wait_for(MARKER.with_name(MARKER.name + ".go"))
        return training_step(self, batch, batch_idx)

    VAEModule.training_step = paused_training_step


def slow_save() -> None:
    save = torch.save

    def half_then_hang(obj, f, *args, **kwargs):
        name = Path(str(getattr(f, "name", "")))  # the temporary file, or last.ckpt for an in-place writer
        writes_last = name.name == "last.ckpt" or name.name.startswith(".last.ckpt.tmp-")
        if not (writes_last and (name.parent / "last.ckpt").exists()):
            return save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        MARKER.touch()
        time.sleep(300)

    torch.save = half_then_hang


if "VAE_TEST_PAUSE_AT_STEP" in os.environ:
    pause_at(int(os.environ["VAE_TEST_PAUSE_AT_STEP"]))
if os.environ.get("VAE_TEST_SLOW_SAVE") == "1":
    slow_save()
sys.argv = ["vae_lightning.train", *sys.argv[1:]]
runpy.run_module("vae_lightning.train", run_name="__main__", alter_sys=True)
