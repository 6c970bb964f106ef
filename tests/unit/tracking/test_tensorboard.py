"""tracking.tensorboard: where a run's events are (the events reader), and pictures and HPARAMS sessions written
as ready-made summaries that TensorBoard reads back."""

from __future__ import annotations

import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from vae_lightning.pictures import png_bytes
from vae_lightning.tracking.tensorboard import TensorBoardTracker, event_folder


def test_event_folder_is_the_runs_named_folder_or_the_old_unnamed_one(tmp_path):
    assert event_folder(tmp_path) == tmp_path / "tensorboard"  # nothing written yet
    named = tmp_path / "tensorboard" / "prior=beta,seed=0"
    named.mkdir(parents=True)
    (named / "events.out.tfevents.1.host").write_bytes(b"")
    assert event_folder(tmp_path) == named
    (tmp_path / "tensorboard" / "events.out.tfevents.0.host").write_bytes(b"")  # a run written before names
    assert event_folder(tmp_path) == tmp_path / "tensorboard"


def read(folder):
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_pictures_and_the_hparams_session_reach_the_events_file(tmp_path):
    import torch

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tensorboard", version="", default_hp_metric=False)
    tracker = TensorBoardTracker(logger)
    png = png_bytes(torch.rand(3, 8, 12))
    tracker.pictures({"samples/grid": png}, 7, "samples")
    logger.log_metrics({"val/elbo": -90.0}, 7)
    tracker.hyperparameters({"prior": "N(0, 1)", "seed": 3}, {"val/elbo": -90.0}, 7)
    tracker.close(trained=True)
    acc = read(event_folder(tmp_path))
    (image,) = acc.Images("samples/grid")
    assert (image.step, image.width, image.height, image.encoded_image_string) == (7, 12, 8, png)
    session = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = plugin_data_pb2.HParamsPluginData.FromString(session).session_start_info
    assert info.hparams["prior"].string_value == "N(0, 1)" and info.hparams["seed"].number_value == 3


@pytest.mark.parametrize("trained_here", [True, False])
def test_an_evaluation_writes_its_scalars_and_a_session_only_outside_the_run_that_trained(tmp_path, trained_here):
    if trained_here:
        TensorBoardLogger(save_dir=str(tmp_path), name="tensorboard", version="").log_metrics({"val/elbo": 1.0}, 0)
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tensorboard", version="", default_hp_metric=False)
    TensorBoardTracker(logger).evaluation({"eval/elbo": -91.5}, {"prior": "N(0, 1)", "seed": None}, 40)
    logger.finalize("success")
    acc = read(event_folder(tmp_path))
    assert [(s.step, s.value) for s in acc.Scalars("eval/elbo")] == [(40, -91.5)]
    assert ("_hparams_/session_start_info" in acc.summary_metadata) is not trained_here
