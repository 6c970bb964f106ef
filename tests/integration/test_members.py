"""K seeds of one configuration trained in one process (train 'seeds=[...]', runs/members.py), through the real
commands on the synthetic data: inside a sweep, every member is a run folder that load_model, evaluate, sample and
report use as they use a single run's; a 1-member run follows the single run at its seed; a resumed K-member run
ends bit-identical to an uninterrupted one; bad member lists are one line and leave nothing behind."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from helpers.commands import HELPERS, QUICK, TINY_CLASSIFIER, only_run, run_cli, tiny_overrides
from helpers.tables import check_tables

from vae_lightning import load_model

FAST = ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1"]


def evaluate_options(mnist_root: Path, cache: Path) -> list[str]:
    return [f"data.root={mnist_root}", "data.download=false", "progress=false", *TINY_CLASSIFIER, *QUICK,
            f"classifier.cache_dir={cache}", "sampler_set=study", "log_to_trackers=false"]


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def sweep(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """`train -m prior=normal,mog 'seeds=[0,1]'`: two jobs of two members each, then a report that evaluates them."""
    logs = tmp_path_factory.mktemp("members")
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, logs), *FAST, "prior=normal,mog",
                     "seeds=[0,1]")
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (logs / "train" / "multiruns").iterdir()
    out = logs / "report"
    report = run_cli("vae_lightning.report", str(sweep_dir), "--out", str(out), "--contrast", "prior=mog:normal",
                     "--evaluate", *evaluate_options(mnist_root, logs / "cache"))
    assert report.returncode == 0, report.stderr[-3000:]
    return {"dir": sweep_dir, "out": out, "train": result, "logs": logs}


def test_every_member_is_a_run_folder_of_its_own(sweep):
    sweep_dir = sweep["dir"]
    for job, prior in ((sweep_dir / "0", "normal"), (sweep_dir / "1", "mog")):
        assert (job / "checkpoints" / "last.ckpt").is_file()  # the stacked checkpoint, to resume all members
        for seed in (0, 1):
            member = job / f"seed_{seed}"
            overrides = (member / ".hydra" / "overrides.yaml").read_text()
            assert f"- prior={prior}\n" in overrides and f"- seed={seed}\n" in overrides and "seeds" not in overrides
            status = json.loads((member / "status.json").read_text())
            assert status["status"] == "completed" and status["metrics"]["test/elbo"] < 0
            assert 0 <= status["metrics"]["diagnostics/mutual_information"] <= 5  # the last epoch's, as a job's
            assert sorted(p.name for p in (member / "checkpoints").iterdir())[-1] == "last.ckpt"
            assert len(list((member / "checkpoints").glob("epoch_*.ckpt"))) == 1  # its own best by val/elbo
            events = list((member / "tensorboard").rglob("events.out.tfevents.*"))
            assert events and events[0].parent.name.endswith(f"seed={seed}")
            assert len((member / "train.log").read_text().splitlines()) == 2  # one line per epoch
            assert {p.name for p in (member / "samples" / "final").iterdir()} == {"samples_prior.png",
                                                                                  "space_reconstructions.png"}
            model = load_model(member)
            assert model.prior.name == ("normal_0_1" if prior == "normal" else "mog_10")
            metrics = json.loads((member / "eval" / "metrics.json").read_text())  # evaluated by the report
            assert metrics["likelihood"]["nll_exact"]["value"] > 0
    assert "2 members (seeds 0, 1)" in sweep["train"].stdout


def test_the_report_groups_each_configurations_members_and_pairs_them_by_seed(sweep):
    text = (sweep["out"] / "report.md").read_text()
    assert check_tables(text) >= 3
    section = text.split("## Configurations over seeds")[1].split("## Contrasts")[0]
    lines = [line for line in section.splitlines() if line.startswith("| prior=")]
    assert len(lines) == 2 and all("| 2 (0,1) |" in line for line in lines)
    with open(sweep["out"] / "report_contrasts.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["metric"] == "eval/nll_exact"]
    assert len(rows) == 1 and rows[0]["paired_seeds"] == "0,1"
    assert "| 0/seed_0 |" in text and "| 1/seed_1 |" in text  # jobs named by their folders inside the sweep


def test_sample_and_evaluate_take_a_member_folder(sweep, mnist_root, tmp_path):
    member = sweep["dir"] / "1" / "seed_1"
    result = run_cli("vae_lightning.sample", f"ckpt_path={member}", f"output={tmp_path / 'grid.png'}", "n=16")
    assert result.returncode == 0 and (tmp_path / "grid.png").stat().st_size > 0, result.stderr[-2000:]
    group = run_cli("vae_lightning.evaluate", f"ckpt_path={sweep['dir'] / '1'}",
                    *evaluate_options(mnist_root, sweep["logs"] / "cache"))
    assert group.returncode == 2
    assert group.stderr.startswith("error: this is the stacked checkpoint of a run of 2 members (seeds 0, 1); give "
                                   "one member's folder, <run>/seed_<s>"), group.stderr


@pytest.mark.full
def test_a_one_member_run_follows_the_single_run_at_its_seed(mnist_root, tmp_path):
    """Same initial weights, same batches, same noise: after 6 steps a 1-member run's weights equal the single run's
    up to float rounding (the vmapped layers sum in another order: 8.6e-6 at most, measured), while another seed's are
    far off (1.4)."""
    steps = ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "test=false", "~callbacks.prior_grid"]
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path / "one"), *steps, "seeds=[3]")
    assert result.returncode == 0, result.stderr[-3000:]
    member = only_run(tmp_path / "one") / "seed_3" / "checkpoints" / "last.ckpt"
    singles = {}
    for seed in (3, 4):
        result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path / f"single{seed}"), *steps,
                         f"seed={seed}")
        assert result.returncode == 0, result.stderr[-3000:]
        singles[seed] = state(only_run(tmp_path / f"single{seed}") / "checkpoints" / "last.ckpt")
    ours = state(member)
    assert ours.keys() == singles[3].keys()
    near = max(float((ours[k] - singles[3][k]).abs().max()) for k in ours)
    far = max(float((ours[k] - singles[4][k]).abs().max()) for k in ours)
    assert near < 1e-4 < 1e-2 < far, (near, far)


def test_a_resumed_k_member_run_ends_bit_identical_to_an_uninterrupted_one(mnist_root, tmp_path):
    steps = ["trainer.limit_train_batches=3", "test=false", "prior=vamp", "prior.n_pseudo_inputs=5", "seeds=[2,0]"]
    straight = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path / "a"), *steps,
                       "trainer.max_epochs=3")
    first = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path / "b"), *steps, "trainer.max_epochs=1")
    assert straight.returncode == first.returncode == 0, (straight.stderr[-2000:], first.stderr[-2000:])
    run = only_run(tmp_path / "b")
    resumed = run_cli("vae_lightning.train", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.startswith("resuming: ")
    for seed in (2, 0):
        ours, theirs = (state(folder / f"seed_{seed}" / "checkpoints" / "last.ckpt")
                        for folder in (run, only_run(tmp_path / "a")))
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), seed
        assert len((run / f"seed_{seed}" / "train.log").read_text().splitlines()) == 3


BAD = [
    (["seeds=[]"], "error: seeds=[] is invalid: must be a non-empty list of seeds"),
    (["seeds=[0,1,0]"], "error: seeds=[0, 1, 0] is invalid: must be distinct seeds (repeated: 0)"),
    (["seeds=[0,x]"], "error: seeds[...]='x' is invalid: must be an integer"),
    (["seeds=7"], "error: seeds=7 is invalid: must be a non-empty list of seeds"),
    (["seeds=[0,1]", "+trainer.gradient_clip_val=1"], "error: trainer.gradient_clip_val=1 clips the gradient of all "
                                                      "members together"),
    (["seeds=[0,1]", "trainer.devices=2"], "error: trainer.devices=2 trainer.strategy=auto: a K-member run trains on "
                                           "one device"),
]


@pytest.mark.parametrize(("overrides", "line"), BAD)
def test_a_bad_member_list_is_one_line_and_creates_nothing(mnist_root, tmp_path, overrides, line):
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path / "logs"), *overrides)
    assert result.returncode == 2 and result.stderr.startswith(line), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "logs").exists()


def test_a_checkpoint_resumes_only_as_what_it_was_trained_as(sweep, mnist_root, tmp_path):
    group = sweep["dir"] / "0"
    cases = [
        ([f"ckpt_path={group / 'seed_1' / 'checkpoints' / 'last.ckpt'}"],
         f"error: ckpt_path='{group / 'seed_1' / 'checkpoints' / 'last.ckpt'}' is the member at seed 1 of a run of 2 "
         f"members; resume all of them with ckpt_path={group / 'checkpoints' / 'last.ckpt'}"),
        ([f"ckpt_path={group / 'checkpoints' / 'last.ckpt'}", "seeds=[0,1,2]"],
         "error: seeds=[0, 1, 2] differs from the checkpoint's members [0, 1]"),
        ([f"ckpt_path={group / 'checkpoints' / 'last.ckpt'}", "seeds=null"],
         "is the stacked checkpoint of a run of members (seeds 0, 1); resume it with its own seeds"),
    ]
    before = {p: p.stat().st_mtime_ns for p in group.rglob("*") if p.is_file()}
    for overrides, line in cases:
        result = run_cli("vae_lightning.train", *overrides, "trainer.max_epochs=3")
        assert result.returncode == 2 and line in result.stderr.splitlines()[0], result.stderr
    assert {p: p.stat().st_mtime_ns for p in group.rglob("*") if p.is_file()} == before


@pytest.mark.full
def test_a_non_finite_member_stops_every_member_and_is_named(mnist_root, tmp_path):
    """A flow prior at an absurd learning rate overflows at its second step (test_flows_train.py's recipe)."""
    first = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path), "prior=flow", "prior.lr=1e30",
                    "test=false", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "seeds=[0,1]")
    assert first.returncode == 0, first.stderr[-3000:]
    run = only_run(tmp_path)
    members = {p: p.read_bytes() for p in run.rglob("*.ckpt")}
    second = run_cli("vae_lightning.train", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2",
                     "trainer.limit_train_batches=1.0")
    assert second.returncode == 1, second.stderr[-3000:]
    (line,) = [x for x in second.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: non-finite training loss at step 1 (epoch 1, batch 0): loss=nan")
    assert "(the members at seed 0, 1; every member stops)" in line or "(the member at seed " in line
    assert {p: p.read_bytes() for p in run.rglob("*.ckpt")} == members


@pytest.mark.full
def test_members_of_a_four_member_run_agree_with_the_single_runs_at_their_seeds(mnist_root, tmp_path):
    """A member shares its single run's initial weights and batches but not its noise (drawn for all members at
    once), so the two agree in distribution: over 4 seeds, the members' mean test ELBO lies within 3 standard errors
    of the single runs' (the seed-to-seed spread of both), and member and single run differ (the noise is not the
    single run's)."""
    steps = ["trainer.max_epochs=3", "~callbacks.prior_grid"]
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path / "members"), *steps,
                     "seeds=[0,1,2,3]")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path / "members")
    members = [json.loads((run / f"seed_{s}" / "status.json").read_text())["metrics"]["test/elbo"] for s in range(4)]
    sweep = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, tmp_path / "singles"), *steps,
                    "seed=0,1,2,3")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "singles" / "train" / "multiruns").iterdir()
    singles = [json.loads((sweep_dir / str(j) / "status.json").read_text())["metrics"]["test/elbo"] for j in range(4)]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    var = lambda v: sum((x - mean(v)) ** 2 for x in v) / (len(v) - 1)  # noqa: E731
    standard_error = ((var(members) + var(singles)) / 4) ** 0.5
    assert abs(mean(members) - mean(singles)) <= 3 * standard_error, (members, singles)
    assert members != singles


@pytest.mark.full
def test_a_full_disk_while_saving_a_members_checkpoint_keeps_the_last_good_stacked_one(mnist_root, tmp_path):
    """The disk fills while the second epoch writes the first member's best checkpoint: one line, the stacked
    checkpoint of the first epoch intact, and resuming it finishes every member."""
    steps = ["trainer.limit_train_batches=3", "test=false", "seeds=[0,1]", "trainer.max_epochs=2"]
    result = run_cli("helpers.faulty", "train", *tiny_overrides(mnist_root, tmp_path), *steps,
                     env={"PYTHONPATH": os.pathsep.join([str(HELPERS.parent), os.environ.get("PYTHONPATH", "")]),
                          "VAE_TEST_NO_SPACE": "epoch_001.ckpt"})
    assert result.returncode == 1, result.stderr[-3000:]
    run = only_run(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: no space left on the device in {run / 'seed_0' / 'checkpoints'}: writing "
                           "epoch_001.ckpt"), line
    assert line.endswith(f"the last good checkpoint {last} (step 3) is intact, and nothing half-written is left; free "
                         f"some space on that device, then resume with: python -m vae_lightning.train ckpt_path={last}")
    assert not list(run.rglob("*.tmp*"))
    again = run_cli("vae_lightning.train", f"ckpt_path={last}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert torch.load(run / "seed_1" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6


@pytest.mark.full
def test_every_epoch_saves_the_stacked_and_the_members_last_checkpoints(mnist_root, tmp_path):
    """A run killed in its third epoch resumes from the end of its second (its own last.ckpt and its members')."""
    steps = ["trainer.limit_train_batches=3", "test=false", "seeds=[0,1]", "trainer.max_epochs=3"]
    result = run_cli("helpers.faulty", "train", *tiny_overrides(mnist_root, tmp_path), *steps,
                     env={"PYTHONPATH": os.pathsep.join([str(HELPERS.parent), os.environ.get("PYTHONPATH", "")]),
                          "VAE_TEST_KILL_AT": "step:7"})
    assert result.returncode == -9, result.stderr[-3000:]
    run = only_run(tmp_path)
    for path in (run / "checkpoints" / "last.ckpt", run / "seed_1" / "checkpoints" / "last.ckpt"):
        assert torch.load(path, weights_only=False)["global_step"] == 6, path
