"""Resources exhausted, in our words: a full disk while a checkpoint, TensorBoard events, an evaluation or a report is
written, a read-only run folder on resume, memory running out in a training step. Each ends the command with one
`error:` line naming what was written where (and its size), the last good checkpoint with its step, intact, and
how to go on; exit status 1; no temporary file left.

The faults are injected (tests/helpers/faulty.py: an OSError(ENOSPC) halfway through the write, EROFS when the log
file is opened, torch.OutOfMemoryError in a step), so that they land at an exact moment on any machine; one test
also fills a real tmpfs where the tests may mount one (root)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers.commands import HELPERS, QUICK, evaluate_overrides, run_cli, train_run

STEPS = 2  # the tiny run's checkpoint: one epoch of two steps
FAULTY = {"PYTHONPATH": os.pathsep.join([str(HELPERS.parent), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def tiny_run(mnist_root, tmp_path_factory) -> Path:
    log_dir = tmp_path_factory.mktemp("tiny")
    return train_run(mnist_root, log_dir, "trainer.max_epochs=1", f"trainer.limit_train_batches={STEPS}",
                     "test=false", "~callbacks.prior_grid")


def copy_of(run: Path, tmp_path: Path) -> tuple[Path, Path]:
    copy = Path(shutil.copytree(run, tmp_path / "runs" / "mine"))
    return copy, copy / "checkpoints" / "last.ckpt"


def error_line(result) -> str:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    return line


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def resume(last: Path, *extra: str, env: dict[str, str] | None = None):
    """A resume to the end of the second epoch, with a fault chosen by `env` (tests/helpers/faulty.py)."""
    return run_cli("helpers.faulty", "train", f"ckpt_path={last}", "trainer.max_epochs=2", *extra,
                   env={**FAULTY, **(env or {})})


def kept(last: Path) -> str:
    return f"the last good checkpoint {last} (step {STEPS}) is intact, and nothing half-written is left"


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_good_one(tiny_run, tmp_path):
    run, last = copy_of(tiny_run, tmp_path)
    before = last.read_bytes()
    result = resume(last, env={"VAE_TEST_NO_SPACE": "*.ckpt"})
    line = error_line(result)
    assert re.fullmatch(rf"error: no space left on the device in {run / 'checkpoints'}: writing (last|epoch_001)\.ckpt "
                        r"\(about \d+\.\d MB, [\d.]+ (bytes|kB|MB) of it written\) failed; "
                        rf"{re.escape(kept(last))}; free some space on that device, then resume with: "
                        rf"python -m vae_lightning.train ckpt_path={last}", line), line
    assert last.read_bytes() == before and not temporaries(run)
    again = run_cli("vae_lightning.train", f"ckpt_path={last}", "trainer.max_epochs=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert torch.load(last, weights_only=False)["global_step"] == 2 * STEPS


def test_a_full_disk_while_writing_events_names_them_and_the_last_checkpoint(tiny_run, tmp_path):
    run, last = copy_of(tiny_run, tmp_path)
    line = error_line(resume(last, env={"VAE_TEST_EVENTS_NO_SPACE": "2"}))
    assert line == (f"error: no space left on the device in {run}: writing TensorBoard events failed; {kept(last)}; "
                    f"free some space on that device, then resume with: python -m vae_lightning.train ckpt_path={last}")


def test_a_full_disk_while_writing_the_log_stops_the_run_in_one_line(tiny_run, tmp_path):
    run, last = copy_of(tiny_run, tmp_path)
    before = last.read_bytes()
    result = resume(last, env={"VAE_TEST_LOG_NO_SPACE": "3"})
    line = error_line(result)
    assert line == (f"error: no space left on the device in {run}: writing train.log failed; {kept(last)}; free some "
                    f"space on that device, then resume with: python -m vae_lightning.train ckpt_path={last}")
    assert "Logging error" not in result.stderr and last.read_bytes() == before


def test_out_of_memory_in_a_step_names_the_step_and_a_smaller_batch(tiny_run, tmp_path):
    run, last = copy_of(tiny_run, tmp_path)
    before = last.read_bytes()
    line = error_line(resume(last, env={"VAE_TEST_OOM_AT_STEP": str(STEPS + 1)}))
    assert line == (f"error: out of memory in training step {STEPS + 2} (epoch 1) (CUDA out of memory. Tried to "
                    f"allocate 2.00 GiB (GPU 0; 1.00 GiB free)); {kept(last)}; resume with: python -m "
                    f"vae_lightning.train ckpt_path={last} data.batch_size=16 (a smaller batch)")
    assert last.read_bytes() == before


def test_a_read_only_run_folder_on_resume_is_one_line_and_changes_nothing(tiny_run, tmp_path):
    run, last = copy_of(tiny_run, tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    folders = sorted(run.rglob("*"))
    result = resume(last, env={"VAE_TEST_READ_ONLY": "1"})
    assert result.returncode == 1 and result.stdout == "", result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"error: read-only file system: writing {run / 'train.log'} failed before anything was written; the checkpoint "
        f"{last} (step {STEPS}) is intact; make {run} writable (or copy the run folder where you can write), then "
        f"resume with: python -m vae_lightning.train ckpt_path={last}"]
    assert sorted(run.rglob("*")) == folders and {p: p.read_bytes() for p in before} == before


def test_a_full_disk_while_writing_an_evaluation_or_a_report_leaves_no_part_of_it(tiny_run, small_sweep, mnist_root,
                                                                                   tmp_path):
    run, _ = copy_of(tiny_run, tmp_path)
    evaluate = run_cli("helpers.faulty", "evaluate", *evaluate_overrides(run, mnist_root, tmp_path / "cache"), *QUICK,
                       "log_to_trackers=false", env={**FAULTY, "VAE_TEST_NO_SPACE": "metrics.json"})
    line = error_line(evaluate)
    assert re.fullmatch(rf"error: no space left on the device in {run / 'eval'}: writing metrics\.json \(about "
                        r"\d+\.\d kB, [\d.]+ (bytes|kB) of it written\) failed; nothing half-written is left: "
                        r"every file there is whole, the new one or the one before", line), line
    assert not (run / "eval" / "metrics.json").exists() and not temporaries(run)

    out = tmp_path / "report"
    report = run_cli("helpers.faulty", "report", str(small_sweep), "--out", str(out),
                     env={**FAULTY, "VAE_TEST_NO_SPACE": "report.md"})
    line = error_line(report)
    assert line.startswith(f"error: no space left on the device in {out}: writing report.md (about "), line
    assert not (out / "report.md").exists() and not temporaries(out)


def mount_tmpfs(folder: Path, size: int) -> bool:
    """A tmpfs of `size` bytes at `folder`, where this process may mount one (root in a container that lets it)."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_a_really_full_tmpfs_while_saving_a_checkpoint(tiny_run, tmp_path):
    """The same as the injected ENOSPC, on a real file system that fills: a tmpfs just larger than the run folder."""
    disk = tmp_path / "disk"
    used = sum(p.stat().st_size for p in tiny_run.rglob("*") if p.is_file())
    if not mount_tmpfs(disk, used + 2**20):
        pytest.skip("no tmpfs can be mounted here (needs root); the injected ENOSPC tests cover the same path")
    try:
        run = Path(shutil.copytree(tiny_run, disk / "run"))
        last = run / "checkpoints" / "last.ckpt"
        before = last.read_bytes()
        result = run_cli("vae_lightning.train", f"ckpt_path={last}", "trainer.max_epochs=2")
        line = error_line(result)
        assert line.startswith(f"error: no space left on the device in {run / 'checkpoints'}: writing "), line
        assert line.endswith(f"{kept(last)}; free some space on that device, then resume with: python -m "
                             f"vae_lightning.train ckpt_path={last}"), line
        assert last.read_bytes() == before and not temporaries(run)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
