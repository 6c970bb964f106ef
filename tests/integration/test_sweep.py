"""Sweeps: multiruns through the CLI (basic, joblib, submitit-local launchers, Optuna), failed jobs,
the sweep report, TensorBoard HPARAMS, per-job threads, DDP with two CPU processes."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers.commands import run_cli, tiny_overrides
from helpers.jobs import evaluation, fake_job
from helpers.tables import check_tables
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import vae_lightning.report as report_command
from vae_lightning import tracking as hparams
from vae_lightning.core.errors import ParameterError, UserError
from vae_lightning.data.batches import EpochShuffle
from vae_lightning.launchers.joblib import JoblibLauncher
from vae_lightning.model.building import build_module
from vae_lightning.reporting import figures
from vae_lightning.reporting.writer import write_report
from vae_lightning.runs import sweep
from vae_lightning.runs import threads as parallelism
from vae_lightning.runs.folders import CONF_DIR
from vae_lightning.tracking import event_folder

FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1"]


def multirun(mnist_root: Path, log_dir: Path, *overrides: str):
    """`python -m vae_lightning.train -m <tiny data> overrides...`; returns (result, the sweep folder)."""
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, log_dir), *FAST, *overrides)
    sweeps = list((log_dir / "train" / "multiruns").iterdir()) if (log_dir / "train" / "multiruns").exists() else []
    assert len(sweeps) == 1, result.stderr[-3000:]
    return result, sweeps[0]


def statuses(sweep_dir: Path) -> dict[str, dict]:
    return {job.name: sweep.read_status(job) for job in sweep.job_dirs(sweep_dir)}


def overrides_of(job: Path) -> list[str]:
    return list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))


@pytest.fixture(scope="module")
def sweep_2x2(small_sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of conftest's 2x2 multirun (priors x schedules, basic launcher), shared by the tests below."""
    return Path(shutil.copytree(small_sweep, tmp_path_factory.mktemp("sweep") / small_sweep.name))


def test_multirun_writes_one_complete_run_per_job(sweep_2x2):
    jobs = sweep.job_dirs(sweep_2x2)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    varying = {tuple(o for o in overrides_of(j) if o.startswith(("prior=", "annealing="))) for j in jobs}
    assert varying == {(f"prior={p}", f"annealing={a}") for p in ("normal", "beta") for a in ("constant", "linear")}
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert list(event_folder(job).glob("events.out.tfevents.*"))
        status = sweep.read_status(job)
        assert status["status"] == "completed"
        assert math.isfinite(status["metrics"]["val/elbo"]) and math.isfinite(status["metrics"]["test/elbo"])


def test_report_lists_every_job_with_its_metrics(sweep_2x2, capsys):
    report_command.main([str(sweep_2x2)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith("(4 jobs, 0 failed)")
    files = sorted(p.name for p in sweep_2x2.glob("report*"))  # every file it says it wrote, and no other
    assert last == f"wrote {', '.join(files)} in {sweep_2x2} (4 jobs, 0 failed)" and "report.md" in files
    recorded = {name: s["metrics"] for name, s in statuses(sweep_2x2).items()}
    with open(sweep_2x2 / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["job"] for r in rows) == ["0", "1", "2", "3"]
    for row in rows:
        assert row["status"] == "completed"
        assert float(row["val/elbo"]) == recorded[row["job"]]["val/elbo"]
        assert float(row["test/elbo"]) == recorded[row["job"]]["test/elbo"]
        assert row["overrides"].startswith("prior=") and "data.root" not in row["overrides"]
    elbos = [float(r["val/elbo"]) for r in rows]
    assert elbos == sorted(elbos, reverse=True)
    table = (sweep_2x2 / "report.md").read_text()
    assert check_tables(table) == 1
    assert sum(line.startswith("| ") and "completed" in line for line in table.splitlines()) == 4
    assert f"{recorded['0']['val/elbo']:.2f}" in table
    assert (sweep_2x2 / "report.png").stat().st_size > 0


def test_every_run_logs_hparams_with_its_final_metrics(sweep_2x2):
    for job in sweep.job_dirs(sweep_2x2):
        acc = EventAccumulator(str(event_folder(job)), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        content = {tag: plugin_data_pb2.HParamsPluginData.FromString(raw)
                   for tag, raw in acc.PluginTagToContent("hparams").items()}
        hparams = content["_hparams_/session_start_info"].session_start_info.hparams
        assert set(hparams) == {"prior", "model", "annealing", "latent_dim", "seed"}  # all runs, shown by default
        prior = "Beta(1, 1)" if "prior=beta" in overrides_of(job) else "N(0, 1²)"
        schedule = "LinearWarmup(" if "annealing=linear" in overrides_of(job) else "Constant("
        assert hparams["prior"].string_value == prior
        assert hparams["annealing"].string_value.startswith(schedule)
        assert hparams["latent_dim"].number_value == 2 and hparams["model"].string_value.endswith("bernoulli, lr 0.001")
        assert hparams["seed"].number_value == 12345
        metric_tags = [m.name.tag for m in content["_hparams_/experiment"].experiment.metric_infos]
        assert metric_tags[:5] == ["val/elbo", "test/elbo", "eval/nll_exact", "eval/nll_iwae", "eval/fid/own_prior"]
        recorded = sweep.read_status(job)["metrics"]
        for tag in ("val/elbo", "test/elbo"):  # the HPARAMS tab shows the last value of each metric's scalar
            assert acc.Scalars(tag)[-1].value == pytest.approx(recorded[tag])


def test_failed_jobs_are_recorded_and_the_sweep_goes_on(mnist_root, tmp_path):
    # jobs 0, 1: a bad value (UserError at build time); job 2: an exception inside fit; job 3: fine
    result, sweep_dir = multirun(mnist_root, tmp_path, "prior=beta", "prior.alpha=0,4",
                                 "model.optimizer.lr=-1,0.001")
    assert result.returncode == 1
    recorded = statuses(sweep_dir)
    assert [recorded[j]["status"] for j in "0123"] == ["failed", "failed", "failed", "completed"]
    assert recorded["0"]["error"] == recorded["1"]["error"] == (
        "prior.alpha=0 is invalid: must be a finite number > 0")
    assert recorded["2"]["error"] == "ValueError: Invalid learning rate: -1"
    assert "error: job 2 failed: ValueError: Invalid learning rate: -1" in result.stderr
    assert "Traceback" in (sweep_dir / "2" / "train.log").read_text()  # the details stay in the job's log

    rows = write_report([sweep_dir])
    assert [(r.job, r.status) for r in rows] == [("3", "completed"), ("0", "failed"), ("1", "failed"),
                                                 ("2", "failed")]
    table = (sweep_dir / "report.md").read_text()
    assert "| 2 | failed | prior.alpha=4 model.optimizer.lr=-1 |" in table
    assert "ValueError: Invalid learning rate: -1 |" in table


def test_joblib_runs_jobs_in_parallel_processes_with_a_share_of_the_cores(mnist_root, tmp_path):
    result, sweep_dir = multirun(mnist_root, tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                 "prior=normal,gaussian")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    assert "GPU available" not in result.stdout + result.stderr  # the jobs' consoles are quiet in workers too
    expected = JoblibLauncher().threads({"n_jobs": 2}, parallelism.cpu_count(), None)
    recorded = statuses(sweep_dir)
    assert sorted(recorded) == ["0", "1"]
    assert all(s["status"] == "completed" and s["threads"] == expected for s in recorded.values())


@pytest.mark.full  # submitit starts a process per job
def test_submitit_local_runs_each_job_as_its_own_process(mnist_root, tmp_path):
    result, sweep_dir = multirun(mnist_root, tmp_path, "hydra/launcher=submitit_local",
                                 "hydra.launcher.cpus_per_task=1", "prior=normal,gaussian")
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = statuses(sweep_dir)
    assert sorted(recorded) == ["0", "1"]
    assert all(s["status"] == "completed" and s["threads"] == 1 for s in recorded.values())
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 2  # submitit ran two jobs


def test_optuna_sweeper_maximizes_the_optimized_metric(mnist_root, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install -e '.[optuna]'")
    result, sweep_dir = multirun(mnist_root, tmp_path, "experiment=optuna", "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = statuses(sweep_dir)
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert len(recorded) == 2
    assert best.best_value == pytest.approx(max(s["metrics"]["val/elbo"] for s in recorded.values()))


@pytest.mark.full  # two DDP processes
def test_ddp_two_cpu_processes_share_the_data_and_only_rank_zero_writes(mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path), "trainer=ddp",
                     "trainer.devices=2", "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "train" / "runs").iterdir()  # the second process wrote no run folder of its own
    assert "Starting with 2 processes" in (run / "train.log").read_text()  # Lightning's line: in the log only
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_001.ckpt", "last.ckpt"]
    events = list(event_folder(run).glob("events.out.tfevents.*"))
    assert events and len({e.name.split(".")[-2] for e in events}) == 1  # all written by one process
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2 * math.ceil((384 - 64) / 2 / 32)  # each process: half the batches


def test_each_ddp_rank_gets_a_distinct_half_of_the_epoch_order():
    n, seed = 11, 3
    samplers = [DistributedSamplerWrapper(EpochShuffle(n, seed), num_replicas=2, rank=r, shuffle=False)
                for r in range(2)]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        halves = [list(s) for s in samplers]
        order = list(EpochShuffle(n, seed + epoch))  # EpochShuffle's order for this epoch
        assert halves[0] == order[0::2] and halves[1] == order[1::2] + order[:1]  # padded to equal length
        assert set(halves[0]) | set(halves[1]) == set(range(n))


def test_script_ddp_is_refused_inside_a_local_multirun(monkeypatch):
    ddp = L.Trainer(strategy="ddp", devices=2, accelerator="cpu", logger=False)
    parallelism.check_strategy(ddp)  # a single run: Lightning starts the second process itself
    monkeypatch.setattr(sweep, "in_multirun", lambda: True)
    with pytest.raises(UserError, match="use trainer.strategy=ddp_spawn"):
        parallelism.check_strategy(ddp)
    parallelism.check_strategy(L.Trainer(strategy="ddp_spawn", devices=2, accelerator="cpu", logger=False))
    parallelism.check_strategy(L.Trainer(devices=1, accelerator="cpu", logger=False))


def test_run_job_records_the_outcome_and_returns_nan_for_failures(compose_cfg, tmp_path):
    compose_cfg([])  # Hydra's runtime output dir: tmp_path/run
    job_dir = tmp_path / "run"

    def bad() -> dict[str, float]:
        raise ParameterError("prior.alpha", 0, "a finite number > 0")

    assert sweep.run_job(bad) is None
    assert sweep.read_status(job_dir) == {"status": "failed", "overrides": [],
                                          "error": "prior.alpha=0 is invalid: must be a finite number > 0"}
    assert math.isnan(sweep.optimized_value(None, "val/elbo"))
    metrics = sweep.run_job(lambda: {"val/elbo": -100.0})
    assert sweep.read_status(job_dir)["status"] == "completed"
    assert sweep.optimized_value(metrics, "val/elbo") == -100.0
    assert math.isnan(sweep.optimized_value(metrics, "val/elbow"))
    assert sweep.optimized_value(metrics, None) is None


def test_a_sweep_run_again_into_its_folder_keeps_completed_jobs_and_refuses_other_ones(compose_cfg, tmp_path):
    compose_cfg(["seed=1"])
    assert sweep.run_job(lambda: {"val/elbo": -100.0}) == {"val/elbo": -100.0}
    assert sweep.run_job(bad_job) == {"val/elbo": -100.0}  # completed: not run again, its metrics
    compose_cfg(["seed=2"])  # another job in the same folder: not run, the folder left as it was
    assert sweep.run_job(bad_job) is None
    assert sweep.read_status(tmp_path / "run") == {"status": "completed", "metrics": {"val/elbo": -100.0},
                                                   "threads": torch.get_num_threads(), "overrides": ["seed=1"]}
    cfg = sweep.continue_own_checkpoint(compose_cfg(["seed=1"]))
    assert cfg.ckpt_path is None  # no checkpoint in its folder yet
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert sweep.continue_own_checkpoint(cfg).ckpt_path == str(tmp_path / "run" / "checkpoints" / "last.ckpt")


def bad_job() -> dict[str, float]:
    raise AssertionError("must not run")


def test_hyperparameters_name_the_prior_and_schedule_with_their_parameters(compose_cfg):
    cfg = compose_cfg(["prior=beta_4_3", "annealing=cyclical", "model.latent_dim=8"])
    module, schedule = build_module(cfg), instantiate(cfg.annealing)
    assert hparams.hyperparameters(module, schedule, cfg.model.optimizer.lr, cfg.seed) == {
        "prior": "Beta(4, 3)", "latent_dim": 8, "seed": 12345,
        "model": "mlp 784-400-200-8 leaky_relu / mlp 8-200-400-784 leaky_relu, bernoulli, lr 0.001",
        "annealing": f"Cyclical(max_weight=1.0, unit='epoch', total={cfg.trainer.max_epochs}.0, n_cycles=4, ratio=0.5)",
    }


def _compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_study_experiment_sweeps_the_study_priors_and_schedules():
    cfg = _compose_with_hydra(["experiment=study"])
    params = cfg.hydra.sweeper.params
    assert params.annealing == "constant,linear"
    priors = params.prior.split(",")
    assert len(priors) == 7
    labels = set()
    for prior in priors:
        node = _compose_with_hydra(["experiment=study", f"prior={prior}"]).prior
        labels.add((node._target_.rsplit(".", 1)[-1], node.get("loc"), node.get("scale"), node.get("alpha"),
                    node.get("beta")))
    assert labels == {("NormalPrior", None, None, None, None), ("GaussianPrior", 1.0, 2.0, None, None),
                      ("BetaPrior", None, None, 1.1, 1.1), ("BetaPrior", None, None, 1.1, 2.0),
                      ("BetaPrior", None, None, 4.0, 3.0), ("MixturePrior", None, None, None, None),
                      ("VampPrior", None, None, None, None)}
    free_bits = _compose_with_hydra(["experiment=study_free_bits"])
    assert free_bits.model.free_bits == 0.5 and free_bits.hydra.sweeper.params.prior == "normal"


def test_slurm_launcher_follows_the_trainer_for_multi_node_ddp():
    cfg = _compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp",
                               "trainer.devices=4", "trainer.num_nodes=2"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.timeout_min > 0 and launcher.cpus_per_task >= 1
    assert (cfg.trainer.strategy, cfg.trainer.num_nodes) == ("ddp", 2)



def test_report_reads_evaluate_metrics_and_marks_unfinished_jobs(tmp_path):
    fake_job(tmp_path / "0", ["seed=1", "prior=normal"],
             {"status": "completed", "metrics": {"val/elbo": -150.0, "test/elbo": -151.0}},
             evaluation(145.5, {"normal_0_1": 12.0, "aggregate_posterior": 3.0, "test": 0.0}))
    fake_job(tmp_path / "1", ["seed=1", "prior=beta"],
             {"status": "completed", "metrics": {"val/elbo": -140.0, "test/elbo": -141.0}},
             evaluation(139.0, {"normal_0_1": 20.0, "gmm_10": 5.0, "test": 0.0}))
    fake_job(tmp_path / "2", ["seed=1", "prior=gaussian"], None)
    (tmp_path / "multirun.yaml").write_text("{}\n")

    rows = write_report([tmp_path], metric="eval/fid/normal_0_1", ascending=True)
    assert [(r.job, r.status) for r in rows] == [("0", "completed"), ("1", "completed"), ("2", "unfinished")]
    assert rows[0].metrics["eval/nll_iwae"] == 145.5 and rows[0].metrics["eval/nll_exact"] == 144.5
    assert rows[0].varying == ["prior=normal"]
    text = (tmp_path / "report.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| job | status"))
    assert header == ("| job | status | overrides | val/elbo | test/elbo | eval/elbo | eval/nll_exact | eval/nll_iwae "
                      "| eval/active_units | error |")
    assert "| 2 | unfinished | prior=gaussian |" in text
    # the per-sampler table: every sampler any job was scored on, the test set last
    assert "| job | normal_0_1 | aggregate_posterior | gmm_10 | test |" in text
    assert "| 0 | 12.00 / 0.9 / 2.00 | 3.00 / 0.9 / 2.00 |  | 0 / 0.9 / 2.00 |" in text
    with open(tmp_path / "report.csv") as f:
        assert [r["eval/fid/normal_0_1"] for r in csv.DictReader(f)] == ["12.0", "20.0", ""]


def test_report_over_several_multiruns_draws_curves_and_grids(tmp_path):
    for sweep_name, prior in (("a", "normal"), ("b", "vamp")):
        fake_job(tmp_path / sweep_name / "0", [f"prior={prior}"],
                 {"status": "completed", "metrics": {"val/elbo": -150.0, "diagnostics/active_units": 2.0}},
                 evaluation(140.0, {"normal_0_1": 10.0, "test": 0.0}), curve=[-170.0, -160.0, -150.0])
    out = tmp_path / "out"
    rows = write_report([tmp_path / "a", tmp_path / "b"], out=out)
    assert sorted(r.job for r in rows) == ["a/0", "b/0"]
    text = (out / "report.md").read_text()
    assert "| val/elbo | diagnostics/active_units | eval/elbo |" in text
    for name in ("report.png", "report_curves.png", "report_grids.png"):
        assert (out / name).stat().st_size > 0, name
    assert "](report_grids.png)" in text
    curves = figures.event_curves(tmp_path / "a" / "0", figures.CURVES)
    assert curves["val/elbo"] == [(0, -170.0), (1, -160.0), (2, -150.0)]
    with Image.open(out / "report_grids.png") as grid:  # the red comparison figure is in it
        assert (255 * 0.7 < np.asarray(grid.convert("RGB"))[..., 0]).any()


def test_report_of_a_folder_without_jobs_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report_command.main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path} has no job folders (<job>/.hydra/config.yaml); "
                                               "give a multirun folder such as logs/train/multiruns/<timestamp>")


def test_report_refuses_a_run_folder_and_a_folder_of_separate_runs_and_writes_nothing(evaluated_run, tmp_path):
    """An evaluated run folder (its eval/ has a .hydra/ too, so it looked like a job) and the folder of runs it
    lies in are no sweeps: one line each naming what the folder is, exit 2, nothing written anywhere."""
    runs = Path(shutil.copytree(evaluated_run[0].parent, tmp_path / "runs"))
    (run,) = runs.iterdir()
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*")}
    for folder, start in ((run, f"error: {run} is a run folder, not a sweep: report compares the jobs of multirun "
                                f"folders (logs/train/multiruns/<timestamp>); one run's results: python -m "
                                f"vae_lightning.evaluate ckpt_path={run}"),
                          (runs, f"error: {runs} holds separate runs, not a sweep's jobs (no multirun.yaml, no job's "
                                 "status.json)")):
        result = run_cli("vae_lightning.report", str(folder))
        assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(start), line
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*")} == before
