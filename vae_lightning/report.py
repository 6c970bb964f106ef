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
seeds with a verdict (report_contrasts.csv); `--contrasts conf/report/study.yaml` reads named families of
them with equivalence margins (reporting/groups.read_contrasts). Each family is adjusted for its
size (`--adjust`: holm, bh or none).
"""

from __future__ import annotations

import time
from argparse import Namespace
from pathlib import Path

from vae_lightning import cli
from vae_lightning.evaluation.metrics import CONTRASTS, columns
from vae_lightning.reporting.groups import Family
from vae_lightning.reporting.statistics import ADJUSTMENTS

HELP = """\
One report over the jobs of one or more sweeps (logs/train/multiruns/<timestamp>/): a table with every
job's overrides, outcome and metrics, its curves and sample pictures side by side; jobs that differ only
in their seed grouped into one configuration with the mean and a 95 % interval of every metric; and
contrasts (--contrast annealing=linear:constant) answered as paired differences over the seeds both
have, with a verdict (equivalent within a margin, higher, lower, inconclusive) read off the interval, raw and
adjusted within its family (Holm; --adjust bh), beside the smallest effect it could detect. --evaluate first
evaluates every finished job that has no evaluation. Writes report.md, report.csv and figures into the
first folder or --out; a report there of other sweep folders is replaced only with --overwrite.
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
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a report of other sweep folders in the output folder (a report of the same "
                             "sweep folders is always brought up to date)")
    parser.add_argument("--evaluate", nargs="*", metavar="OVERRIDE",
                        help="first run evaluate on every completed job without eval/metrics.json, with these "
                             "evaluate overrides (e.g. --evaluate iwae.k=100)")
    parser.add_argument("--jobs", type=int, default=1, help="evaluations run at once with --evaluate (default: 1)")
    parser.add_argument("--contrast", action="append", default=[], metavar="KEY=A:B",
                        help="paired differences A - B over seeds between configurations equal but for KEY "
                             "(A=*: every other value); repeatable")
    parser.add_argument("--contrasts", type=Path, metavar="FILE",
                        help="a YAML file of named `families:` of contrasts with equivalence `margins:` (or a plain "
                             "list `contrasts:`), optionally `metrics:` and `adjustment:`")
    parser.add_argument("--adjust", choices=ADJUSTMENTS, default=None,
                        help="the multiplicity adjustment within each family: holm (Holm 1979, family-wise; the "
                             "default), bh (Benjamini-Hochberg 1995, false discovery rate) or none")
    parser.add_argument("--metrics", nargs="+", help="the metrics the contrasts compare (default: "
                        f"{', '.join(columns(CONTRASTS))})")
    return parser


def contrast_settings(args: Namespace) -> tuple[list[Family], list[str] | None, str]:
    """The families of contrasts, the metrics and the adjustment of the flags and the --contrasts file."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from vae_lightning.core.errors import UserError
    from vae_lightning.reporting.groups import DEFAULT_FAMILY, Contrast, read_contrasts

    try:
        families = [Family(DEFAULT_FAMILY, tuple(Contrast.parse(c) for c in args.contrast))] if args.contrast else []
        metrics, adjustment = args.metrics, args.adjust
        if args.contrasts is not None:
            try:
                spec = OmegaConf.to_container(OmegaConf.load(args.contrasts))
            except (OSError, OmegaConfBaseException) as err:
                raise UserError(f"--contrasts {args.contrasts} cannot be read ({type(err).__name__}); give a YAML "
                                "file with `families:` or a list `contrasts:`") from err
            named, listed, adjusted = read_contrasts(spec, f"--contrasts {args.contrasts}")
            families += named
            metrics, adjustment = metrics or listed, adjustment or adjusted
    except UserError as err:
        cli.fail(str(err))
    merged: dict[str, Family] = {}  # --contrast flags and a file's plain list are one family, adjusted as one
    for family in families:
        seen = merged.get(family.name)
        merged[family.name] = family if seen is None else Family(
            family.name, seen.contrasts + family.contrasts, {**seen.margins, **family.margins})
    return list(merged.values()), metrics, adjustment or "holm"


def main(argv: list[str] | None = None) -> None:
    start = time.time_ns()  # the report files written since are this report's
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs={args.jobs} is invalid: must be an integer >= 1")
    families, metrics, adjustment = contrast_settings(args)
    from vae_lightning.reporting.writer import write_report
    from vae_lightning.runs.earlier import check_report

    cli.run_plain(lambda: check_report(args.out or args.sweep_dirs[0], args.sweep_dirs, args.overwrite))
    rows = cli.run_plain(lambda: write_report(args.sweep_dirs, args.sort, args.ascending, args.out, args.evaluate,
                                              families, metrics, args.jobs, adjustment))
    out = args.out or args.sweep_dirs[0]
    print((out / "report.md").read_text())
    failed, cancelled = (sum(r.status == s for r in rows) for s in ("failed", "cancelled"))
    written = sorted(p.name for p in out.glob("report*") if p.is_file() and p.stat().st_mtime_ns >= start)
    print(f"wrote {', '.join(written)} in {out} "
          f"({len(rows)} jobs, {failed} failed{f', {cancelled} cancelled' if cancelled else ''})")


if __name__ == "__main__":
    main()
