"""The small MNIST classifier that scores generated digits, trained once and cached (the library half;
`python -m vae_lightning.classifier` is its command).

Its hidden layer provides the features for the Fréchet distance, its softmax the class probabilities
for clarity and diversity (evaluation/quality.py).

Cache: `<classifier.cache_dir>/<dataset>_<key>.pt`, key = sha256 of the training images and labels
and of the classifier config, so a changed dataset or architecture never reuses stale weights.
The default cache is per user (`~/.cache/vae_lightning/classifier/`), not the data root, which may
be shared or read-only; `classifier.cache_dir=<data root>/classifier` puts it there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.nn.functional import cross_entropy

from vae_lightning.core.building import build
from vae_lightning.core.checks import COUNT, POSITIVE, SEED, Check, list_of, number
from vae_lightning.core.errors import UserError
from vae_lightning.core.files import write_atomically
from vae_lightning.core.memory import FLOAT_BYTES, check_fits
from vae_lightning.core.progress import Track, no_track
from vae_lightning.core.rng import seeded
from vae_lightning.data import load_split, locate

log = logging.getLogger(__name__)

# The classifier config's values, checked before any data is read; evaluate and the classifier
# command use the same `classifier` node.
SETTINGS: dict[str, Check] = {
    "classifier.epochs": COUNT, "classifier.batch_size": COUNT,
    "classifier.lr": POSITIVE, "classifier.min_accuracy": number(0, 1), "classifier.seed": SEED,
    "classifier.model.channels": list_of(COUNT, least=2, most=2, what="two channel counts, e.g. [16,32]"),
    "classifier.model.features": COUNT, "classifier.model.dropout": number(0, 1, below=True),
}


class DigitClassifier(nn.Module):
    """Two conv(5x5) + max-pool blocks, a hidden layer (the features), dropout, a linear read-out.

    Small enough to train in three CPU epochs to >= 99% MNIST test accuracy.
    """

    def __init__(self, channels: Sequence[int] = (16, 32), features: int = 128, dropout: float = 0.25,
                 n_classes: int = 10) -> None:
        super().__init__()
        c1, c2 = channels
        # its weights with their gradients and Adam's two moments, before any of them is allocated
        copies = 4 * FLOAT_BYTES
        check_fits("channels", c2, copies * 25 * (c1 + 1), copies * 25 * c1,
                   "for the classifier's weights while it trains ")
        check_fits("features", features, copies * (c2 * 7 * 7 + n_classes), copies * 25 * c1 * (1 + c2),
                   "for the classifier's weights while it trains ")
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * 7 * 7, features), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, n_classes))

    def features(self, x: Tensor) -> Tensor:
        """Hidden-layer activations [B, features] of images x [B, 1, 28, 28] in [0, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))




def as_input(images: Tensor) -> Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28] in [0, 1]."""
    return images.unsqueeze(1).float() / 255


@torch.no_grad()
def classify(model: DigitClassifier, images: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """Features [N, F] and class probabilities [N, C] of float images [N, 1, 28, 28], on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    features, probs = [], []
    for batch in images.split(batch_size):
        f = model.features(batch.to(device))
        features.append(f.cpu())
        probs.append(model.head(f).softmax(dim=1).cpu())
    return torch.cat(features), torch.cat(probs)


def accuracy(model: DigitClassifier, images: Tensor, labels: Tensor, batch_size: int) -> float:
    _, probs = classify(model, as_input(images), batch_size)
    return float((probs.argmax(dim=1) == labels).double().mean())


def fit(model: DigitClassifier, images: Tensor, labels: Tensor, epochs: int, batch_size: int, lr: float,
        seed: int, track: Track = no_track) -> DigitClassifier:
    """Adam on cross-entropy with a one-cycle learning rate peaking at `lr` (a few epochs reach what
    a constant rate needs many for); shuffling and dropout from `seed`, so the same data and config
    give the same weights."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batches = [(epoch, i) for epoch in range(epochs) for i in range(0, len(images), batch_size)]
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=len(batches))
    generator = torch.Generator().manual_seed(seed)
    order = torch.arange(0)
    model.train()
    with seeded(seed, device):  # dropout masks
        for _, start in track(batches, "training the classifier", len(batches)):
            if start == 0:
                order = torch.randperm(len(images), generator=generator)
            idx = order[start:start + batch_size]
            loss = cross_entropy(model(as_input(images[idx]).to(device)), labels[idx].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def data_checksum(*tensors: Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_path(cfg: DictConfig, dataset: str, data_sha: str) -> Path:
    """The cache file for this training data and the classifier config (what shapes the weights)."""
    settings = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
                if k not in ("cache_dir", "min_accuracy")}
    key = hashlib.sha256(f"{data_sha}:{json.dumps(settings, sort_keys=True)}".encode()).hexdigest()[:16]
    return Path(cfg.cache_dir).expanduser() / f"{dataset}_{key}.pt"


def load_or_train(cfg: DictConfig, data_root: str | Path, dataset: str, download: bool = True,
                  device: torch.device | str = "cpu", retrain: bool = False,
                  track: Track = no_track) -> tuple[DigitClassifier, dict[str, Any]]:
    """The classifier for `dataset` (cached, or trained on its 60k training images now) and its record:
    cache path, test accuracy, training-data checksum.

    Raises UserError when a freshly trained classifier misses `cfg.min_accuracy` on the test images
    (nothing is cached then: its scores would not mean what they say).
    """
    root = locate(data_root, dataset, download)
    images, labels = load_split(root, dataset, train=True)
    test_images, test_labels = load_split(root, dataset, train=False)
    data_sha = data_checksum(images, labels)
    path = cache_path(cfg, dataset, data_sha)
    with seeded(cfg.seed, torch.device(device)):
        model: DigitClassifier = build(cfg.model, "classifier.model").to(device)
    if path.is_file() and not retrain:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["state_dict"])
        except (RuntimeError, EOFError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
            raise UserError(f"the cached classifier {path} is unreadable ({type(err).__name__}); delete it, or "
                            "train it again: python -m vae_lightning.classifier retrain=true") from err
        log.info("Classifier from %s (test accuracy %.4f)", path, saved["test_accuracy"])
        return model.eval(), {"path": str(path), "test_accuracy": saved["test_accuracy"], "data_sha256": data_sha}
    fit(model, images, labels, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, track)
    test_accuracy = accuracy(model, test_images, test_labels, cfg.batch_size)
    log.info("Classifier trained: test accuracy %.4f", test_accuracy)
    if test_accuracy < cfg.min_accuracy:
        raise UserError(f"the classifier reached test accuracy {test_accuracy:.4f} < classifier.min_accuracy="
                        f"{cfg.min_accuracy}; train it longer (classifier.epochs={cfg.epochs} -> more) or "
                        "lower classifier.min_accuracy")
    saved = {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "test_accuracy": test_accuracy,
             "data_sha256": data_sha, "config": OmegaConf.to_container(cfg, resolve=True)}
    # through a temporary file, so that a crash never leaves a partial cache entry
    write_atomically(path, lambda f: torch.save(saved, f))
    log.info("Classifier saved to %s", path)
    return model.eval(), {"path": str(path), "test_accuracy": test_accuracy, "data_sha256": data_sha}
