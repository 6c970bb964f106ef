"""docs/timings.py, the script that regenerates the times the docs quote: it runs each command as a user does,
checks each exits as it should, and writes a page naming the machine, with evaluate's per-part times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.commands import QUICK, TINY_CLASSIFIER, tiny_overrides

from vae_lightning.core.paths import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "docs" / "timings.py"


def timings(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.mark.full
def test_the_script_times_train_evaluate_and_sample_and_names_the_machine(mnist_root: Path, tmp_path: Path):
    tiny = [o for o in tiny_overrides(mnist_root, tmp_path) if not o.startswith(("paths.log_dir", "callbacks."))]
    sets = [f"train:{o}" for o in [*tiny, "trainer.max_epochs=1", "explore=false"]]
    sets += [f"evaluate:{o}" for o in [*QUICK, *TINY_CLASSIFIER, f"classifier.cache_dir={tmp_path / 'cls'}",
                                       "data.download=false"]]
    out = tmp_path / "page" / "timings.md"
    done = timings("--only", "refusal_value,train,evaluate,sample", "--out", str(out),
                   *[a for s in sets for a in ("--set", s)], env={"VAE_DATA_ROOT": str(mnist_root)})
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "cores" in page and "Not the defaults" in page  # the machine, and that this is not the real page
    record = json.loads(out.with_suffix(".json").read_text())
    rows = {r["name"]: r for r in record["commands"]}
    assert list(rows) == ["refusal_value", "train", "evaluate", "sample"]
    assert rows["refusal_value"]["exit_code"] == 2 and all(rows[n]["exit_code"] == 0 for n in list(rows)[1:])
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in rows.values())
    assert {"elbo", "nll_iwae"} <= set(rows["evaluate"]["parts_s"])  # evaluate's own per-part times
    assert "| elbo |" in page and "vae_timings_" not in page  # the scratch folder is shown as <tmp>


def test_a_command_that_exits_otherwise_than_it_should_stops_the_script(tmp_path: Path):
    done = timings("--only", "refusal_folder", "--set", "refusal_folder:--help", "--out", str(tmp_path / "t.md"))
    assert done.returncode != 0 and "refusal_folder exited 0, expected 2" in done.stderr
    assert not (tmp_path / "t.md").exists()


def test_unknown_names_are_refused_in_one_line(tmp_path: Path):
    done = timings("--only", "trian", "--out", str(tmp_path / "t.md"))
    assert done.returncode != 0 and done.stderr.strip().count("\n") == 0 and "trian" in done.stderr
