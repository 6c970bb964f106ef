"""`python -m vae_lightning.report <multirun folder> [<multirun folder> ...]`: sweeps as one report.

Reads every job of the multirun folders (its overrides, its outcome and final metrics, and evaluate's
results when the job has `eval/metrics.json`) and writes, into the first folder or `--out`: report.md
(one row per job, sorted by a metric; failed, cancelled and unfinished jobs marked; a sample-quality table),
report.csv (every metric), report.png, report_curves.png (val/elbo and active units per epoch) and
report_grids.png (each job's last prior-comparison figure). `--evaluate` first evaluates every
completed job that has no evaluation yet (`--jobs 2`: two at a time).

Jobs whose overrides differ only in `seed` are one configuration: report_groups.csv/.png and a table
give each configuration's mean over seeds with its 95 % interval. `--contrast annealing=linear:constant`
(repeatable; `prior=*:normal` compares every prior with normal) adds paired differences over the shared
seeds with a verdict (report_contrasts.csv); `--contrasts conf/report/study.yaml` reads a list of them.
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from vae_lightning import cli

HELP = """\
One report over the jobs of one or more sweeps (logs/train/multiruns/<timestamp>/): a table with every
job's overrides, outcome and metrics, its curves and sample pictures side by side; jobs that differ only
in their seed grouped into one configuration with the mean and a 95 % interval of every metric; and
contrasts (--contrast annealing=linear:constant) answered as paired differences over the seeds both
have, with a verdict (higher, lower, no difference detected) read off the interval. --evaluate first
evaluates every finished job that has no evaluation. Writes report.md, report.csv and figures into the
first folder or --out.
"""
EXAMPLES = (
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 --sort test/elbo",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 --sort eval/nll_iwae --ascending",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 "
    "logs/train/multiruns/2026-01-31_11-00-00_000000 --evaluate iwae.k=100 --jobs 2 --out results/study",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 "
    "--contrast annealing=linear:constant --contrast 'prior=*:normal'",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 --contrasts conf/report/study.yaml",
)


def argument_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser("python -m vae_lightning.report", HELP, EXAMPLES)
    parser.add_argument("sweep_dirs", type=Path, nargs="+",
                        help="multirun folders, e.g. logs/train/multiruns/<timestamp>")
    parser.add_argument("--sort", default="val/elbo", help="metric to sort by (default: val/elbo)")
    parser.add_argument("--ascending", action="store_true", help="lower is better (e.g. eval/nll_iwae, eval/fid)")
    parser.add_argument("--out", type=Path, help="folder for the report files (default: the first multirun folder)")
    parser.add_argument("--evaluate", nargs="*", metavar="OVERRIDE",
                        help="first run evaluate on every completed job without eval/metrics.json, with these "
                             "evaluate overrides (e.g. --evaluate iwae.k=100)")
    parser.add_argument("--jobs", type=int, default=1, help="evaluations run at once with --evaluate (default: 1)")
    parser.add_argument("--contrast", action="append", default=[], metavar="KEY=A:B",
                        help="paired differences A - B over seeds between configurations equal but for KEY "
                             "(A=*: every other value); repeatable")
    parser.add_argument("--contrasts", type=Path, metavar="FILE",
                        help="a YAML file with a list `contrasts:` (as --contrast) and optionally `metrics:`")
    parser.add_argument("--metrics", nargs="+", help="the metrics the contrasts compare (default: test/elbo, "
                        "eval/nll_exact, eval/nll_iwae, eval/active_units, diagnostics/mutual_information and "
                        "the own prior's fid, clarity and diversity)")
    return parser


def contrast_settings(args: Namespace) -> tuple[list[str], list[str] | None]:
    """The contrasts and metrics of the flags and the --contrasts file."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    contrasts, metrics = list(args.contrast), args.metrics
    if args.contrasts is not None:
        try:
            spec = OmegaConf.to_container(OmegaConf.load(args.contrasts))
        except (OSError, OmegaConfBaseException) as err:
            cli.fail(f"--contrasts {args.contrasts} cannot be read ({type(err).__name__}); give a YAML file with "
                     "a list `contrasts:`")
        if not isinstance(spec, dict) or not isinstance(spec.get("contrasts"), list):
            cli.fail(f"--contrasts {args.contrasts} has no list `contrasts:`; write contrasts: [annealing=linear:"
                     "constant, ...]")
        contrasts += [str(c) for c in spec["contrasts"]]
        metrics = metrics or spec.get("metrics")
    return contrasts, metrics


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs={args.jobs} is invalid: must be an integer >= 1")
    contrasts, metrics = contrast_settings(args)
    from vae_lightning.evaluation.seed_groups import CONTRAST_METRICS
    from vae_lightning.evaluation.sweep_report import write_report

    rows = cli.run_plain(lambda: write_report(args.sweep_dirs, args.sort, args.ascending, args.out, args.evaluate,
                                              contrasts, metrics or CONTRAST_METRICS, args.jobs))
    out = args.out or args.sweep_dirs[0]
    print((out / "report.md").read_text())
    failed, cancelled = (sum(r.status == s for r in rows) for s in ("failed", "cancelled"))
    print(f"wrote report.md, report.csv, report.png, report_curves.png, report_grids.png in {out} "
          f"({len(rows)} jobs, {failed} failed{f', {cancelled} cancelled' if cancelled else ''})")


if __name__ == "__main__":
    main()
