"""The command line under a property-based test (Hypothesis): overrides drawn from the real config, for every
key of every group option of the Hydra commands, with values of the wrong type, out of range, huge, negative,
NaN/inf, empty, unicode, and paths that do not exist or cannot be written. For every one: exit 0, or exit 2
with exactly one `error:` line on stderr and nothing on stdout (or, for train, a run stopped by the non-finite
guard); never a traceback; and the run folder the command points at is unchanged. The commands run in a
temporary working directory of their own, and drawn text has no "/": a drawn `output=four` lands there, never
in the clone or elsewhere. Full tier (`pytest --full`).

Bounded in examples (a fixed seed: the same examples every run). Longer, locally, with another seed:
    VAE_FUZZ_EXAMPLES=400 VAE_FUZZ_SEED=7 pytest tests/integration/test_fuzz_cli.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from helpers.commands import QUICK, TINY_CLASSIFIER, run_cli, tiny_overrides
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from vae_lightning.runs.folders import CONF_DIR

EXAMPLES = int(os.environ.get("VAE_FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("VAE_FUZZ_SEED", "20261201"))
# keys whose legitimate values include "forever" (no limit) or that choose where a run is trained: not drawn
NOT_DRAWN = {"trainer.max_epochs", "trainer.max_steps", "trainer.min_epochs", "trainer.min_steps",
             "trainer.max_time", "trainer.val_check_interval", "trainer.fast_dev_run", "trainer.accelerator",
             "trainer.devices", "trainer.strategy", "trainer.num_nodes", "trainer.limit_train_batches",
             "trainer.limit_val_batches", "trainer.limit_test_batches", "paths.root_dir", "paths.output_dir",
             "paths.log_dir", "classifier.epochs", "classifier.cache_dir", "retrain", "data.download",
             "progress", "tensorboard", "verbose"}
VALUES = st.one_of(
    st.sampled_from(["four", "", "null", "[]", "[0]", "{}", "nan", "inf", "-inf", "1e308", "-1", "0", "0.5",
                     "true", "10000000000000", "-10000000000000", "2.5", "'ä∞ ✓'", "/nonexistent/folder",
                     "/proc/not_writable/x"]),
    st.integers(min_value=-(10**15), max_value=10**15).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
            max_size=8).map(lambda t: f"'{t}'"),
)


def leaf_keys(tree: object, prefix: str = "") -> list[str]:
    """Dotted keys of a YAML tree's leaves (interpolations and `_target_` left out)."""
    if not isinstance(tree, dict):
        return []
    keys = []
    for key, value in tree.items():
        if key in ("defaults", "hydra", "_target_", "_partial_", "_recursive_") or not isinstance(key, str):
            continue
        if isinstance(value, dict):
            keys += leaf_keys(value, f"{prefix}{key}.")
        elif not (isinstance(value, str) and "${" in value):
            keys.append(f"{prefix}{key}")
    return keys


def command_keys(config_name: str, groups: dict[str, str]) -> list[str]:
    """Every key of a command's own config and of each option of its groups (`groups`: group -> key prefix)."""
    keys = leaf_keys(yaml.safe_load((CONF_DIR / f"{config_name}.yaml").read_text()))
    for group, prefix in groups.items():
        for option in sorted((CONF_DIR / group).glob("*.yaml")):
            keys += leaf_keys(yaml.safe_load(option.read_text()), f"{prefix}.")
    return sorted(set(keys) - NOT_DRAWN)


GROUP_OPTIONS = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml"))
                 for g in ("prior", "model", "likelihood", "annealing", "data", "fitted", "sampler_set")}
KEYS = {
    "train": command_keys("train", {"prior": "prior", "model": "model", "annealing": "annealing", "data": "data",
                                    "likelihood": "likelihood", "trainer": "trainer", "callbacks": "callbacks"}),
    "evaluate": command_keys("evaluate", {"classifier": "classifier"}),
    "sample": command_keys("sample", {"prior": "prior", "fitted": "fitted"}),
    "beta_grid": command_keys("beta_grid", {}),
    "classifier": command_keys("train_classifier", {"classifier": "classifier"}),
}


def overrides(command: str) -> st.SearchStrategy[list[str]]:
    """One or two drawn overrides, sometimes after choosing a group option whose keys then exist."""
    key_value = st.tuples(st.sampled_from(KEYS[command]), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}")
    groups = {"train": ["prior", "model", "likelihood", "annealing"], "sample": ["prior", "fitted"],
              "evaluate": ["sampler_set"]}.get(command, [])
    group_choice = (st.sampled_from(groups).flatmap(lambda g: st.sampled_from(GROUP_OPTIONS[g]).map(
        lambda o, g=g: [f"{g}={o}"])) if groups else st.just([]))
    return st.tuples(group_choice, st.lists(key_value, min_size=1, max_size=2)).map(lambda t: [*t[0], *t[1]])


def snapshot(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def setting(mnist_root: Path, evaluated_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """A copy of conftest's evaluated run (its pristine copy kept aside), its evaluation's cached classifier,
    and a working directory for the commands."""
    logs = tmp_path_factory.mktemp("fuzz")
    run = Path(shutil.copytree(evaluated_run[0], logs / "run"))
    pristine = Path(shutil.copytree(run, logs / "pristine"))
    cwd = logs / "cwd"
    cwd.mkdir()
    return {"run": run, "pristine": pristine, "data": mnist_root, "cache": evaluated_run[1] / "classifier",
            "logs": logs, "cwd": cwd}


def base_arguments(command: str, s: dict) -> list[str]:
    """What makes each command quick on the synthetic data, before the drawn overrides."""
    out = [f"paths.log_dir={s['logs'] / 'out'}"]
    tool = [f"ckpt_path={s['run']}", *out]
    classifier = [*TINY_CLASSIFIER, f"classifier.cache_dir={s['cache']}"]
    return {
        "train": [*tiny_overrides(s["data"], s["logs"] / "out"), "trainer.max_epochs=1",
                  "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false",
                  "~callbacks.prior_grid"],
        "evaluate": [*tool, f"data.root={s['data']}", "data.download=false", "progress=false", *classifier, *QUICK,
                     "n_images=16", "sampler_set=study", "~samplers.beta_1_1", "~samplers.beta_1p1_1p1",
                     "~samplers.beta_1p1_2", "log_to_trackers=false"],
        "sample": [*tool, "n=4", "nrow=2"],
        "beta_grid": [*tool, "n=4", "nrow=2", "alphas=[1]", "betas=[2]"],
        "classifier": [f"data.root={s['data']}", "data.download=false", "progress=false", *classifier, *out],
    }[command]


def check(command: str, drawn: list[str], s: dict) -> None:
    before = snapshot(s["pristine"])
    try:
        completed = run_cli(f"vae_lightning.{command}", *base_arguments(command, s), *drawn, cwd=s["cwd"])
        result = {"rc": completed.returncode, "stdout": completed.stdout, "stderr": completed.stderr}
        where = f"{command} {' '.join(drawn)}"
        assert "Traceback" not in result["stderr"], (where, result["stderr"][-3000:])
        # train may also stop a run it started: a weight so large that the loss goes non-finite is stopped by the
        # non-finite guard (exit 1, its one error line last, the checkpoints written before unchanged)
        stopped = command == "train" and result["rc"] == 1 and result["stderr"].splitlines()[-1].startswith(
            "error: ") and "training stopped" in result["stderr"]
        assert result["rc"] in (0, 2) or stopped, (where, result["rc"], result["stderr"][-3000:])
        if result["rc"] == 2:
            lines = result["stderr"].splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (where, result["stderr"][-3000:])
            assert result["stdout"] == "", (where, result["stdout"][-2000:])
            assert snapshot(s["run"]) == before, f"{where} changed the run folder it failed on"
    finally:  # every example starts from the same run folder, also after a failed one (Hypothesis shrinks it)
        shutil.rmtree(s["run"])
        shutil.copytree(s["pristine"], s["run"])


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.full
@pytest.mark.parametrize("command", sorted(KEYS))
def test_every_command_survives_drawn_overrides(command, setting):
    @FUZZ
    @seed(SEED)
    @given(drawn=overrides(command))
    def property_(drawn: list[str]) -> None:
        check(command, drawn, setting)

    property_()
