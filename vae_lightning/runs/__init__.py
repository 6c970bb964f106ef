"""Runs: what makes a training run something to resume, sweep, track and trust (the checkpoint contract they
rely on is checkpoints/, below them; the explorer and the benchmark sit above them).

- `folders`: run folders (a new one per run, the same one on resume, `<run>/eval` for evaluate) and
  resuming with the run's own config plus the command's overrides; the loggers a run folder trained with
  (which evaluate continues); the folders a failed command made (and may
  remove), and a trained run never replaced unasked (`overwrite=true` moves it aside);
- `earlier`: an earlier evaluation, picture or report never replaced unasked (the same result again replaces it);
- `lock`: one writer per run folder (an advisory lock that dies with its process);
- `members`: K seeds of one configuration trained in one process as one stacked model (model/members.py), with a
  run folder per member that every command reads as a single run's (`train 'seeds=[...]'`);
- `sweep`: a multirun job's outcome in `status.json`, a failed job that never ends the sweep, a requeued
  job that continues its own checkpoint (what the scheduler did with it: launchers/);
- `threads`: torch threads per job (as the launcher says: launchers/), DDP inside a sweep, the CPU's cached
  CUDA check;
- `evaluation`: evaluate's orchestration (the checkpoint, the folder policies, the trackers) around the
  estimators of evaluation/;
- `training`: the train function itself, which builds the callbacks the config chose and puts them together with
  these policies (the top of the runs with `members`, which trains K seeds with it; `train` and `bench` call them).
"""
