"""The sample and beta_grid commands on a checkpoint trained on tiny synthetic data (conftest's trained_run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.commands import run_cli
from PIL import Image


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size  # (width, height)


def test_sample_writes_a_grid_per_sampler(trained_run, tmp_path):
    # one job per sampler family; n=10 in rows of 4: 3 rows of 30-pixel cells plus a 2-pixel border
    result = run_cli("vae_lightning.sample", "-m", f"ckpt_path={trained_run}", "prior=normal,gaussian,beta",
                     "n=10", "nrow=4", f"paths.log_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    pngs = {p.name: p for p in (tmp_path / "sample" / "multiruns").glob("*/*/*.png")}
    assert sorted(pngs) == ["beta_1_1.png", "gaussian_1_2.png", "normal_0_1.png"]
    assert all(png_size(p) == (4 * 30 + 2, 3 * 30 + 2) for p in pngs.values())


def test_sample_multirun_writes_one_png_per_combination(trained_run, tmp_path):
    result = run_cli("vae_lightning.sample", "-m", f"ckpt_path={trained_run}/checkpoints/last.ckpt", "prior=beta",
                     "prior.alpha=1,1.1,4", "prior.beta=1,1.1,2,3", f"paths.log_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    pngs = sorted(p.name for p in (tmp_path / "sample" / "multiruns").glob("*/*/*.png"))
    assert pngs == sorted(f"beta_{a}_{b}.png" for a in ("1", "1.1", "4") for b in ("1", "1.1", "2", "3"))
    assert all(png_size(p) == (242, 242) for p in (tmp_path / "sample" / "multiruns").glob("*/*/*.png"))


def test_beta_grid_panels_share_the_samples_noise(trained_run, tmp_path):
    out = tmp_path / "grid.png"
    result = run_cli("vae_lightning.beta_grid", f"ckpt_path={trained_run}", "alphas=[1,4]", "betas=[1,2,3]", "n=4",
                     "nrow=2", f"output={out}", f"paths.log_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == f"wrote {out}\n"
    # 2 rows x 3 columns of 62-pixel panels: 12-pixel gaps, 24-pixel titles, a 30-pixel heading
    assert png_size(out) == (3 * (62 + 12) + 12, 2 * (62 + 24 + 12) + 30)
    # the Beta(1, 1) panel (row 0, column 0) is the sample command's grid for the same seed and n
    single = tmp_path / "beta_1_1.png"
    sampled = run_cli("vae_lightning.sample", f"ckpt_path={trained_run}", "prior=beta", "n=4", "nrow=2",
                      f"output={single}", f"paths.log_dir={tmp_path}")
    assert sampled.returncode == 0 and sampled.stdout == f"wrote {single}\n", sampled.stderr[-3000:]
    figure, grid = rgb(out), rgb(single)
    assert np.array_equal(figure[54:116, 12:74], grid)
    assert not np.array_equal(figure[54:116, 86:148], grid)  # Beta(1, 2), the next panel


@pytest.mark.parametrize("module", ["vae_lightning.sample", "vae_lightning.beta_grid"])
def test_a_missing_checkpoint_is_one_clear_line(tmp_path, module):
    result = run_cli(module, "ckpt_path=does/not/exist.ckpt", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: ckpt_path='does/not/exist.ckpt' does not exist; give a .ckpt file, e.g. "
        "logs/train/runs/<timestamp>/checkpoints/last.ckpt"]
    assert not list(tmp_path.glob("*/runs/*"))  # no folder left behind
