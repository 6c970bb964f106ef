"""The library half of `python -m vae_lightning.report`: a sweep's jobs as one report.

- `jobs`: the job folders of multirun folders read into one row each (overrides, outcome, metrics);
- `statistics`: t intervals, paired differences, verdicts, multiplicity adjustments, detectable effects;
- `groups`: the jobs grouped over seeds into configurations, and named families of contrasts between them;
- `tables`: report.md and the CSV files;
- `figures`: the report's figures;
- `writer`: the whole report (`write_report`).

Each module imports only modules listed before it, so there is no circle. Which metrics the tables show is
read off the metric table (evaluation/metrics.py): a new metric reaches the report through its table entry,
not through code here.
Evaluating the jobs first uses runs/evaluation.evaluate_jobs, the one way to evaluate many checkpoints.
"""
