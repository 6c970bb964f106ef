"""An evaluation's results: `Evaluation` (what evaluate returns; `as_json()` is metrics.json's content) and, as
a reader sees them, the markdown tables (printed, and report.md), the figures and the scalars that go to the
run's trackers (`tracker_scalars`, read off the metric table)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from vae_lightning.core.files import save_figure
from vae_lightning.evaluation import metrics
from vae_lightning.evaluation.quality import N_CLASSES, TEST_ROW, entropy


@dataclass
class Evaluation:
    """What one evaluation of a checkpoint found (evaluate's result): the model it evaluated, its likelihood,
    sample-quality and mechanism sections, the registered metrics (evaluation/metrics.py) and the time each part
    took. The sections keep metrics.json's shape; `as_json()` is metrics.json's content."""

    checkpoint: str
    global_step: int
    prior: str  # the prior's label
    latent_dim: int
    model: str  # the networks' architecture
    pixel_likelihood: str
    data: dict[str, Any]  # dataset, binarize, n_images, units (what the likelihood numbers are)
    active_units_threshold: float
    likelihood: dict[str, Any]  # elbo, recon, kl (with standard errors), nll_iwae per k, nll_exact, active units
    per_image: dict[str, Any]  # the per-image file: its name, rows and columns
    sample_quality: dict[str, Any]  # n_samples, n_test, the classifier's record and one row per sampler
    mechanisms: dict[str, Any] | None = None  # surgery, prior holes, bound gaps, iwae gap (None: not computed)
    metrics: dict[str, float] = field(default_factory=dict)  # registered metrics of the test images
    timings_s: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """metrics.json's content, its keys in the order evaluate has always written them (`mechanisms` and
        `metrics` only when there are any)."""
        out = {name: getattr(self, name) for name in ("checkpoint", "global_step", "prior", "latent_dim", "model",
                                                        "pixel_likelihood", "data", "active_units_threshold",
                                                        "likelihood", "per_image", "sample_quality")}
        if self.mechanisms is not None:
            out["mechanisms"] = self.mechanisms
        if self.metrics:
            out["metrics"] = self.metrics
        return {**out, "timings_s": self.timings_s}


def quality_of(row: dict[str, Any]) -> dict[str, Any]:
    """A sample-quality row of metrics.json in today's terms: an evaluation written before `diversity` was the
    entropy of the predicted classes' histogram has that histogram (`class_frequencies`), and its `diversity` is
    today's `probability_entropy`."""
    if "probability_entropy" in row:
        return row
    frequencies = torch.tensor(row["class_frequencies"], dtype=torch.float64)
    return {**row, "probability_entropy": row["diversity"], "diversity": entropy(frequencies)}


def scalars(results: dict[str, Any]) -> dict[str, float]:
    """The flat `eval/...` scalars of a metrics.json (today's, or an earlier evaluation's: `quality_of`), read off
    the metric table (evaluation/metrics.py); what the report reads of each job's evaluation."""
    rows = [quality_of(row) for row in results["sample_quality"]["rows"]]
    return metrics.scalars({**results, "sample_quality": {**results["sample_quality"], "rows": rows}})


def tracker_scalars(results: dict[str, Any]) -> dict[str, float]:
    """The scalars an evaluation logs to the run's trackers (the metric table's TRACKERS: a few cards under eval/,
    not one per sampler and score; those are in metrics.json, report.md and the sweep report)."""
    values = scalars(results)
    return {k: values[k] for k in metrics.columns(metrics.TRACKERS) if k in values}


def kl_per_dim(likelihood: dict[str, Any]) -> list[float | None]:
    """The KL of each latent dimension, None for each when the prior's KL does not split by dimension."""
    return likelihood["kl_per_dim"] or [None] * len(likelihood["posterior_mean_variance"])


def _se(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f" ± {value:.2f}"


def results_markdown(results: dict[str, Any]) -> str:
    """The markdown tables of metrics.json (printed, and the body of report.md)."""
    lik, quality = results["likelihood"], results["sample_quality"]
    exact = lik["nll_exact"]
    if exact is None:
        exact_text = f"— (latent_dim {results['latent_dim']} > exact.max_latent_dim)"
    else:
        status = "" if exact["converged"] else ", NOT converged"
        mass = exact["prior_mass_on_grid"]
        mass_text = "" if abs(mass - 1) < 1e-9 else f"; prior mass on the grid {mass:.6f}"
        exact_text = (f"{exact['value']:.2f}{_se(exact.get('se'))} ({exact['points_per_dim']}^{results['latent_dim']} "
                      "grid; from the "
                      f"half grid: mean change {exact['change_from_half_grid']:.3f}, largest per image "
                      f"{exact['max_image_change']:.2f}{mass_text}{status})")
    lines = [
        f"# Evaluation of {results['checkpoint']}",
        "",
        f"Prior {results['prior']}, latent_dim {results['latent_dim']}, networks {results['model']}, "
        f"p(x|z) {results['pixel_likelihood']}, global step {results['global_step']}; "
        f"{results['data']['dataset']} test set, first {results['data']['n_images']} images, "
        f"binarize={results['data']['binarize']}. {results['data']['units']}",
        "",
        "| metric | nats per image (± standard error of the mean over the test images) |",
        "|---|---|",
        f"| elbo | {lik['elbo']:.2f}{_se(lik.get('elbo_se'))} |",
        f"| recon | {lik['recon']:.2f} |",
        f"| kl | {lik['kl']:.2f} |",
        *(f"| nll_iwae (k={k}) | {v:.2f}{_se(lik.get('nll_iwae_se', {}).get(k))} |"
          for k, v in lik["nll_iwae"].items()),
        f"| nll_exact | {exact_text} |",
        f"| active units (Var > {results['active_units_threshold']}) | {lik['active_units']} of "
        f"{results['latent_dim']} |",
        "",
        "| latent dim | KL (nats) | Var of posterior mean |",
        "|---|---|---|",
        *(f"| {i} | {'—' if kl is None else f'{kl:.3f}'} | {var:.4f} |"
          for i, (kl, var) in enumerate(zip(kl_per_dim(lik), lik["posterior_mean_variance"], strict=True))),
        "",
        f"Sample quality: {quality['n_samples']} decoder means per sampler against the {quality['n_test']} "
        f"grayscale test images; classifier test accuracy {quality['classifier']['test_accuracy']:.4f}. "
        "fid: lower is better; clarity (higher: sharper): mean max class probability; diversity (higher: more "
        f"kinds of digit, at most ln 10 = {math.log(10):.3f}): entropy of the histogram of predicted classes, "
        "which blur cannot raise; probability_entropy: entropy of the mean class probabilities, which blur raises; "
        "classes_90 (higher: more kinds): classes covering 90% of samples.",
        "",
        "| sampler | fid | clarity | diversity | probability_entropy | classes_90 |",
        "|---|---|---|---|---|---|",
        *(f"| {r['label']}{' (model prior)' if r['model_prior'] else ''} | {r['fid']:.2f} | {r['clarity']:.3f} | "
          f"{r['diversity']:.3f} | {r['probability_entropy']:.3f} | {r['classes_90']} |"
          for r in quality["rows"]),
        *mechanisms_markdown(results.get("mechanisms"), quality["rows"]),
        *registered_markdown(results),
        "",
        "Time (s): " + ", ".join(f"{k} {v:.3g}" for k, v in results["timings_s"].items()),
    ]
    return "\n".join(lines) + "\n"


def registered_markdown(results: dict[str, Any]) -> list[str]:
    """A table of the metrics registered in the metric table beside the built-in ones (none: no lines)."""
    lines = [f"| {m.label} | {results['metrics'][m.name]:.{m.digits}f} |"
             for m in metrics.computed(per_sampler=False) if m.name in results.get("metrics", {})]
    for m in metrics.computed(per_sampler=True):
        lines += [f"| {m.label}, {r['label']} | {r[m.name]:.{m.digits}f} |" for r in results["sample_quality"]["rows"]
                  if m.name in r]
    return ["", "| registered metric | value |", "|---|---|", *lines] if lines else []


def _value(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def mechanisms_markdown(mechanisms: dict[str, Any] | None, rows: list[dict[str, Any]]) -> list[str]:
    """The tables of metrics.json's `mechanisms` and of each sampler's precision and recall
    (evaluation/mechanisms.py)."""
    if not mechanisms:
        return []
    surgery, holes = mechanisms["surgery"], mechanisms["prior_holes"]
    lines = ["", "Why a prior wins (evaluation/mechanisms.py). ELBO surgery (Hoffman & Johnson 2016): the average KL "
             "= I(x; z) + KL(q(z) || p(z)), q(z) the aggregate posterior of the test images; prior holes: the "
             f"prior's mass where q(z) < {holes['ratio']:g} p(z), and the clarity of digits decoded from prior draws "
             "there and elsewhere; bound gaps (Cremer et al. 2018): log p(x) - ELBO = approximation gap (the best "
             "posterior of the family) + amortization gap (the encoder's against that best).", "",
             "| measure | value |", "|---|---|",
             f"| average KL (nats) | {surgery['kl']:.3f} |",
             f"| I(x; z) (nats, at most log N = {surgery['log_n']:.2f}) | {surgery['mutual_information']:.3f} |",
             f"| KL(q(z) ‖ p(z)) (nats) | {surgery['marginal_kl']:.3f} |",
             f"| prior mass in holes | {holes['mass']:.3f} |",
             f"| clarity of prior draws in holes / elsewhere | {_value(holes['clarity_in_holes'], 3)} / "
             f"{_value(holes['clarity_elsewhere'], 3)} |"]
    lines += [f"| IWAE gap to the exact NLL, k={k} (nats) | {gap:.3f} |"
              for k, gap in mechanisms.get("iwae_gap", {}).items()]
    gaps = mechanisms.get("bound_gaps")
    if gaps:
        lines += [f"| amortization gap (nats, first {gaps['n_images']} images) | {gaps['amortization_gap']:.3f} |",
                  f"| approximation gap (nats) | {_value(gaps.get('approximation_gap'), 3)} |"]
    scored = [r for r in rows if "precision" in r]
    if scored:
        lines += ["", "Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020) "
                  "of each sampler's classifier features against the test images' (higher is better: precision and "
                  "density, the samples look like test digits; recall and coverage, the test digits are covered).",
                  "", "| sampler | precision | recall | density | coverage |", "|---|---|---|---|---|",
                  *(f"| {r['label']}{' (model prior)' if r['model_prior'] else ''} | {r['precision']:.3f} | "
                    f"{r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} |" for r in scored)]
    return lines


def save_figures(results: dict[str, Any], out: Path) -> list[str]:
    """sample_quality.png (fid, clarity, diversity per sampler), class_frequencies.png (predicted
    digit shares per sampler), latent_dimensions.png (KL and posterior-mean variance per dimension)."""
    rows = results["sample_quality"]["rows"]
    labels = [r["label"] + (" *" if r["model_prior"] else "") for r in rows]
    fig = Figure(figsize=(13, 0.45 * len(rows) + 1.5), layout="tight")
    axes = fig.subplots(1, 3, sharey=True)
    for ax, key in zip(axes, ("fid", "clarity", "diversity"), strict=True):
        ax.barh(labels, [r[key] for r in rows], color=["grey" if r["name"] == TEST_ROW else "C0" for r in rows])
        ax.set_title(key)
    axes[2].axvline(math.log(N_CLASSES), color="k", ls=":", lw=1)
    axes[0].invert_yaxis()
    fig.suptitle("sample quality per sampler (* model prior; grey: test set)")
    save_figure(fig, out / "sample_quality.png", dpi=100)

    fig = Figure(figsize=(7, 0.45 * len(rows) + 1.5), layout="tight")
    ax = fig.subplots()
    image = ax.imshow([r["class_frequencies"] for r in rows], cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(N_CLASSES))
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("predicted digit")
    fig.colorbar(image, ax=ax, label="share of samples")
    save_figure(fig, out / "class_frequencies.png", dpi=100)

    lik = results["likelihood"]
    dims = range(len(lik["posterior_mean_variance"]))
    fig = Figure(figsize=(10, 3.5), layout="tight")
    axes = fig.subplots(1, 2)
    for ax in axes:
        ax.set_xticks(dims)
    axes[0].bar(dims, [math.nan if kl is None else kl for kl in kl_per_dim(lik)])
    axes[0].set(title="KL per latent dimension (nats)" if lik["kl_per_dim"] else
                "KL per dimension: none (Monte Carlo KL of the whole vector)", xlabel="dimension")
    axes[1].bar(dims, lik["posterior_mean_variance"])
    axes[1].axhline(results["active_units_threshold"], color="r", ls="--", lw=1, label="active threshold")
    axes[1].set(title="Var over test images of E[z | x]", xlabel="dimension", yscale="log")
    axes[1].legend()
    save_figure(fig, out / "latent_dimensions.png", dpi=100)
    return ["sample_quality.png", "class_frequencies.png", "latent_dimensions.png"]
