"""An earlier result is never replaced unasked (vae_lightning.runs.earlier): evaluate, sample, beta_grid and report
replace their output's earlier result only with the same result again or when told to (overwrite=true,
--overwrite); a refusal is one `error:` line, exit 2, and changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers.commands import QUICK, evaluate_overrides, run_cli


def snapshot(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file's bytes and mtime, and every folder, under `folder`."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def refused(result, start: str) -> str:
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {start}"), line
    return line


def test_evaluate_replaces_another_evaluation_only_when_told_and_moves_it_aside(evaluated_run, mnist_root, tmp_path):
    run, cache = evaluated_run
    copy = Path(shutil.copytree(run, tmp_path / "runs" / "mine"))  # its eval/ is of the original's checkpoint
    before = snapshot(copy)
    command = [*evaluate_overrides(copy, mnist_root, cache), *QUICK, "sampler_set=study", "log_to_trackers=false"]
    line = refused(run_cli("vae_lightning.evaluate", *command), f"{copy / 'eval'} holds an earlier evaluation of "
                                                                f"{run / 'checkpoints' / 'last.ckpt'} at step ")
    assert line.endswith("add overwrite=true to move it aside to eval.replaced-<timestamp> first, or write "
                         "elsewhere with eval_dir=<folder>")
    assert snapshot(copy) == before  # not a byte or a modification time changed, the log included

    replaced = run_cli("vae_lightning.evaluate", *command, "overwrite=true")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    (aside,) = copy.glob("eval.replaced-*")
    assert replaced.stdout.startswith(f"overwrite=true: moved the earlier evaluation in {copy / 'eval'} aside to "
                                      f"{aside}\n")
    assert snapshot(aside) == {k[len("eval/"):]: v for k, v in before.items() if k.startswith("eval/")}

    again = run_cli("vae_lightning.evaluate", *command)  # the same evaluation again: replaced without a word
    assert again.returncode == 0, again.stderr[-2000:]
    assert list(copy.glob("eval.replaced-*")) == [aside]
    other = snapshot(copy)
    line = refused(run_cli("vae_lightning.evaluate", *command, "iwae.k=7"), f"{copy / 'eval'} holds an earlier "
                                                                           "evaluation with other settings (iwae.k=")
    assert "(iwae.k=20->7)" in line
    assert snapshot(copy) == other


def test_sample_and_beta_grid_replace_a_picture_only_by_the_same_one_or_when_told(trained_run, tmp_path):
    png = tmp_path / "grid.png"
    common = [f"ckpt_path={trained_run}", "n=4", "nrow=2", f"output={png}", f"paths.log_dir={tmp_path / 'logs'}"]
    assert run_cli("vae_lightning.sample", *common).returncode == 0
    first = png.read_bytes()
    assert run_cli("vae_lightning.sample", *common).returncode == 0  # the same picture again
    assert png.read_bytes() == first
    before = snapshot(tmp_path)
    line = refused(run_cli("vae_lightning.sample", *common, "prior=beta"), f"output={png} exists (a sample picture "
                                                                           f"of {trained_run}/checkpoints/last.ckpt at "
                                                                           "step ")
    assert line.endswith("with other settings); add overwrite=true to replace it, or choose another "
                         "output=<file.png>")
    refused(run_cli("vae_lightning.beta_grid", *common, "alphas=[1]", "betas=[2]"), f"output={png} exists (a sample")
    foreign = tmp_path / "mine.png"
    foreign.write_bytes(b"not a picture of ours")
    refused(run_cli("vae_lightning.sample", *common[:-2], f"output={foreign}", f"paths.log_dir={tmp_path / 'logs'}"),
            f"output={foreign} exists (a file this command did not write)")
    foreign.unlink()
    assert snapshot(tmp_path) == before  # no byte changed, no folder left under logs/

    told = run_cli("vae_lightning.beta_grid", *common, "alphas=[1]", "betas=[2]", "overwrite=true")
    assert told.returncode == 0, told.stderr[-2000:]
    assert png.read_bytes() != first


def test_report_replaces_only_a_report_of_the_same_sweeps_unless_told(small_sweep, tmp_path):
    out = tmp_path / "out"
    first = run_cli("vae_lightning.report", str(small_sweep), "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli("vae_lightning.report", str(small_sweep), "--out", str(out))  # brought up to date
    assert again.returncode == 0, again.stderr[-2000:]

    other = tmp_path / "other"
    shutil.copytree(out, other)
    text = (other / "report.md").read_text().replace(str(small_sweep), "/elsewhere/multiruns/x", 1)
    (other / "report.md").write_text(text)
    before = snapshot(other)
    line = refused(run_cli("vae_lightning.report", str(small_sweep), "--out", str(other)),
                   f"{other} holds a report of /elsewhere/multiruns/x, which this report of {small_sweep} would "
                   "replace")
    assert line.endswith("add --overwrite to replace it, or write elsewhere with --out <folder>")
    assert snapshot(other) == before
    told = run_cli("vae_lightning.report", str(small_sweep), "--out", str(other), "--overwrite")
    assert told.returncode == 0, told.stderr[-2000:]
    assert (other / "report.md").read_text().startswith(f"# Sweep report: {small_sweep}\n")
