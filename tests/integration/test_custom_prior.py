"""Proof of the latent-distribution contract: a prior defined in this file only (a Student-t prior with a
Normal posterior: no analytic KL, no quantile function), chosen by one YAML in a temporary config folder on
Hydra's search path, is trained, pictured, evaluated and sampled without a change to the package."""

from __future__ import annotations

import json
import math

import torch
from helpers.commands import QUICK, config_on_searchpath, evaluate_overrides, only_run, run_cli, tiny_overrides
from torch import Tensor
from torch.distributions import Normal, StudentT

from vae_lightning.core.rng import seeded
from vae_lightning.latent import LatentDistribution


class StudentTPrior(LatentDistribution):
    """p(z) = prod_i t_df(z_i); q(z|x) diagonal Normal. Only the contract's required methods."""

    def __init__(self, latent_dim: int, df: float = 3.0) -> None:
        super().__init__(latent_dim)
        self.df = float(df)
        self.register_buffer("_df", torch.full((latent_dim,), self.df), persistent=False)

    @property
    def name(self) -> str:
        return f"student_t_{self.df:g}"

    @property
    def label(self) -> str:
        return f"t({self.df:g})"

    def log_prob(self, z: Tensor) -> Tensor:
        return StudentT(self._df).log_prob(z).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with seeded(seed, self._df.device):  # torch's StudentT sampler takes no generator
            return StudentT(self._df).sample((n,))

    def posterior(self, params: Tensor) -> Normal:
        mean, log_var = params.chunk(2, dim=-1)
        return Normal(mean, torch.exp(0.5 * log_var))


def test_a_prior_defined_in_a_test_runs_through_every_command(mnist_root, tmp_path):
    search, env = config_on_searchpath(tmp_path, "prior", "student_t", "_target_: test_custom_prior.StudentTPrior\n"
                                       "df: 3.0\n", __file__)  # no latent_dim: the code passes the model's
    logs = tmp_path / "logs"
    train = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, logs), search, "prior=student_t",
                    "trainer.max_epochs=2", "trainer.limit_train_batches=4", "test=false",
                    "callbacks.prior_grid.latent_every_n_epochs=1", "callbacks.prior_grid.n_samples=16", env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    run = only_run(logs)
    pictures = {p.name for p in (run / "samples" / "epoch_001").glob("*.png")}
    assert {"samples_student_t_3.png", "samples_comparison.png", "space_manifold.png", "space_scatter.png",
            "space_reconstructions.png"} <= pictures

    cache = tmp_path / "cache"
    evaluate = run_cli("vae_lightning.evaluate", *evaluate_overrides(run, mnist_root, cache), *QUICK,
                       "exact.points_per_dim=128", "exact.max_points_per_dim=256", "log_to_trackers=false",
                       env={**env, "XDG_CACHE_HOME": str(cache)})
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    results = json.loads((run / "eval" / "metrics.json").read_text())
    likelihood = results["likelihood"]
    assert results["prior"] == "t(3)"
    assert math.isfinite(likelihood["nll_exact"]["value"]) and likelihood["nll_exact"]["prior_mass_on_grid"] > 0.999
    assert likelihood["nll_iwae"]["20"] >= likelihood["nll_exact"]["value"] - 0.1
    rows = {r["name"]: r for r in results["sample_quality"]["rows"]}
    assert rows["student_t_3"]["model_prior"] and math.isfinite(rows["student_t_3"]["fid"])
    assert "aggregate_posterior" in rows and "gmm_10" in rows

    # the same YAML as a sampler, at other settings: one file is the prior and the sampler
    sample = run_cli("vae_lightning.sample", f"ckpt_path={run}", search, "prior=student_t", "prior.df=5", "n=9",
                     "nrow=3", f"output={tmp_path / 't.png'}", env=env)
    assert sample.returncode == 0 and (tmp_path / "t.png").is_file(), sample.stderr[-3000:]
