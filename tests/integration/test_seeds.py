"""Seeds as a sweep axis, through the real commands on the synthetic data: per-image likelihoods that pair
jobs trained at the same seed, and a report that groups seeds into configurations with intervals and
answers contrasts with paired differences."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers.commands import QUICK, TINY_CLASSIFIER, run_cli, tiny_overrides
from helpers.tables import check_tables

FAST = ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "~callbacks.prior_grid"]


def multirun(mnist_root: Path, log_dir: Path, *overrides: str) -> Path:
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, log_dir), *FAST, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (log_dir / "train" / "multiruns").iterdir()
    return sweep_dir


def evaluate_options(mnist_root: Path, cache: Path) -> list[str]:
    return [f"data.root={mnist_root}", "data.download=false", "progress=false", *TINY_CLASSIFIER, *QUICK,
            f"classifier.cache_dir={cache}", "sampler_set=study", "log_to_trackers=false"]


@pytest.fixture(scope="module")
def sweeps(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2 configurations x 3 seeds, and a third configuration at one seed, each job evaluated by report."""
    logs = tmp_path_factory.mktemp("seeds")
    two = multirun(mnist_root, logs / "two", "prior=normal,gaussian", "seed=0,1,2")
    one = multirun(mnist_root, logs / "one", "prior=beta_4_3", "seed=0")
    out = logs / "report"
    result = run_cli("vae_lightning.report", str(two), str(one), "--out", str(out), "--contrast", "prior=*:normal",
                     "--evaluate", *evaluate_options(mnist_root, logs / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    return {"two": two, "one": one, "out": out, "logs": logs}


def per_image(job: Path) -> list[dict[str, str]]:
    with open(job / "eval" / "per_image.csv") as f:
        return list(csv.DictReader(f))


def job_with(sweep_dir: Path, *overrides: str) -> Path:
    for job in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()):
        text = (job / ".hydra" / "overrides.yaml").read_text()
        if all(f"- {o}\n" in text for o in overrides):
            return job
    raise AssertionError(f"no job with {overrides}")


def test_the_per_image_file_has_one_row_per_test_image_and_its_means_are_metrics_json(sweeps):
    job = job_with(sweeps["two"], "prior=normal", "seed=0")
    rows = per_image(job)
    metrics = json.loads((job / "eval" / "metrics.json").read_text())
    assert len(rows) == metrics["data"]["n_images"] == metrics["per_image"]["rows"] == 128
    assert [int(r["index"]) for r in rows] == list(range(128)) and {r["label"] for r in rows} <= set("0123456789")
    lik = metrics["likelihood"]
    column = {name: [float(r[name]) for r in rows] for name in ("neg_elbo", "nll_iwae_k20", "nll_exact")}
    assert -sum(column["neg_elbo"]) / 128 == pytest.approx(lik["elbo"], rel=1e-9)
    assert sum(column["nll_iwae_k20"]) / 128 == pytest.approx(lik["nll_iwae"]["20"], rel=1e-9)
    assert sum(column["nll_exact"]) / 128 == pytest.approx(lik["nll_exact"]["value"], rel=1e-9)
    sd = math.sqrt(sum((v - lik["nll_exact"]["value"]) ** 2 for v in column["nll_exact"]) / 127)
    assert lik["nll_exact"]["se"] == pytest.approx(sd / math.sqrt(128), rel=1e-6)


def test_the_same_seed_and_config_give_identical_per_image_files_and_other_seeds_other_ones(sweeps, mnist_root,
                                                                                            tmp_path):
    again = multirun(mnist_root, tmp_path / "again", "prior=normal", "seed=0")
    result = run_cli("vae_lightning.report", str(again), "--evaluate", *evaluate_options(mnist_root,
                                                                                        sweeps["logs"] / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    first = (job_with(sweeps["two"], "prior=normal", "seed=0") / "eval" / "per_image.csv").read_bytes()
    assert (job_with(again, "prior=normal") / "eval" / "per_image.csv").read_bytes() == first
    assert (job_with(sweeps["two"], "prior=normal", "seed=1") / "eval" / "per_image.csv").read_bytes() != first


def test_the_report_groups_seeds_with_intervals_and_shows_a_single_seed_as_n_1(sweeps):
    text = (sweeps["out"] / "report.md").read_text()
    section = text.split("## Configurations over seeds")[1].split("## Contrasts")[0]
    lines = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| prior=")}
    assert set(lines) == {"prior=normal", "prior=gaussian", "prior=beta_4_3"}
    assert "| 3 (0,1,2) |" in lines["prior=normal"] and "| 3 (0,1,2) |" in lines["prior=gaussian"]
    assert "| 1 (0) |" in lines["prior=beta_4_3"] and "(n = 1, no interval)" in lines["prior=beta_4_3"]
    assert "[" in lines["prior=normal"].split(" | ")[3]  # test/elbo's interval
    with open(sweeps["out"] / "report_groups.csv") as f:
        groups = {row["configuration"]: row for row in csv.DictReader(f)}
    normal = next(row for key, row in groups.items() if "prior=normal" in key.split())
    assert float(normal["eval/nll_exact:low"]) < float(normal["eval/nll_exact"]) < float(normal["eval/nll_exact:high"])
    assert (sweeps["out"] / "report_groups.png").stat().st_size > 0


def test_the_contrast_table_has_the_paired_differences(sweeps):
    with open(sweeps["out"] / "report_contrasts.csv") as f:
        rows = list(csv.DictReader(f))
    exact = {row["treatment"]: row for row in rows if row["metric"] == "eval/nll_exact"}
    gaussian = next(row for key, row in exact.items() if "prior=gaussian" in key)
    assert gaussian["paired_seeds"] == "0,1,2" and gaussian["verdict"] in ("higher", "lower", "inconclusive")
    assert gaussian["family"] == "contrasts" and gaussian["adjustment"] == "holm"
    values = {}
    for prior in ("gaussian", "normal"):
        for seed in (0, 1, 2):
            metrics = json.loads((job_with(sweeps["two"], f"prior={prior}", f"seed={seed}") / "eval" /
                                  "metrics.json").read_text())
            values[prior, seed] = metrics["likelihood"]["nll_exact"]["value"]
    expected = sum(values["gaussian", s] - values["normal", s] for s in (0, 1, 2)) / 3
    assert float(gaussian["difference"]) == pytest.approx(expected, rel=1e-9)
    beta = next(row for key, row in exact.items() if "prior=beta_4_3" in key)
    assert beta["paired_seeds"] == "0" and beta["verdict"] == "n < 2" and beta["low"] == ""
    assert "| prior=gaussian - normal" in (sweeps["out"] / "report.md").read_text()


def test_a_contrast_naming_what_no_job_has_is_one_line(sweeps):
    for contrast, line in (("optimizer=adam:sgd", "error: --contrast optimizer=adam:sgd: no job has the override "
                                                  "optimizer; the jobs' override keys: "),
                           ("prior=mog:normal", "error: --contrast prior=mog:normal: no job has prior=mog; its values: "
                                                "beta_4_3, gaussian, normal")):
        result = run_cli("vae_lightning.report", str(sweeps["two"]), str(sweeps["one"]), "--out",
                         str(sweeps["logs"] / "bad"), "--contrast", contrast)
        assert result.returncode == 2 and result.stderr.startswith(line), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (sweeps["logs"] / "bad").exists()


def test_a_job_whose_per_image_file_does_not_match_its_metrics_is_incomplete_and_left_out(sweeps, tmp_path):
    copy = Path(shutil.copytree(sweeps["two"], tmp_path / "copy"))
    for seed in (1, 2):
        job = job_with(copy, "prior=gaussian", f"seed={seed}")
        lines = (job / "eval" / "per_image.csv").read_text().splitlines()
        (job / "eval" / "per_image.csv").write_text("\n".join(lines[:50]) + "\n")  # as a killed rewrite leaves it
    result = run_cli("vae_lightning.report", str(copy), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| incomplete |" in text and "incomplete evaluation: per_image.csv has 49 rows" in text
    section = text.split("## Configurations over seeds")[1]
    gaussian = next(line for line in section.splitlines() if line.startswith("| prior=gaussian"))
    assert "| 3 (0,1,2) |" in gaussian and "(n = 1, no interval)" in gaussian  # only the complete job counts


def test_runs_of_every_prior_at_one_seed_start_from_the_same_network_weights(mnist_root, tmp_path):
    """Pairing is real: with the learning rate 0, a run's last.ckpt holds its initial networks, and the N(0, 1),
    MoG, VampPrior and flow runs at one seed hold the same ones (their priors draw from their own streams)."""
    sweep_dir = multirun(mnist_root, tmp_path, "prior=normal,mog,vamp,flow", "seed=3", "model.optimizer.lr=0",
                         "trainer.max_epochs=1", "trainer.limit_train_batches=1", "test=false")
    states = [torch.load(job / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
              for job in sorted(sweep_dir.glob("[0-9]"))]
    assert len(states) == 4
    networks = [k for k in states[0] if k.startswith(("encoder.", "decoder."))]
    assert len(networks) >= 8
    for state in states[1:]:
        assert [k for k in networks if not torch.equal(state[k], states[0][k])] == []


FAMILIES = """
adjustment: holm
families:
  gaussian:
    contrasts: [prior=gaussian:normal]
    margins: {test/elbo: 1000, eval/nll_exact: 1000}
  beta:
    contrasts: [prior=beta_4_3:normal]
metrics: [test/elbo, eval/nll_exact, eval/fid/own_prior]
"""


def test_families_are_adjusted_together_and_a_wide_margin_gives_an_equivalence(sweeps, tmp_path):
    spec = tmp_path / "families.yaml"
    spec.write_text(FAMILIES)
    out = tmp_path / "out"
    result = run_cli("vae_lightning.report", str(sweeps["two"]), str(sweeps["one"]), "--out", str(out), "--contrasts",
                     str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "report_contrasts.csv") as f:
        rows = {(row["family"], row["metric"]): row for row in csv.DictReader(f)}
    gaussian = [rows["gaussian", m] for m in ("test/elbo", "eval/nll_exact", "eval/fid/own_prior")]
    for row in gaussian:  # one family of 3 comparisons; Holm never lowers a p-value
        assert row["family_size"] == "3" and row["paired_seeds"] == "0,1,2"
        assert float(row["adjusted_p"]) >= float(row["p"]) and float(row["mde"]) > 0
    elbo, exact, fid = gaussian
    assert elbo["verdict"] == elbo["adjusted_verdict"] == "equivalent" and float(elbo["margin"]) == 1000
    assert exact["verdict"] == "equivalent" and int(exact["seeds_needed"]) >= 2
    assert fid["margin"] == "" and fid["verdict"] in ("higher", "lower", "inconclusive") and fid["seeds_needed"] == ""
    beta = rows["beta", "test/elbo"]  # one paired seed: no p-value, a family of none
    assert beta["verdict"] == beta["adjusted_verdict"] == "n < 2" and beta["family_size"] == "0"
    text = (out / "report.md").read_text()
    assert check_tables(text) == 4  # jobs, sample quality, configurations, contrasts
    assert "**equivalent** when the whole interval lies inside" in text and "**inconclusive**" in text
    (line,) = [x for x in text.splitlines() if x.startswith("| gaussian (3) |") and "| test/elbo |" in x]
    assert "| equivalent | " in line and "(holm)" in line and "| ±1000 |" in line


def test_contrast_flags_and_a_files_plain_list_are_one_family(sweeps, tmp_path):
    spec = tmp_path / "list.yaml"
    spec.write_text("contrasts: [prior=beta_4_3:normal]\nmetrics: [test/elbo, eval/nll_exact]\n")
    out = tmp_path / "out"
    result = run_cli("vae_lightning.report", str(sweeps["two"]), str(sweeps["one"]), "--out", str(out), "--contrast",
                     "prior=gaussian:normal", "--contrasts", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "report_contrasts.csv") as f:
        rows = list(csv.DictReader(f))
    # 2 metrics of gaussian - normal (3 paired seeds) and 2 of beta_4_3 - normal (1 seed: no p-value)
    assert {r["family"] for r in rows} == {"contrasts"} and len(rows) == 4
    assert {r["family_size"] for r in rows} == {"2"}


@pytest.mark.parametrize("text, message", [
    ("families: {a: {contrasts: []}}", "families.a names no contrast"),
    ("families: {a: {contrasts: [prior=gaussian:normal], margins: {test/elbo: -1}}}",
     "families.a.margins.test/elbo=-1 is invalid: must be a number > 0 (in nats)"),
    ("families: {a: {contrasts: [prior=gaussian:normal], margins: {test/elbo: wide}}}",
     "families.a.margins.test/elbo='wide' is invalid"),
    ("adjustment: bonferroni\ncontrasts: [prior=gaussian:normal]",
     "adjustment='bonferroni' is invalid: must be one of holm, bh, none"),
    ("families: {a: {contrasts: [prior=gaussian:normal], margins: {eval/speed: 1}}}",
     "families.a.margins.eval/speed is a margin on a metric without a unit"),
    ("contrast: [prior=gaussian:normal]", "has neither `families:` nor a list `contrasts:`"),
])
def test_a_bad_contrasts_file_is_one_line_and_writes_nothing(sweeps, tmp_path, text, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    result = run_cli("vae_lightning.report", str(sweeps["two"]), "--out", str(tmp_path / "out"), "--contrasts",
                     str(spec))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --contrasts {spec}") and message in line, line
    assert not (tmp_path / "out").exists()
