"""Slow tier for evaluate: the real sample-quality classifier on the real MNIST files."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from test_slow import REAL_ROOT, pytestmark  # noqa: F401  (pytestmark: slow, skipped when real MNIST is absent)

from vae_lightning.classifier import load_or_train
from vae_lightning.config import CONF_DIR, register_resolvers


def test_the_default_classifier_reaches_99_percent(tmp_path):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train_classifier", overrides=[f"classifier.cache_dir={tmp_path}"])
    _, record = load_or_train(cfg.classifier, REAL_ROOT, "mnist", download=False)
    assert record["test_accuracy"] >= 0.99
    assert Path(record["path"]).parent == tmp_path and Path(record["path"]).is_file()
