"""Sweep job folders made by hand, as a multirun and evaluate leave them, for the report's tests (no training)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from vae_lightning.runs import sweep


def evaluation(nll_iwae: float, fids: dict[str, float]) -> dict:
    """A metrics.json as evaluate writes it (the parts the report reads)."""
    rows = [{"name": name, "fid": fid, "clarity": 0.9, "diversity": 2.0, "probability_entropy": 2.1, "classes_90": 8}
            for name, fid in fids.items()]
    return {"likelihood": {"elbo": -150.0, "recon": 140.0, "kl": 10.0, "active_units": 2, "kl_per_dim": None,
                           "nll_iwae": {"100": nll_iwae}, "nll_exact": {"value": nll_iwae - 1, "converged": True}},
            "sample_quality": {"rows": rows}}


def fake_job(folder: Path, overrides: list[str], status: dict | None, eval_metrics: dict | None = None,
             curve: list[float] | None = None) -> None:
    """A job folder as a multirun leaves it: config, overrides, status, evaluation, events and a comparison figure."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    if status is not None:
        sweep.write_status(folder, status)
    if eval_metrics is not None:
        (folder / "eval").mkdir()
        (folder / "eval" / "metrics.json").write_text(json.dumps(eval_metrics))
    if curve is not None:
        writer = SummaryWriter(str(folder / "tensorboard"))
        for step, value in enumerate(curve):
            writer.add_scalar("val/elbo", value, step)
            writer.add_scalar("diagnostics/active_units", 2.0, step)
        writer.close()
        (folder / "samples" / "epoch_001").mkdir(parents=True)
        Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "samples" / "epoch_001" / "samples_comparison.png")
