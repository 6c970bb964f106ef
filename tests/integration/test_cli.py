"""Every command behaves alike (cli.py): bad input is one `error:` line, exit 2, no traceback and no
output folder left behind; `--help` names the command's config groups and examples that compose."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.commands import run_commands, tiny_overrides
from hydra.core.hydra_config import HydraConfig

import vae_lightning.bench as bench
import vae_lightning.beta_grid as beta_grid
import vae_lightning.classifier as classifier
import vae_lightning.evaluate as evaluate
import vae_lightning.explore as explore
import vae_lightning.report as report
import vae_lightning.sample as sample
import vae_lightning.train as train
from vae_lightning.runs.folders import CONF_DIR, PROJECT_ROOT, compose_config

# (module, arguments, start of the error line); {run}: a trained run folder, {data}: the synthetic
# data root, {missing}: a path that does not exist. Each case also gets its own paths.log_dir.
BAD_INPUTS = [
    ("train", "prior=foo", "prior=foo is not an option of prior: choose one of beta,"),
    ("train", "foo=1", "foo=1 is not a key of this command's config"),
    ("train", "trainer.max_epochs=abc", "trainer.max_epochs='abc' is invalid: must be an integer >= -1"),
    ("train", "trainer.max_epochs=-2", "trainer.max_epochs=-2 is invalid: must be an integer >= -1"),
    ("train", "trainer.devices=0", "trainer.devices=0 is invalid: must be an integer >= 1, -1 (all), auto"),
    ("train", "data.batch_size=1.5", "data.batch_size=1.5 is invalid: must be an integer >= 1"),
    ("train", "trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 is invalid: must be a fraction"),
    ("train", "trainer.max_epochs=[1", "trainer.max_epochs=[1 is not a valid override"),
    ("train", "prior=flow prior.transforms=0", "prior.transforms=0 is invalid: must be an integer >= 1"),
    ("train", "prior=flow prior.hidden_features=[]",
     "prior.hidden_features=[] is invalid: must be a non-empty list of integers >= 1"),
    ("train", "prior=flow prior.lr=-0.1", "prior.lr=-0.1 is invalid: must be a finite number > 0"),
    ("train", "--epochs 5", "--epochs is not an option; write overrides as key=value, e.g. prior=beta"),
    ("train", "-m prior=normal,betta seed=0,1", "prior=betta is not an option of prior: choose one of beta,"),
    ("evaluate", "--foo=1", "--foo is not an option; write overrides as key=value, e.g. ckpt_path="),
    ("evaluate", "ckpt_path={run} sampler_set=foo", "sampler_set=foo is not an option of sampler_set: choose"),
    ("evaluate", "ckpt_path={run} data_root={data}", "data_root={data} is not a key of this command's config"),
    ("evaluate", "ckpt_path={run} data.root={data} device=tpu", "device='tpu' is invalid: must be one of auto, cpu"),
    ("evaluate", "ckpt_path={run} exact.tail=0.7", "exact.tail=0.7 is invalid: must be a number in (0, 0.5]"),
    ("sample", "ckpt_path={run} prior=foo", "prior=foo is not an option of prior: choose one of beta,"),
    ("sample", "ckpt_path={run} fitted=foo", "fitted=foo is not an option of fitted: choose one of aggregate,"),
    ("sample", "ckpt_path={run} prior.alpha=2", "prior.alpha=2 is not a key of this command's config"),
    ("sample", "ckpt_path={run} n=0", "n=0 is invalid: must be an integer >= 1"),
    # spellings renamed when a latent distribution came to be configured once (checkpoints/renames.py)
    ("train", "samplers=study_fitted", "samplers=study_fitted is renamed: write sampler_set=study_fitted"),
    ("train", "experiment=beta_4_3", "experiment=beta_4_3 is renamed: write prior=beta_4_3 annealing=linear"),
    ("evaluate", "ckpt_path={run} samplers=study", "samplers=study is renamed: write sampler_set=study"),
    ("sample", "ckpt_path={run} sampler=beta sampler.alpha=4", "sampler=beta is renamed: write prior=beta"),
    ("sample", "ckpt_path={run} sampler.alpha=4", "sampler.alpha=4 is renamed: write prior.alpha=4"),
    ("sample", "ckpt_path={run} sampler=gmm", "sampler=gmm is renamed: write fitted=gmm"),
    ("sample", "ckpt_path={run} prior=beta fitted=gmm", "prior= and fitted= both choose the distribution"),
    ("beta_grid", "ckpt_path={run} paths=foo", "paths=foo is not an option of paths: choose one of default"),
    ("beta_grid", "ckpt_path={run} alpha=[1]", "alpha=[1] is not a key of this command's config"),
    ("beta_grid", "ckpt_path={run} alphas=[0,1]", "alphas=[0, 1] is invalid: must be a non-empty list of numbers > 0"),
    ("beta_grid", "ckpt_path={missing}", "ckpt_path='{missing}' does not exist"),
    ("classifier", "classifier=foo", "classifier=foo is not an option of classifier: choose one of cnn"),
    ("classifier", "data_root={data}", "data_root={data} is not a key of this command's config"),
    ("classifier", "data.root={data} device=tpu", "device='tpu' is invalid: must be one of auto, cpu, cuda"),
    ("classifier", "classifier.lr=0", "classifier.lr=0 is invalid: must be a finite number > 0"),
    ("bench", "prior=foo", "prior=foo is not an option of prior: choose one of beta,"),
    ("bench", "foo=1", "foo=1 is not a key of this command's config"),
    ("bench", "data.root={data} data.batch_size=0", "data.batch_size=0 is invalid: must be an integer >= 1"),
    ("bench", "--epochs 0", "--epochs=0 is invalid: must be an integer >= 1"),
    ("bench", "--foo", "unrecognized arguments: --foo"),
    ("bench", "data.root={missing} data.download=false", "mnist not found: missing train-images-idx3-ubyte.gz"),
    ("explore", "ckpt_path={run} sampler_set=foo", "sampler_set=foo is not an option of sampler_set: choose"),
    ("explore", "ckpt_path={run} grid_size=2", "grid_size=2 is invalid: must be an integer in 8..512"),
    ("explore", "sweep={missing}", "sweep={missing} is not a folder; give a multirun folder"),
    ("report", "{data} --foo", "unrecognized arguments: --foo"),
    ("report", "{missing}", "{missing} is not a folder; give a multirun folder"),
]
HYDRA_COMMANDS = {"train": "train", "evaluate": "evaluate", "sample": "sample", "beta_grid": "beta_grid",
                  "classifier": "train_classifier", "explore": "explore"}
GROUPS = {"train": ("annealing", "callbacks", "data", "experiment", "model", "prior", "sampler_set", "trainer"),
          "evaluate": ("classifier", "paths", "sampler_set"), "sample": ("fitted", "paths", "prior"),
          "beta_grid": ("paths",),
          "classifier": ("classifier", "paths"), "bench": ("data", "model", "prior", "trainer"), "report": (),
          "explore": ("paths", "sampler_set")}
MODULES = {"train": train, "evaluate": evaluate, "sample": sample, "beta_grid": beta_grid, "classifier": classifier,
           "bench": bench, "report": report, "explore": explore}


@pytest.fixture(scope="module")
def outcomes(trained_run: Path, mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every bad input and every `--help`, run as commands (one forked process each)."""
    logs = tmp_path_factory.mktemp("cli_logs")
    fill = {"run": trained_run, "data": mnist_root, "missing": logs / "missing"}
    cases = []
    for i, (command, args, _) in enumerate(BAD_INPUTS):
        extra = [f"paths.log_dir={logs / str(i)}"] if command in HYDRA_COMMANDS else []
        if command in ("train", "bench") and "data.root" not in args:
            extra = tiny_overrides(mnist_root, logs / str(i)) if command == "train" else []
        words = shlex.split(args.format(**fill))
        flags = [w for w in words if w == "-m"]  # Hydra's -m before the overrides, the case's own last
        cases.append((f"vae_lightning.{command}", [*flags, *extra, *[w for w in words if w != "-m"]]))
    cases += [(f"vae_lightning.{command}", ["--help"]) for command in MODULES]
    results = run_commands(*cases)
    return {"bad": results[:len(BAD_INPUTS)], "help": dict(zip(MODULES, results[len(BAD_INPUTS):], strict=True)),
            "logs": logs, "fill": fill}


@pytest.mark.parametrize("i", range(len(BAD_INPUTS)), ids=[f"{c}: {a}" for c, a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_leaves_no_folder(outcomes, trained_run, i):
    _, _, message = BAD_INPUTS[i]
    result = outcomes["bad"][i]
    errors = [line for line in result["stderr"].splitlines() if "error" in line.lower()]
    assert result["rc"] == 2, result["stderr"][-3000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message.format(**outcomes['fill'])}"), result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert not list(outcomes["logs"].glob(f"{i}/*/*runs/*")), "a run folder was left behind"
    assert not (trained_run / "eval").exists()


@pytest.mark.parametrize("command", MODULES)
def test_help_names_the_groups_and_examples(outcomes, command):
    result = outcomes["help"][command]
    assert result["rc"] == 0, result["stderr"][-3000:]
    text = result["stdout"]
    for group in GROUPS[command]:
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        section = text.split("Config groups")[1].split("\n\n")[0]
        (line,) = [line for line in section.splitlines() if line.split()[:1] == [group]]
        listed = line.split(None, 1)[1].split("(none chosen)")[0].split(" | ")
        assert [o.strip().strip("[]") for o in listed] == options  # every option, the current one in brackets
        assert sum(o.strip().startswith("[") for o in listed) + ("(none chosen)" in line) == 1
    assert all(example in text for example in MODULES[command].EXAMPLES)
    assert "Examples:" in text
    assert not re.search(r"vae_lightning/|\.py\b|cached_cuda_check|PYTORCH_NVML|fixed_noise", text)  # user's words
    assert not re.search(r"\(default: [^)]*\) \(default:", " ".join(text.split()))  # each default said once


HELP_PROBE = """
import runpy, sys, time
start = time.perf_counter()
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print("SECONDS", time.perf_counter() - start, "TORCH", "torch" in sys.modules, "LIGHTNING", "lightning" in sys.modules)
"""


@pytest.mark.parametrize("command", MODULES)
def test_help_imports_no_torch(command, capsys):
    """`--help` answers before the heavy imports; its wall time is printed (-s shows it), not asserted."""
    result = subprocess.run([sys.executable, "-c", HELP_PROBE, f"vae_lightning.{command}"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    probe = result.stdout.strip().splitlines()[-1].split()
    assert probe[3] == "False" and probe[5] == "False", result.stdout[-2000:]
    with capsys.disabled():
        print(f"\n--help of {command}: {float(probe[1]):.2f} s in-process after interpreter start")


@pytest.mark.parametrize("command", MODULES)
def test_every_example_parses_and_composes(command, tmp_path):
    """The examples of `--help` are commands that run: their flags parse and their overrides compose
    (a sweep's `-m` aside, whose comma lists only a sweep can compose)."""
    module = MODULES[command]
    for example in module.EXAMPLES:
        args = shlex.split(example)[3:]
        if command in HYDRA_COMMANDS:
            if "-m" not in args:
                compose_config(HYDRA_COMMANDS[command], args, tmp_path / "run")
        else:
            parsed = module.argument_parser().parse_args(args)
            if command == "bench":
                compose_config("train", parsed.overrides, tmp_path / "run")
    HydraConfig.instance().cfg = None
