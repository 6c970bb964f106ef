"""tracking.csv: one metrics.csv per run folder across resumes (one value per metric and step), pictures listed in
images.csv, and an old run config's CSV logger target still built."""

from __future__ import annotations

import csv

from vae_lightning.checkpoints.renames import upgrade_targets
from vae_lightning.core.building import build
from vae_lightning.tracking.csv import CSV_IMAGES, CSVLogger, CSVTracker


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_resume_relogging_from_its_checkpoint_replaces_values_instead_of_adding_rows(tmp_path):
    first = CSVLogger(save_dir=str(tmp_path), name="csv", version="")
    for step in range(10):
        first.log_metrics({"train/loss": float(step)}, step)
    first.finalize("success")
    resumed = CSVLogger(save_dir=str(tmp_path), name="csv", version="")  # a resume from step 8
    for step in range(8, 12):
        resumed.log_metrics({"train/loss": 100.0 + step, "val/elbo": -1.0}, step)
    resumed.finalize("success")
    table = rows(tmp_path / "csv" / "metrics.csv")
    losses = [(int(r["step"]), float(r["train/loss"])) for r in table if r["train/loss"]]
    assert losses == [(s, float(s)) for s in range(8)] + [(s, 100.0 + s) for s in range(8, 12)]
    assert [int(r["step"]) for r in table if r["val/elbo"]] == [8, 9, 10, 11]


def test_pictures_are_files_listed_in_images_csv_and_a_picture_drawn_again_replaces_its_row(tmp_path):
    tracker = CSVTracker(CSVLogger(save_dir=str(tmp_path), name="csv", version=""))
    tracker.pictures({"samples/grid": b"\x89PNG one"}, 5, "samples/epoch_000")
    tracker.pictures({"samples/grid": b"\x89PNG two"}, 5, "samples/epoch_000")
    tracker.pictures({"samples/grid": b"\x89PNG three"}, 6, "samples/epoch_001")
    assert rows(tmp_path / "csv" / CSV_IMAGES) == [
        {"step": "5", "tag": "samples/grid", "file": "samples/epoch_000/samples_grid.png"},
        {"step": "6", "tag": "samples/grid", "file": "samples/epoch_001/samples_grid.png"}]
    assert (tmp_path / "csv" / "samples" / "epoch_000" / "samples_grid.png").read_bytes() == b"\x89PNG two"


def test_an_evaluation_repeated_at_the_same_step_replaces_the_earlier_one(tmp_path):
    for value in (1.0, 2.0):
        tracker = CSVTracker(CSVLogger(save_dir=str(tmp_path), name="csv", version=""))
        tracker.evaluation({"eval/elbo": value}, {"prior": "N(0, 1)"}, 40)
        tracker.close(trained=False)
    assert [(r["step"], r["eval/elbo"]) for r in rows(tmp_path / "csv" / "metrics.csv")] == [("40", "2.0")]
    assert "prior: N(0, 1)" in (tmp_path / "csv" / "hparams.yaml").read_text()


def test_a_run_config_written_before_the_tracking_subpackage_still_builds_its_csv_logger(tmp_path):
    saved = {"_target_": "vae_lightning.runs.tracking.CSVLogger", "save_dir": str(tmp_path), "name": "csv",
             "version": ""}
    assert type(build(upgrade_targets(saved), "logger.csv")) is CSVLogger
