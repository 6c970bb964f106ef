"""The benchmark, the library half of `python -m vae_lightning.bench`: it sits above the runs (it times the
training that `train` runs) and below the commands. `timing` holds the three variants timed per epoch in one
process (this project's training, a bare PyTorch loop, the conventional torchvision pipeline) on the same data,
network, batch size, optimizer and seed; K-member runs against single runs; the evaluation throughput and one
study job's evaluation cost; and the peak memory of each variant in a fresh process.

Adding a variant: a method of `timing.Bench` that runs it, and its name in `NAMES`.
"""

from vae_lightning.benchmark.timing import (
    NAMES,
    STUDY_EPOCHS,
    Bench,
    bare_loss,
    baseline_epoch_seconds,
    member_epoch_seconds,
    peak_memory_mb,
    peak_memory_since_reset,
    reset_peak_memory,
    study_evaluation_seconds,
    trainer_device,
)

__all__ = ["NAMES", "STUDY_EPOCHS", "Bench", "bare_loss", "baseline_epoch_seconds", "member_epoch_seconds",
           "peak_memory_mb", "peak_memory_since_reset", "reset_peak_memory",
           "study_evaluation_seconds", "trainer_device"]
