"""The metric table: every number an evaluation produces, and the training metrics a report shows beside them,
declared once (`Metric`: key, label, unit, whether higher is better, where it appears), in `METRICS`.

Every list of metrics is read off this table: the flat `eval/...` scalars of a metrics.json (`scalars`), the
cards logged to every tracker (`columns(TRACKERS)`), the run's HPARAMS metrics (`columns(HPARAMS)`), the report's
job table, configurations table and default contrasts (`columns(DETAIL)`, `columns(GROUPS)`,
`columns(CONTRASTS)`) and the units equivalence margins are given in (`unit`).

Adding a metric is one function plus one entry: `register(Metric(...))` with `compute=` a function of the model
and the test images (a float, or one value per image [N]: then also a column of the per-image file and its mean
in metrics.json's `metrics` section) or, with `per_sampler=True`, a function of a sampler's classifier features
and class probabilities (a value in each sampler's row of `sample_quality`). The built-in metrics are computed
by the estimators of this package and read from metrics.json's sections by `read`, which also reads the
metrics.json files that earlier evaluations wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Where a metric appears besides metrics.json (every evaluation metric is there):
TRACKERS = "trackers"    # a card under eval/ in every tracker the run trained with (TensorBoard, CSV, MLflow)
HPARAMS = "hparams"      # a metric column of the run's TensorBoard HPARAMS row
DETAIL = "detail"        # a column of the report's table of jobs
GROUPS = "groups"        # a column of the report's configurations table (mean over seeds) and its figure
CONTRASTS = "contrasts"  # compared by the report's contrasts unless --metrics names others
PLACES = (TRACKERS, HPARAMS, DETAIL, GROUPS, CONTRASTS)
# the name under which the model's own prior is scored a second time (`eval/fid/own_prior`), so that models with
# different priors compare on one column
OWN_PRIOR = "own_prior"

Results = dict[str, Any]  # the content of a metrics.json


@dataclass(frozen=True)
class Metric:
    """One number (or one per sampler) and where it appears.

    `key` is its scalar's name (`eval/elbo`); a per-sampler metric's key is the prefix of its scalars
    (`eval/fid` -> `eval/fid/<sampler>` and `eval/fid/own_prior`). `read` gives its scalars from a metrics.json's
    content (empty when that evaluation did not compute it). `compute` (see the module docstring) makes evaluate
    compute it; such a metric needs no `read`: it is read where evaluate puts it. A metric with neither comes from
    the training run (its status.json), not from evaluate. A per-sampler metric shows the model's own prior's
    column in each place, and in the report's configurations table also those of `group_samplers`."""

    key: str
    label: str
    unit: str | None = None  # the unit an equivalence margin on it is given in; None: no margin on it
    higher_is_better: bool | None = None  # None: neither (a count, a split of a bound)
    places: frozenset[str] = frozenset()
    read: Callable[[Results], dict[str, float]] | None = None
    per_sampler: bool = False
    group_samplers: tuple[str, ...] = ()
    compute: Callable[..., Any] | None = None
    digits: int = 2  # decimals in the report's tables

    @property
    def name(self) -> str:
        """The metric's name inside its section of metrics.json (the key's last part)."""
        return self.key.rsplit("/", 1)[-1]

    def values(self, results: Results) -> dict[str, float]:
        """Its scalars in a metrics.json's content (none for a metric of the training run)."""
        if self.read is not None:
            return self.read(results)
        if self.compute is not None:
            return (_sampler(self.name) if self.per_sampler else _computed(self.key))(results)
        return {}

    def columns(self, place: str) -> list[str]:
        """The scalar names this metric shows in `place` (none when it does not appear there)."""
        if place not in self.places:
            return []
        if not self.per_sampler:
            return [self.key]
        return [f"{self.key}/{s}" for s in (OWN_PRIOR, *(self.group_samplers if place == GROUPS else ()))]

    def matches(self, scalar: str) -> bool:
        """Whether `scalar` is one of this metric's scalars."""
        return scalar.startswith(f"{self.key}/") if self.per_sampler else scalar == self.key


def _likelihood(name: str) -> Callable[[Results], dict[str, float]]:
    return lambda r: {f"eval/{name}": r["likelihood"][name]}


def _nll_iwae(r: Results) -> dict[str, float]:
    iwae = r["likelihood"]["nll_iwae"]
    return {"eval/nll_iwae": iwae[max(iwae, key=int)]}


def _nll_iwae_by_k(r: Results) -> dict[str, float]:
    return {f"eval/nll_iwae_k{k}": v for k, v in r["likelihood"]["nll_iwae"].items()}


def _nll_exact(r: Results) -> dict[str, float]:
    exact = r["likelihood"]["nll_exact"]
    return {} if exact is None else {"eval/nll_exact": exact["value"]}


def _kl_per_dim(r: Results) -> dict[str, float]:
    return {f"eval/kl_dim{i}": v for i, v in enumerate(r["likelihood"]["kl_per_dim"] or [])}


def _computed(key: str) -> Callable[[Results], dict[str, float]]:
    name = key.rsplit("/", 1)[-1]
    return lambda r: {key: r["metrics"][name]} if name in r.get("metrics", {}) else {}


def _sampler(name: str) -> Callable[[Results], dict[str, float]]:
    def read(r: Results) -> dict[str, float]:
        out = {}
        for row in r["sample_quality"]["rows"]:
            if name in row:
                out.update({f"eval/{name}/{s}": row[name]
                            for s in ([row["name"], OWN_PRIOR] if row.get("model_prior") else [row["name"]])})
        return out

    return read


def _mechanism(section: str, name: str) -> Callable[[Results], dict[str, float]]:
    def read(r: Results) -> dict[str, float]:
        value = (r.get("mechanisms") or {}).get(section, {}).get(name)
        return {} if value is None else {f"eval/{section}/{name}": value}

    return read


def _iwae_gap(r: Results) -> dict[str, float]:
    return {f"eval/iwae_gap/k{k}": v for k, v in (r.get("mechanisms") or {}).get("iwae_gap", {}).items()}


def _places(*places: str) -> frozenset[str]:
    return frozenset(places)


NATS = "nats"
PROBABILITY = "probability"
# The table. Its order is the order of every list read off it (the report's columns, the contrasts).
METRICS: list[Metric] = [
    # from the training run (status.json): the last validation epoch, the test of the best checkpoint
    Metric("val/elbo", "validation ELBO", NATS, True, _places(HPARAMS, DETAIL, GROUPS)),
    Metric("test/elbo", "test ELBO (best checkpoint)", NATS, True, _places(HPARAMS, DETAIL, GROUPS, CONTRASTS)),
    Metric("diagnostics/active_units", "active units (last epoch)", None, True, _places(DETAIL)),
    # evaluate's likelihood section
    Metric("eval/elbo", "test ELBO", NATS, True, _places(TRACKERS, DETAIL), _likelihood("elbo")),
    Metric("eval/recon", "reconstruction term", None, False, _places(TRACKERS), _likelihood("recon")),
    Metric("eval/kl", "KL term", None, None, _places(TRACKERS), _likelihood("kl")),
    Metric("eval/nll_exact", "exact NLL", NATS, False, _places(TRACKERS, HPARAMS, DETAIL, GROUPS, CONTRASTS),
           _nll_exact),
    Metric("eval/nll_iwae", "IWAE NLL (largest k)", NATS, False,
           _places(TRACKERS, HPARAMS, DETAIL, GROUPS, CONTRASTS), _nll_iwae),
    Metric("eval/nll_iwae_k", "IWAE NLL per k", None, False, _places(), _nll_iwae_by_k),
    Metric("eval/active_units", "active units", "dimensions", True,
           _places(TRACKERS, DETAIL, GROUPS, CONTRASTS), _likelihood("active_units")),
    Metric("diagnostics/mutual_information", "I(x; z) (last epoch)", NATS, True, _places(DETAIL, GROUPS, CONTRASTS)),
    Metric("eval/kl_dim", "KL per latent dimension", None, None, _places(), _kl_per_dim),
    # evaluate's sample quality, per sampler
    Metric("eval/fid", "Fréchet distance", "FID", False, _places(TRACKERS, HPARAMS, GROUPS, CONTRASTS),
           _sampler("fid"), per_sampler=True, group_samplers=("aggregate_posterior",)),
    Metric("eval/clarity", "clarity", PROBABILITY, True, _places(TRACKERS, GROUPS, CONTRASTS), _sampler("clarity"),
           per_sampler=True, digits=3),
    Metric("eval/diversity", "diversity", NATS, True, _places(TRACKERS, GROUPS, CONTRASTS), _sampler("diversity"),
           per_sampler=True, digits=3),
    Metric("eval/probability_entropy", "probability entropy", NATS, None, _places(),
           _sampler("probability_entropy"), per_sampler=True, digits=3),
    Metric("eval/classes_90", "classes covering 90 %", None, True, _places(), _sampler("classes_90"),
           per_sampler=True),
    Metric("eval/precision", "precision", PROBABILITY, True, _places(TRACKERS, GROUPS, CONTRASTS),
           _sampler("precision"), per_sampler=True),
    Metric("eval/recall", "recall", PROBABILITY, True, _places(TRACKERS, GROUPS, CONTRASTS), _sampler("recall"),
           per_sampler=True),
    Metric("eval/density", "density", None, True, _places(), _sampler("density"), per_sampler=True),
    Metric("eval/coverage", "coverage", None, True, _places(), _sampler("coverage"), per_sampler=True),
    # evaluate's mechanisms (evaluation/mechanisms.py)
    Metric("eval/surgery/kl", "average KL", NATS, None, _places(), _mechanism("surgery", "kl")),
    Metric("eval/surgery/mutual_information", "I(x; z)", NATS, True, _places(TRACKERS, GROUPS),
           _mechanism("surgery", "mutual_information")),
    Metric("eval/surgery/marginal_kl", "KL(q(z) || p(z))", NATS, False, _places(TRACKERS, GROUPS, CONTRASTS),
           _mechanism("surgery", "marginal_kl")),
    Metric("eval/prior_holes/mass", "prior mass in holes", PROBABILITY, False, _places(TRACKERS, GROUPS, CONTRASTS),
           _mechanism("prior_holes", "mass")),
    Metric("eval/prior_holes/clarity_in_holes", "clarity of prior draws in holes", None, True, _places(),
           _mechanism("prior_holes", "clarity_in_holes")),
    Metric("eval/prior_holes/clarity_elsewhere", "clarity of prior draws elsewhere", None, True, _places(),
           _mechanism("prior_holes", "clarity_elsewhere")),
    Metric("eval/bound_gaps/amortization_gap", "amortization gap", NATS, False, _places(TRACKERS, GROUPS),
           _mechanism("bound_gaps", "amortization_gap")),
    Metric("eval/bound_gaps/approximation_gap", "approximation gap", NATS, False, _places(TRACKERS, GROUPS),
           _mechanism("bound_gaps", "approximation_gap")),
    Metric("eval/bound_gaps/inference_gap", "inference gap", NATS, False, _places(),
           _mechanism("bound_gaps", "inference_gap")),
    Metric("eval/iwae_gap", "IWAE gap to the exact NLL per k", None, False, _places(), _iwae_gap),
]


def register(metric: Metric) -> Metric:
    """Add a metric to the end of the table (a computed one: `compute` given); its scalars are read from
    metrics.json's `metrics` section (of the test images) or from each sampler's row (per sampler)."""
    if any(m.key == metric.key for m in METRICS):
        raise ValueError(f"{metric.key} is in the metric table already")
    METRICS.append(metric)
    return metric


def unregister(key: str) -> None:
    """Remove the metric `key` from the table."""
    METRICS[:] = [m for m in METRICS if m.key != key]


def columns(place: str) -> list[str]:
    """The scalar names shown in `place` (one of PLACES), in table order."""
    return [c for m in METRICS for c in m.columns(place)]


def computed(per_sampler: bool) -> list[Metric]:
    """The registered metrics that evaluate computes through the table (per sampler, or of the test images)."""
    return [m for m in METRICS if m.compute is not None and m.per_sampler == per_sampler]


def scalars(results: Results) -> dict[str, float]:
    """The flat `eval/...` scalars of a metrics.json in today's format (read by every evaluation metric of the
    table; results.scalars reads older ones too)."""
    return {k: float(v) for m in METRICS for k, v in m.values(results).items()}


def metric_of(scalar: str) -> Metric | None:
    """The table's entry of a scalar name (`eval/fid/beta_1_1` -> the fid entry), None for an unknown one."""
    return next((m for m in METRICS if m.matches(scalar)), None)


def unit(scalar: str) -> str | None:
    """The unit an equivalence margin on `scalar` is given in, None for a metric without one."""
    metric = metric_of(scalar)
    return None if metric is None else metric.unit


def units() -> list[str]:
    """The metrics (a per-sampler metric as its prefix `eval/fid/`) that margins may be given on."""
    return [m.key + "/" if m.per_sampler else m.key for m in METRICS if m.unit is not None]


def digits(scalar: str) -> int:
    """Decimals of a metric in the report's tables."""
    metric = metric_of(scalar)
    return 2 if metric is None else metric.digits


def present(names: Iterable[str], place: str) -> list[str]:
    """The columns of `place` among `names`, in table order."""
    have = set(names)
    return [c for c in columns(place) if c in have]


def compute_test_metrics(module: Any, x: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """The registered metrics of the test images (`compute(module, x)`, not per sampler): metrics.json's `metrics`
    section (a per-image metric's mean) and the per-image file's columns (those that gave one value per image)."""
    summary, per_image = {}, {}
    for metric in computed(per_sampler=False):
        value = metric.compute(module, x)
        if getattr(value, "ndim", 0) == 1 and len(value) == len(x):
            per_image[metric.name] = value.double().cpu()
            value = value.double().mean()
        summary[metric.name] = float(value)
    return summary, per_image
