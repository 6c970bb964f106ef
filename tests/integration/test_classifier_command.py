"""`python -m vae_lightning.classifier` through the real config, on the synthetic digits with a tiny classifier: it
trains and caches the classifier once, then finds it in the cache (the real one is trained by the slow tier)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.commands import TINY_CLASSIFIER, run_cli


def test_the_classifier_command_trains_once_then_reads_its_cache(mnist_root, tmp_path):
    arguments = [f"data.root={mnist_root}", "data.download=false", "progress=false", *TINY_CLASSIFIER,
                 f"classifier.cache_dir={tmp_path / 'cache'}", f"paths.log_dir={tmp_path / 'logs'}"]
    first = run_cli("vae_lightning.classifier", *arguments)
    assert first.returncode == 0, first.stderr[-3000:]
    (line,) = first.stdout.splitlines()
    found = re.fullmatch(r"classifier: (\S+)  test accuracy (\d\.\d{4})", line)
    assert found and float(found.group(2)) >= 0.9, line
    weights = Path(found.group(1))
    assert weights.parent == tmp_path / "cache" and weights.is_file()
    stamp = weights.stat().st_mtime_ns
    again = run_cli("vae_lightning.classifier", *arguments)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == first.stdout and weights.stat().st_mtime_ns == stamp  # read from the cache, not retrained
    assert len(list((tmp_path / "logs" / "classifier" / "runs").iterdir())) == 2  # each run's log folder
