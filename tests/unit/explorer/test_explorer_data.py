"""The explorer's Python side: the plane (PCA), the density layers against the distributions' own log-densities, the
decoder's weights as the page reads them (a float64 forward pass from them matches `module.decode`), the atlas
fallback and the page's JSON."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from vae_lightning.explorer import PageSettings, decoder_spec, latent_plane, page_html, run_view
from vae_lightning.explorer.decoder import unfloats
from vae_lightning.explorer.plane import extent, grid_coords
from vae_lightning.latent import BetaPrior, NormalPrior
from vae_lightning.model import ContinuousBernoulli, ConvDecoder, MLPDecoder, MLPEncoder, VAEModule

SMALL = PageSettings(n_points=40, grid_size=12, n_draws=30, atlas_size=4)


def model(latent_dim: int = 2, prior=None, activation: str = "leaky_relu", decoder=None, likelihood=None) -> VAEModule:
    torch.manual_seed(0)
    prior = prior or NormalPrior(latent_dim)
    encoder = MLPEncoder(hidden_dims=[16], latent_dim=latent_dim, activation=activation)
    decoder = decoder or MLPDecoder(latent_dim=latent_dim, hidden_dims=[16, 24], activation=activation)
    return VAEModule(encoder, decoder, prior, None, latent_dim, likelihood=likelihood).eval()


def images(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(10, (n,), generator=g)


def view_of(module: VAEModule, settings: PageSettings = SMALL) -> dict:
    x, y = images(settings.n_points)
    return run_view(module, x, y, [module.prior], settings, "title")


def grid_latents(view: dict) -> torch.Tensor:
    plane = view["plane"]
    uv = grid_coords(view["box"], view["grid"]["size"])
    return torch.tensor(plane["origin"], dtype=torch.float64) + uv @ torch.tensor(plane["axes"], dtype=torch.float64)


def forward_from_spec(spec: dict, z: np.ndarray) -> np.ndarray:
    """What explorer.js computes: the layers in float64 from the float32 weights, then the likelihood's mean, then
    round(255 * mean)."""
    def linear(layer, h):
        w = unfloats(layer["w"]).astype(np.float64).reshape(layer["out"], layer["in"])
        return h @ w.T + unfloats(layer["b"]).astype(np.float64)

    h = z.astype(np.float64)
    for layer in spec["layers"]:
        if layer["op"] == "linear":
            h = linear(layer, h)
        elif layer["op"] == "leaky_relu":
            h = np.where(h >= 0, h, h * layer["slope"])
        elif layer["op"] == "tanh":
            h = np.tanh(h)
        elif layer["op"] == "relu":
            h = np.maximum(h, 0)
        else:
            h = linear(layer["linear"], h) / (1 + np.exp(-linear(layer["gate"], h)))
    if spec["mean"] == "sigmoid":
        mean = 1 / (1 + np.exp(-h))
    else:
        small = np.abs(h) < 0.05
        safe = np.where(small, 1.0, h)
        mean = np.clip(np.where(small, 0.5 + h / 12 - h**3 / 720, -1 / np.expm1(-safe) - 1 / safe), 0, 1)
    return np.clip(np.round(255 * mean), 0, 255)


def test_a_2d_plane_is_the_latent_plane_and_a_larger_one_the_codes_pca():
    assert latent_plane(torch.randn(50, 2)).explained is None
    assert torch.equal(latent_plane(torch.randn(50, 2)).axes, torch.eye(2, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0].T  # orthonormal rows
    weights = torch.randn(2000, 6, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 0.1, 0.1, 0.1, 0.1])
    codes = 5 + weights @ basis
    plane = latent_plane(codes)
    assert abs(float(plane.axes[0] @ basis[0])) == pytest.approx(1, abs=1e-3)
    assert abs(float(plane.axes[1] @ basis[1])) == pytest.approx(1, abs=1e-3)
    assert torch.allclose(plane.axes @ plane.axes.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert plane.explained[0] == pytest.approx(9 / (9 + 4 + 4 * 0.01), abs=0.02)
    assert torch.allclose(plane.origin, codes.mean(0))
    uv = torch.randn(10, 2, dtype=torch.float64)
    assert torch.allclose(plane.coords(plane.latents(uv)), uv)  # a point of the plane projects onto itself


def test_the_axes_follow_the_data_and_keep_one_scale():
    points = torch.tensor([[0.0, 0.0], [10.0, 2.0]]).repeat(50, 1)
    u_lo, u_hi, v_lo, v_hi = extent(points)
    assert u_lo < 0 and u_hi > 10 and u_hi - u_lo == pytest.approx(v_hi - v_lo)
    assert (v_lo + v_hi) / 2 == pytest.approx(1.0)
    assert extent(points + 100)[0] > 90  # not a fixed box


@pytest.mark.parametrize("prior", [NormalPrior(2), BetaPrior(2, alpha=2.0, beta=3.0), BetaPrior(2)],
                         ids=["normal", "beta", "uniform"])
def test_the_prior_layer_is_the_priors_log_prob_on_the_grid(prior):
    module = model(prior=prior)
    view = view_of(module)
    z = grid_latents(view)
    layer = torch.from_numpy(unfloats(view["grid"]["prior"]).copy())
    inside = ((z > 0) & (z < 1)).all(-1) if isinstance(prior, BetaPrior) else torch.ones(len(z), dtype=torch.bool)
    assert inside.any()
    assert torch.allclose(layer[inside], prior.log_prob(z[inside].float()), atol=1e-5)
    assert torch.all(layer[~inside] == -math.inf)  # off the support: no density, not an error


def test_the_aggregate_layer_is_the_mixture_of_the_test_posteriors():
    module = model()
    view = view_of(module)
    x, _ = images(SMALL.n_points)
    with torch.no_grad():
        mean, log_var = module.encoder(x).double().chunk(2, dim=-1)
    z = grid_latents(view)
    log_q = Normal(mean, torch.exp(0.5 * log_var)).log_prob(z[:, None, :]).sum(-1)  # [G*G, N]
    expected = torch.logsumexp(log_q, dim=1) - math.log(len(x))
    layer = torch.from_numpy(unfloats(view["grid"]["aggregate"]).astype(np.float64))
    assert torch.allclose(layer, expected, atol=1e-4)
    codes = torch.from_numpy(unfloats(view["points"]["codes"]).astype(np.float64)).reshape(-1, 2)
    assert torch.allclose(codes, mean, atol=1e-6)


@pytest.mark.parametrize(("activation", "likelihood"), [("leaky_relu", None), ("tanh", None), ("relu", None),
                                                         ("gated", None), ("leaky_relu", ContinuousBernoulli())])
def test_the_embedded_decoder_decodes_as_the_model_does(activation, likelihood):
    module = model(latent_dim=3, activation=activation, likelihood=likelihood)
    spec = decoder_spec(module)
    params = dict(module.decoder.net.named_parameters())
    linear = [layer for layer in spec["layers"] if layer["op"] in ("linear", "gated")]
    assert len(linear) == 3
    first = linear[0]["linear"] if activation == "gated" else linear[0]
    key = "0.linear.weight" if activation == "gated" else "0.weight"
    assert np.array_equal(unfloats(first["w"]).reshape(first["out"], first["in"]), params[key].detach().numpy())
    z = torch.randn(200, 3, generator=torch.Generator().manual_seed(2)) * 3
    with torch.no_grad():
        expected = module.decode(z).flatten(1).mul(255).round().numpy()
    assert np.abs(forward_from_spec(spec, z.double().numpy()) - expected).max() <= 1  # within 1/255


def test_a_decoder_the_page_cannot_run_gets_an_atlas_and_its_reconstructions():
    module = model(decoder=ConvDecoder(latent_dim=2, channels=[4, 8], hidden_dims=[16]))
    assert decoder_spec(module) is None
    view = view_of(module)
    assert view["decoder"] is None and view["atlas"]["size"] == SMALL.atlas_size
    assert len(unfloats(view["points"]["coords"])) == 2 * SMALL.n_points
    atlas = np.frombuffer(base64.b64decode(view["atlas"]["images"]), dtype=np.uint8).reshape(-1, 784)
    assert atlas.shape[0] == SMALL.atlas_size**2
    nodes = grid_latents({**view, "grid": {"size": SMALL.atlas_size}})
    with torch.no_grad():
        expected = module.decode(nodes.float()).flatten(1).mul(255).round().numpy()
    assert np.abs(atlas - expected).max() <= 1
    recon = np.frombuffer(base64.b64decode(view["recon"]), dtype=np.uint8)
    assert recon.size == SMALL.n_points * 784


def test_a_larger_latent_is_shown_on_its_pca_plane():
    view = view_of(model(latent_dim=5))
    assert view["plane"]["explained"] is not None and len(view["plane"]["origin"]) == 5
    codes = unfloats(view["points"]["codes"]).reshape(-1, 5).astype(np.float64)
    coords = unfloats(view["points"]["coords"]).reshape(-1, 2)
    origin, axes = np.array(view["plane"]["origin"]), np.array(view["plane"]["axes"])
    assert np.allclose((codes - origin) @ axes.T, coords, atol=1e-5)


def test_the_page_is_one_self_contained_file_with_shared_images_stored_once():
    module = model()
    views = [view_of(module), view_of(module)]
    selectors = [{"label": "c", "runs": [{"seed": 0, "view": 0}, {"seed": 1, "view": 1}]}]
    text = page_html("a </script> title", views, selectors)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)  # nothing loaded from elsewhere
    assert "http://" not in text and "https://" not in text
    data = json.loads(re.search(r'id="explorer-data">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</"))
    assert len(data["runs"]) == 2 and len(data["datasets"]) == 1
    assert data["runs"][0]["dataset"] == data["runs"][1]["dataset"] == 0
    assert "a &lt;/script&gt; title" in text


def test_a_page_too_large_for_memory_is_refused_before_any_work(monkeypatch):
    from vae_lightning.core.errors import ParameterError
    from vae_lightning.explorer.view import check_memory

    monkeypatch.setattr("vae_lightning.core.memory.available_bytes", lambda: 1 << 30)
    check_memory(PageSettings(), latent_dim=2)  # the defaults fit in 1 GB
    with pytest.raises(ParameterError, match=r"n_points=2000 is invalid: must be at most \d+ on this machine"):
        check_memory(PageSettings(), latent_dim=100_000)  # a latent so large its codes do not fit


def test_a_diverged_models_page_leaves_out_the_codes_that_overflow():
    module = model()
    with torch.no_grad():
        for parameter in module.encoder.parameters():
            parameter.mul_(1e30)  # finite weights whose codes overflow to inf and NaN
    view = view_of(module)
    json.dumps(view, allow_nan=False)  # the page's JSON can be written
    assert view["points"]["n"] < SMALL.n_points
    assert any("are not finite" in line and "left out" in line for line in view["info"])
    assert all(math.isfinite(x) for x in view["box"])
