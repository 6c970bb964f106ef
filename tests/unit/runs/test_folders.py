"""Run folders (runs/folders.py) from hand-made folders, no training: what defines a configuration, the keys a sweep
varies, the TensorBoard label of a run, where a checkpoint's run and evaluation live, the config a resumed run last
trained with, and a resume's overrides applied to the saved config."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from vae_lightning.runs.folders import (
    RESUME_PREFIX,
    apply_overrides,
    configuration,
    eval_dir,
    hydra_subdir,
    latest_run_config,
    run_dir,
    run_dir_of,
    run_label,
    swept_keys,
)


def run_folder(root: Path, overrides: list[str], config: dict | None = None) -> Path:
    """A run folder as train leaves it: .hydra/{config,overrides}.yaml and checkpoints/last.ckpt."""
    (root / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), root / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create(config or {"prior": {"_target_": "vae_lightning.latent.NormalPrior"}}),
                   root / ".hydra" / "config.yaml")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "last.ckpt").write_bytes(b"")
    return root


def test_a_configuration_is_what_a_run_trains_without_its_seed_paths_or_speed():
    overrides = ["seed=3", "prior=beta", "paths.log_dir=/x", "data.root=/d", "threads=1", "annealing=linear",
                 "callbacks.progress_bar.refresh_rate=0", "~callbacks.prior_grid", "hydra.run.dir=/r"]
    assert configuration(overrides) == ("annealing=linear", "prior=beta", "~callbacks.prior_grid")
    assert configuration(["prior=beta", "seed=0"]) == configuration(["seed=1", "prior=beta", "paths.log_dir=/y"])


def test_the_swept_keys_are_the_comma_lists_and_the_sweepers_params(tmp_path):
    assert swept_keys(tmp_path / "multirun.yaml") is None  # not a sweep
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["prior=normal,beta", "seed=0,1", "lr=1"]},
                                               "sweeper": {"params": {"annealing": "constant,linear"}}}}),
                   tmp_path / "multirun.yaml")
    assert swept_keys(tmp_path / "multirun.yaml") == {"prior", "seed", "annealing"}


def test_a_run_is_labelled_by_its_prior_then_what_its_sweep_varies_then_its_seed(tmp_path):
    sweep = tmp_path / "sweep"
    job = run_folder(sweep / "0", ["annealing=linear", "prior=beta", "prior.alpha=4", "data.root=/d", "seed=1"])
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["annealing=constant,linear", "prior=beta",
                                                                      "prior.alpha=4", "seed=1"]}}}),
                   sweep / "multirun.yaml")
    assert run_label(str(job)) == "annealing=linear,seed=1"  # the prior is not swept: left out
    single = run_folder(tmp_path / "single", ["prior.alpha=4", "prior=beta", "data.root=/d", "seed=1"])
    assert run_label(str(single)) == "prior=beta,prior.alpha=4,seed=1"  # the prior first, its parameters after it
    (single / "tensorboard").mkdir()
    (single / "tensorboard" / "events.out.tfevents.1").write_bytes(b"")
    assert run_label(str(single)) == ""  # a run written before runs were named keeps its events where they are


def test_a_checkpoint_inside_a_run_folder_resumes_there_and_is_evaluated_in_its_eval(tmp_path):
    run = run_folder(tmp_path / "run", ["prior=beta"])
    last = run / "checkpoints" / "last.ckpt"
    assert run_dir_of(last) == run and run_dir_of(tmp_path / "loose.ckpt") is None
    assert run_dir(str(last), "/new") == str(run) and run_dir(None, "/new") == "/new" and run_dir("", "/new") == "/new"
    assert hydra_subdir(str(last)).startswith(f".hydra/{RESUME_PREFIX}") and hydra_subdir(None) == ".hydra"
    assert eval_dir(str(run), "/elsewhere") == str(run / "eval") == eval_dir(str(last), "/elsewhere")
    assert eval_dir(str(tmp_path / "loose.ckpt"), "/elsewhere") == "/elsewhere"


def test_a_resumed_run_reads_the_config_it_last_trained_with_upgraded(tmp_path):
    run = run_folder(tmp_path / "run", [], {"prior": {"_target_": "vae_lightning.priors.BetaPrior", "alpha": 2,
                                                      "latent_dim": "${model.latent_dim}"}, "model": {"latent_dim": 2}})
    first = latest_run_config(run)
    assert first.prior._target_ == "vae_lightning.latent.BetaPrior" and "latent_dim" not in first.prior
    resumed = run / ".hydra" / f"{RESUME_PREFIX}2026-12-08_00-00-00_000000"
    resumed.mkdir()
    OmegaConf.save(OmegaConf.create({"prior": {"_target_": "vae_lightning.latent.BetaPrior", "alpha": 5}}),
                   resumed / "config.yaml")
    assert latest_run_config(run).prior.alpha == 5
    assert latest_run_config(run, exclude=resumed).prior.alpha == 2  # the resume being written is not its own source


def test_a_resume_takes_only_the_overridden_keys_from_todays_config():
    saved = OmegaConf.create({"trainer": {"max_epochs": 20, "lr": 1.0}, "prior": {"alpha": 2}})
    composed = OmegaConf.create({"trainer": {"max_epochs": 40, "lr": 9.0}, "prior": {"alpha": 9},
                                 "likelihood": {"name": "bernoulli"}, "callbacks": {}})
    merged = apply_overrides(saved, composed, ["trainer.max_epochs=40", "hydra.run.dir=/x"])
    assert merged.trainer == {"max_epochs": 40, "lr": 1.0} and merged.prior.alpha == 2
    assert merged.likelihood.name == "bernoulli"  # a section the saved config lacks: today's default
    assert "trainer" in apply_overrides(saved, composed, ["~trainer.lr"]) and "lr" not in apply_overrides(
        saved, composed, ["~trainer.lr"]).trainer
