"""Train the digit classifier that scores generated samples: `python -m vae_lightning.classifier`.

evaluate trains it on first use; both reuse the cached weights when the training data and the
classifier config are unchanged (a per-user cache: `classifier.cache_dir`). Its hidden layer gives
the features of the Fréchet distance, its softmax the class probabilities of clarity and diversity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vae_lightning import cli

if TYPE_CHECKING:
    from omegaconf import DictConfig

HELP = """\
python -m vae_lightning.classifier [key=value ...]

Trains the small digit classifier that evaluate uses to score samples (fid, clarity, diversity), or finds
it in the cache when the training images and its settings are unchanged. evaluate does this on first use.

Reads    MNIST from data.root = {data}  (VAE_DATA_ROOT sets it)
Writes   the cache (classifier.cache_dir; a per-user folder by default), and
         {logs}/classifier/runs/<timestamp>/classifier.log
"""
EXAMPLES = (
    "python -m vae_lightning.classifier",
    "python -m vae_lightning.classifier data.root=/data/mnist data.download=false",
    "python -m vae_lightning.classifier data.dataset=fashion_mnist classifier.epochs=5 retrain=true",
)


def train_classifier(cfg: DictConfig) -> dict[str, Any]:
    """Its settings checked, the classifier found in the cache or trained now; returns its record."""
    from vae_lightning.core.checks import check_settings
    from vae_lightning.core.devices import pick_device
    from vae_lightning.core.progress import no_track, progress_bar
    from vae_lightning.evaluation.classifier import SETTINGS, load_or_train

    check_settings(cfg, SETTINGS)
    _, record = load_or_train(cfg.classifier, cfg.data.root, cfg.data.dataset, cfg.data.download,
                              pick_device(cfg.device), cfg.retrain, track=progress_bar if cfg.progress else no_track)
    return record


def main(cfg: DictConfig) -> None:
    record = cli.run_task(lambda: train_classifier(cfg))
    print(f"classifier: {record['path']}  test accuracy {record['test_accuracy']:.4f}")


if __name__ == "__main__":
    cli.run(main, HELP, EXAMPLES, "train_classifier")
