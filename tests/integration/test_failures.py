"""A failed command changes nothing: a battery of commands that must fail against a trained and evaluated run
folder, each one `error:` line on stderr, nothing on stdout, exit 2, and afterwards every file of the folder
has the bytes and modification time it had, no file or folder came or went, and no output folder is left."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers.commands import evaluate_overrides, run_cli, run_commands, tiny_overrides, train_run

HUGE = 10**13


def snapshot(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file's bytes and mtime, and every folder, under `folder`."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def battery(run: Path, data: Path, cache: Path, logs: Path) -> list[tuple[str, list[str], str]]:
    """(command, arguments, start of its error line) of commands that must be refused."""
    last = f"ckpt_path={run}/checkpoints/last.ckpt"
    evaluate = evaluate_overrides(run, data, cache)
    out = [f"paths.log_dir={logs}"]
    return [
        ("evaluate", [*evaluate, *out, "iwae.k=0"], "iwae.k=0 is invalid"),
        ("evaluate", [*evaluate, *out, f"n_samples={HUGE}"], f"n_samples={HUGE} is invalid: must be at most"),
        ("evaluate", [*evaluate, *out, "exact.points_per_dim=10000000"], "exact.points_per_dim=10000000 is invalid"),
        ("evaluate", [*evaluate, *out, "samplers.beta_1_1.alpha=four"], "samplers.beta_1_1.alpha='four' is invalid"),
        ("train", [last, f"data.root={data}", "prior=vamp"], f"ckpt_path='{run}/checkpoints/last.ckpt' was trained"),
        ("train", [last, f"data.root={data}", "trainer.max_epochs=abc"], "trainer.max_epochs='abc' is invalid"),
        ("train", [last, f"data.root={data}", "callbacks.prior_grid.n_samples=10000000000000"],
         "callbacks.prior_grid.n_samples=10000000000000 is invalid: must be at most"),
        ("train", [*tiny_overrides(data, logs), "likelihood=continuous_bernoulli", "data.binarize=dynamic"],
         "likelihood=continuous_bernoulli does not model binary pixels (data.binarize=dynamic)"),
        ("train", [*tiny_overrides(data, logs), "prior=beta", "prior.alpha=four"], "prior.alpha='four' is invalid"),
        ("train", [*tiny_overrides(data, logs), "prior=gaussian", "prior.scale=two"], "prior.scale='two' is invalid"),
        ("sample", [f"ckpt_path={run}", *out, f"n={HUGE}"], f"n={HUGE} is invalid: must be at most"),
        ("sample", [f"ckpt_path={run}", *out, "prior=beta", "prior.alpha=four"], "prior.alpha='four' is invalid"),
        ("beta_grid", [f"ckpt_path={run}", *out, "alphas=[0]"], "alphas=[0] is invalid"),
    ]


def test_failed_commands_leave_the_run_folder_and_the_log_folder_as_they_were(evaluated_run, mnist_root, tmp_path):
    run, cache = evaluated_run
    copy = Path(shutil.copytree(run, tmp_path / run.name))  # the battery works on a copy of its own
    logs = tmp_path / "logs"
    logs.mkdir()
    cases = battery(copy, mnist_root, cache, logs)
    before = snapshot(copy)
    results = run_commands(*((f"vae_lightning.{command}", args) for command, args, _ in cases))
    for (command, args, start), result in zip(cases, results, strict=True):
        where = f"{command} {args[-1]}"
        assert result["rc"] == 2, (where, result["stderr"][-2000:])
        assert result["stdout"] == "", (where, result["stdout"][-2000:])
        lines = result["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), (where, result["stderr"][-2000:])
    assert snapshot(copy) == before
    assert not [p for p in logs.rglob("*") if p.is_dir()], "a failed command left an output folder"


def test_a_data_root_given_as_the_raw_folder_is_read_from_two_levels_up(mnist_root, tmp_path):
    raw = mnist_root / "MNIST" / "raw"
    before = snapshot(mnist_root)
    run = train_run(raw, tmp_path / "logs", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false",
                    "~callbacks.prior_grid")
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert snapshot(mnist_root) == before  # nothing written into the data folder (no MNIST/raw/MNIST/raw/)


def test_a_failed_download_leaves_no_empty_data_folder(tmp_path):
    root = tmp_path / "new" / "empty_root"  # its parent is new too: removed as well
    result = run_cli("vae_lightning.train", f"data.root={root}", f"paths.log_dir={tmp_path / 'logs'}",
                     env={"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    assert result.returncode == 2 and result.stderr.startswith("error: mnist not found in "), result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists() and not (tmp_path / "logs" / "train").exists()


def test_a_failed_command_removes_the_folders_it_made_and_no_other(mnist_root, tmp_path):
    """An empty folder that existed before (a user's fresh experiment folder) stays, though the command made its
    log folder inside it (which changed its modification time); a refused sweep leaves no multirun folder."""
    mine = tmp_path / "experiment"
    mine.mkdir()
    cases = [("vae_lightning.train", [f"data.root={mnist_root}", f"paths.log_dir={mine / 'logs'}", "prior=beta",
                                      "prior.alpha=-1"]),
             ("vae_lightning.train", ["-m", f"data.root={mnist_root}", f"paths.log_dir={mine / 'sweep_logs'}",
                                      "prior=normal,betta", "seed=0,1"])]
    for module, args in cases:
        result = run_cli(module, *args)
        assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr[-2000:]
        assert mine.is_dir() and list(mine.iterdir()) == [], list(mine.rglob("*"))


def test_training_into_a_trained_run_folder_is_refused_unless_overwrite_moves_it_aside(trained_run, mnist_root,
                                                                                      tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "runs" / "mine"))
    before = snapshot(run)
    again = [f"hydra.run.dir={run}", *tiny_overrides(mnist_root, tmp_path), "trainer.max_epochs=1",
             "trainer.limit_train_batches=2", "test=false", "~callbacks.prior_grid"]
    refused = run_cli("vae_lightning.train", *again)
    assert refused.returncode == 2 and refused.stdout == "", refused.stderr[-2000:]
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: hydra.run.dir={run} already holds a trained run (") and (
        f"resume it with ckpt_path={run / 'checkpoints' / 'last.ckpt'}, train into another folder, or add "
        "overwrite=true") in line, line
    assert snapshot(run) == before  # not a byte or a modification time changed
    assert sorted(p.name for p in run.parent.iterdir()) == ["mine"]

    replaced = run_cli("vae_lightning.train", *again, "overwrite=true")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    (aside,) = run.parent.glob("mine.replaced-*")
    assert replaced.stdout.startswith(f"overwrite=true: moved the earlier run in {run} aside to {aside}\n")
    assert snapshot(aside) == before  # the earlier run, whole, beside the new one
    assert (run / "checkpoints" / "last.ckpt").read_bytes() != before["checkpoints/last.ckpt"][0]
