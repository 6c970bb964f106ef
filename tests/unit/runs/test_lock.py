"""One writer per run folder (runs/lock.py): the lock names its holder while held and is free once released; only
rank 0 of a distributed run takes it."""

from __future__ import annotations

import os
import socket

import pytest

from vae_lightning.core.errors import UserError
from vae_lightning.runs.lock import check_free, other_rank, run_lock


def test_a_held_lock_refuses_a_second_writer_naming_the_holder_and_is_free_after(tmp_path):
    check_free(tmp_path)  # no lock file yet
    with run_lock(tmp_path, "python -m vae_lightning.train seed=1"):
        holder = (rf"^{tmp_path} is being written by another process \(pid {os.getpid()} on {socket.gethostname()}, "
                  r"since .*: python -m vae_lightning.train seed=1\)")
        with pytest.raises(UserError, match=holder):
            check_free(tmp_path)
        with pytest.raises(UserError, match="is being written by another process"):
            with run_lock(tmp_path, "a second writer"):
                pass
    check_free(tmp_path)
    with run_lock(tmp_path, "again"):  # released with its holder's file
        pass


@pytest.mark.parametrize("variables, other", [
    ({}, False), ({"LOCAL_RANK": "0"}, False), ({"LOCAL_RANK": "1"}, True), ({"RANK": "0", "LOCAL_RANK": "1"}, False),
    ({"SLURM_PROCID": "3"}, True),
])
def test_only_rank_zero_of_a_distributed_run_takes_the_lock(monkeypatch, variables, other):
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert other_rank() is other
