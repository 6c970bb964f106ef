"""The sample-quality classifier: cache, determinism, and the scores it gives (on synthetic digits,
with a tiny configuration: the real one is trained by the slow tier)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers.commands import TINY_CLASSIFIER
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from vae_lightning.data import load_split, locate
from vae_lightning.evaluation import classifier as clf
from vae_lightning.evaluation.quality import (
    clarity,
    classes_covering,
    diversity,
    feature_statistics,
    frechet_distance,
    probability_entropy,
)
from vae_lightning.runs.folders import CONF_DIR, register_resolvers


def classifier_cfg(cache_dir: Path, *overrides: str) -> DictConfig:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train_classifier", overrides=[*TINY_CLASSIFIER, f"classifier.cache_dir={cache_dir}",
                                                     *overrides])
    return cfg.classifier


@pytest.fixture(scope="module")
def trained(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("classifier_cache")
    with pytest.MonkeyPatch.context() as patch:  # as conftest's _isolated_cache, which is per test
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
        model, record = clf.load_or_train(classifier_cfg(cache), mnist_root, "mnist", download=False)
    return model, record, cache


def features_of(model: clf.DigitClassifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return clf.classify(model, clf.as_input(images), batch_size=64)


def test_trained_once_then_loaded_from_the_cache(trained, mnist_root, monkeypatch):
    model, record, cache = trained
    assert record["test_accuracy"] >= 0.9
    assert Path(record["path"]).parent == cache and Path(record["path"]).is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier was trained again")

    monkeypatch.setattr(clf, "fit", no_training)
    again, again_record = clf.load_or_train(classifier_cfg(cache), mnist_root, "mnist", download=False)
    assert again_record == record
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                 strict=True))


def test_cache_key_follows_data_and_config_and_training_is_deterministic(trained, mnist_root):
    model, record, cache = trained
    cfg = classifier_cfg(cache)
    assert clf.cache_path(cfg, "mnist", "0" * 64) == clf.cache_path(classifier_cfg(cache), "mnist", "0" * 64)
    assert clf.cache_path(cfg, "mnist", "0" * 64) != clf.cache_path(cfg, "mnist", "1" * 64)
    assert clf.cache_path(cfg, "mnist", "0" * 64) != clf.cache_path(classifier_cfg(cache, "classifier.epochs=7"),
                                                                    "mnist", "0" * 64)
    same, _ = clf.load_or_train(cfg, mnist_root, "mnist", download=False, retrain=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values(),
                                                 strict=True))


def test_a_weak_classifier_is_an_error_and_not_cached(mnist_root, tmp_path):
    cfg = classifier_cfg(tmp_path, "classifier.epochs=1", "classifier.lr=1e-6", "classifier.min_accuracy=0.99")
    with pytest.raises(clf.UserError, match="classifier.min_accuracy"):
        clf.load_or_train(cfg, mnist_root, "mnist", download=False)
    assert not list(tmp_path.glob("*.pt"))


def test_fid_clarity_and_diversity_on_real_and_noise_images(trained, mnist_root):
    model = trained[0]
    root = locate(mnist_root, "mnist", download=False)
    train_images, _ = load_split(root, "mnist", train=True)
    test_images, test_labels = load_split(root, "mnist", train=False)
    test_stats = feature_statistics(features_of(model, test_images)[0])
    noise = (torch.rand(len(test_images), 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)

    assert frechet_distance(*test_stats, *test_stats) == pytest.approx(0, abs=1e-6)
    fid_digits = frechet_distance(*feature_statistics(features_of(model, train_images)[0]),
                                          *test_stats)
    fid_noise = frechet_distance(*feature_statistics(features_of(model, noise)[0]), *test_stats)
    assert fid_noise > 10 * fid_digits, (fid_noise, fid_digits)

    _, probs = features_of(model, test_images)
    assert diversity(probs.argmax(1)) > 0.9 * math.log(10) and clarity(probs) > 0.8
    assert probability_entropy(probs) > 0.9 * math.log(10)
    _, one_class = features_of(model, test_images[test_labels == test_labels[0]])
    assert diversity(one_class.argmax(1)) < 0.1 and probability_entropy(one_class) < 0.1
    assert classes_covering(one_class.argmax(dim=1), 10) == 1
