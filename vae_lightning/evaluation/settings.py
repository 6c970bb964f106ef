"""The estimators' settings, typed: small frozen dataclasses built once from evaluate's config
(`EvaluationSettings.from_config`), so that an estimator states the few numbers it uses instead of reading a
whole config. Their names are the config's (`iwae.k` is `IwaeSettings.ks`, a sorted tuple)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_lightning.core.checks import Check, is_integer

# iwae.k: one k or a list of them
IWAE_K = Check(lambda v: (is_integer(v) and v >= 1) or (isinstance(v, list) and len(v) > 0
                                                        and all(is_integer(k) and k >= 1 for k in v)),
               "an integer >= 1 or a list of them")


@dataclass(frozen=True)
class IwaeSettings:
    ks: tuple[int, ...]  # the importance samples per image of each bound (one nested draw), sorted
    images_per_batch: int
    chunk_size: int  # samples decoded at once


@dataclass(frozen=True)
class ExactSettings:
    max_latent_dim: int  # nll_exact only up to this latent size
    points_per_dim: int  # the first grid
    max_points_per_dim: int
    tolerance: float  # nats: the grid is doubled until nll_exact changes by less
    chunk_size: int  # grid points decoded at once
    tail: float  # the grid spans the prior's quantiles [tail, 1 - tail]


@dataclass(frozen=True)
class LikelihoodSettings:
    batch_size: int
    seed: int
    active_units_threshold: float
    iwae: IwaeSettings
    exact: ExactSettings


@dataclass(frozen=True)
class HolesSettings:
    ratio: float  # a hole: q(z) < ratio x p(z)
    n_draws: int


@dataclass(frozen=True)
class GapsSettings:
    n_images: int  # 0: no bound gaps
    steps: int
    n_draws: int
    lr: float


@dataclass(frozen=True)
class PrecisionRecallSettings:
    n_images: int  # real and generated features compared
    k: int


@dataclass(frozen=True)
class MechanismSettings:
    holes: HolesSettings
    gaps: GapsSettings


@dataclass(frozen=True)
class QualitySettings:
    n_samples: int  # generated images per sampler
    batch_size: int
    seed: int
    precision_recall: PrecisionRecallSettings | None  # None: no precision, recall, density, coverage


@dataclass(frozen=True)
class EvaluationSettings:
    likelihood: LikelihoodSettings
    quality: QualitySettings
    mechanisms: MechanismSettings | None  # None: mechanisms.enabled=false

    @classmethod
    def from_config(cls, cfg: DictConfig) -> EvaluationSettings:
        """The settings of an evaluate config (conf/evaluate.yaml); `iwae.k` is checked here."""
        k = OmegaConf.to_container(cfg.iwae.k) if OmegaConf.is_list(cfg.iwae.k) else cfg.iwae.k
        IWAE_K.check("iwae.k", k)
        iwae = IwaeSettings(tuple(sorted(set(k if isinstance(k, list) else [k]))), cfg.iwae.images_per_batch,
                            cfg.iwae.chunk_size)
        exact = ExactSettings(**_fields(cfg.exact, ExactSettings))
        likelihood = LikelihoodSettings(cfg.batch_size, cfg.seed, cfg.active_units_threshold, iwae, exact)
        mechanisms = cfg.get("mechanisms")
        enabled = mechanisms is not None and mechanisms.enabled
        pr = PrecisionRecallSettings(**_fields(mechanisms.precision_recall, PrecisionRecallSettings)) if enabled \
            else None
        quality = QualitySettings(cfg.n_samples, cfg.batch_size, cfg.seed,
                                  pr if pr is not None and pr.n_images > 0 else None)
        return cls(likelihood, quality, MechanismSettings(
            HolesSettings(**_fields(mechanisms.holes, HolesSettings)),
            GapsSettings(**_fields(mechanisms.gaps, GapsSettings))) if enabled else None)


def _fields(node: Any, kind: type) -> dict[str, Any]:
    """The values of a config node that the dataclass `kind` has fields for."""
    return {name: node[name] for name in kind.__dataclass_fields__}
