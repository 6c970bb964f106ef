"""The explore command on runs and a sweep trained on tiny synthetic data: one self-contained page, and bad input
refused in one line with nothing written. (What the page does in a browser: test_explorer_browser.py.)"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers.commands import only_run, run_cli, tiny_overrides, train_run


def page_data(path: Path) -> dict:
    text = path.read_text()
    return json.loads(re.search(r'id="explorer-data">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</"))


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


def test_a_runs_page_is_one_file_in_the_run_folder(trained_run, mnist_root, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    result = run_cli("vae_lightning.explore", f"ckpt_path={run}", f"data.root={mnist_root}",
                     f"paths.log_dir={tmp_path / 'logs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    page = run / "explore.html"
    assert result.stdout.startswith(f"wrote {page} (") and "MB): open it in a browser" in result.stdout
    data = page_data(page)
    (view,) = data["runs"]
    assert view["latent_dim"] == 2 and view["plane"]["explained"] is None
    assert view["points"]["n"] == 128  # every synthetic test image (fewer than n_points)
    assert view["decoder"]["mean"] == "sigmoid" and view["atlas"] is None
    assert [s["name"] for s in view["samplers"]][0] == "normal_0_1" and len(view["samplers"]) == 6
    assert page.stat().st_size < 10e6


def test_train_writes_the_runs_page_unless_told_not_to(trained_run, mnist_root, tmp_path):
    import numpy as np
    import torch

    from vae_lightning.explorer.decoder import unfloats

    view = page_data(trained_run / "explore.html")["runs"][0]  # conftest's run, trained with the defaults
    weights = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    first = view["decoder"]["layers"][0]
    assert np.array_equal(unfloats(first["w"]), weights["decoder.net.0.weight"].numpy().ravel())
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path), "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "test=false", "~callbacks.prior_grid", "explore=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (only_run(tmp_path) / "explore.html").exists() and "explorer" not in result.stdout


def test_a_sweeps_page_has_each_finished_run_under_its_configuration_and_seed(small_sweep, mnist_root, tmp_path):
    out = tmp_path / "sweep.html"
    result = run_cli("vae_lightning.explore", f"sweep={small_sweep}", f"data.root={mnist_root}", f"output={out}",
                     "n_draws=50", "seeds=[12345]", f"paths.log_dir={tmp_path / 'logs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    data = page_data(out)
    assert len(data["runs"]) == 4 and len(data["datasets"]) == 1  # the test images stored once
    assert sorted(c["label"] for c in data["configs"]) == sorted(
        f"annealing={a} prior={p}" for a in ("constant", "linear") for p in ("beta", "normal"))
    assert sorted(e["view"] for c in data["configs"] for e in c["runs"]) == [0, 1, 2, 3]


def refused(tmp_path: Path, *overrides: str) -> str:
    """Run explore expecting a refusal: its one stderr line; nothing was written under tmp_path."""
    before = files_under(tmp_path)
    result = run_cli("vae_lightning.explore", *overrides, f"paths.log_dir={tmp_path / 'logs'}")
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and result.stdout == ""
    assert files_under(tmp_path) == before
    return line


def test_a_checkpoint_that_is_not_a_run_is_refused(tmp_path, mnist_root):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    (tmp_path / "empty").mkdir()
    assert "is not a readable checkpoint" in refused(tmp_path, f"ckpt_path={tmp_path / 'notes.ckpt'}")
    assert "without checkpoints/last.ckpt" in refused(tmp_path, f"ckpt_path={tmp_path / 'empty'}")
    assert "give one of ckpt_path" in refused(tmp_path, f"data.root={mnist_root}")


def test_a_sweep_without_a_finished_run_is_refused(tmp_path, small_sweep):
    sweep = tmp_path / "sweep"
    for job in ("0", "1"):  # jobs that started (their config) and never finished
        shutil.copytree(small_sweep / job / ".hydra", sweep / job / ".hydra")
    assert "has no finished run: none of its 2 jobs" in refused(tmp_path, f"sweep={sweep}")
    assert "holds no sweep jobs" in refused(tmp_path, f"sweep={tmp_path / 'sweep' / '0' / '.hydra'}")
    assert "has no finished run at seeds=[3]: none of its 4 jobs" in refused(tmp_path, f"sweep={small_sweep}",
                                                                             "seeds=[3]")


def test_an_output_that_cannot_be_written_is_refused(tmp_path, trained_run, mnist_root):
    (tmp_path / "a_file").write_text("")
    line = refused(tmp_path, f"ckpt_path={trained_run}", f"data.root={mnist_root}",
                   f"output={tmp_path / 'a_file' / 'page.html'}")
    assert "cannot be written" in line
    assert "is a folder" in refused(tmp_path, f"ckpt_path={trained_run}", f"output={tmp_path}")


def test_missing_test_images_are_one_line(tmp_path, trained_run):
    line = refused(tmp_path, f"ckpt_path={trained_run}", f"data.root={tmp_path / 'nowhere'}",
                   f"output={tmp_path / 'page.html'}")
    assert "data.root=" in line and "test images" in line


@pytest.mark.parametrize("override", ["n_points=0", "grid_size=4", "atlas_size=1000"])
def test_bad_sizes_are_refused(tmp_path, trained_run, override):
    assert override.split("=")[0] in refused(tmp_path, f"ckpt_path={trained_run}", override)


def test_a_1d_latent_has_no_page(mnist_root, tmp_path):
    run = train_run(mnist_root, tmp_path / "logs", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                    "test=false", "~callbacks.prior_grid", "model.latent_dim=1")
    assert not (run / "explore.html").exists()  # train writes none, and says nothing of it
    assert "has a 1-D latent: the explorer shows latent planes" in refused(
        tmp_path, f"ckpt_path={run}", f"data.root={mnist_root}")


def test_a_run_of_members_is_explored_as_a_sweep_of_its_seeds(mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path / "logs"), "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "test=false", "~callbacks.prior_grid", "seeds=[0,1]")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path / "logs")
    (line,) = [x for x in result.stdout.splitlines() if "python -m vae_lightning.explore sweep=" in x]
    assert line.split("sweep=")[1].split()[0].endswith(run.name)  # among its next steps
    out = tmp_path / "members.html"
    explored = run_cli("vae_lightning.explore", f"sweep={run}", f"data.root={mnist_root}", f"output={out}",
                       f"paths.log_dir={tmp_path / 'logs'}")
    assert explored.returncode == 0, explored.stderr[-3000:]
    (config,) = page_data(out)["configs"]
    assert [entry["seed"] for entry in config["runs"]] == [0, 1]


def test_an_output_file_is_replaced_only_by_a_page_of_the_same_run_unless_told(trained_run, mnist_root, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    line = refused(tmp_path, f"ckpt_path={run}", f"data.root={mnist_root}", f"output={mine}")
    assert line == (f"error: output={mine} exists (a file this command did not write); add overwrite=true to replace "
                    "it, or choose another output=<file.html>")
    page = tmp_path / "page.html"
    for _ in range(2):  # a page of the same run is rebuilt in place
        result = run_cli("vae_lightning.explore", f"ckpt_path={run}", f"data.root={mnist_root}", f"output={page}",
                         "n_points=50")
        assert result.returncode == 0, result.stderr[-3000:]
    other = shutil.copytree(trained_run, tmp_path / "other")
    line = refused(tmp_path, f"ckpt_path={other}", f"data.root={mnist_root}", f"output={page}")
    assert "exists (the explorer page of another run or sweep); add overwrite=true" in line
    result = run_cli("vae_lightning.explore", f"ckpt_path={other}", f"data.root={mnist_root}", f"output={mine}",
                     "overwrite=true", "n_points=50")
    assert result.returncode == 0 and "my notes" not in mine.read_text(), result.stderr[-3000:]
