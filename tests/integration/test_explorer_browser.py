"""The explorer's page in a real browser (headless Chromium through Selenium): it loads from disk with no console
error, the image at the pointer is the model's own decoding there, each layer changes the plane, a clicked code
shows its test image and reconstruction, and a sweep's selectors switch runs. Skipped, with what to install, when
selenium, chromium or chromedriver are absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import browser
from helpers.commands import run_cli, train_run
from omegaconf import OmegaConf

from vae_lightning.checkpoints import load_trained
from vae_lightning.explorer.sources import load_test_images

pytestmark = pytest.mark.skipif(bool(browser.missing()), reason=f"no browser test: {browser.missing()}")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    chrome = browser.start(tmp_path_factory.mktemp("browser"))
    yield chrome
    chrome.quit()


def js(driver, expression: str, *args):
    return driver.execute_script(f"return {expression}", *args)


def write_page(tmp_path: Path, mnist_root: Path, *source: str) -> Path:
    page = tmp_path / "page.html"
    result = run_cli("vae_lightning.explore", *source, f"data.root={mnist_root}", f"output={page}", "n_draws=100",
                     f"paths.log_dir={tmp_path / 'logs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return page


def levels(images: torch.Tensor) -> np.ndarray:
    return images.flatten(1).mul(255).round().numpy()


def test_the_image_at_the_pointer_is_the_models_decoding_there(driver, trained_run, mnist_root, tmp_path):
    browser.open_page(driver, write_page(tmp_path, mnist_root, f"ckpt_path={trained_run}"))
    assert browser.console_errors(driver) == []
    module, stored, _ = load_trained(trained_run)
    u_lo, u_hi, v_lo, v_hi = js(driver, "window.explorer.box()")
    worst = 0.0
    for fu, fv in ((0.5, 0.5), (0.2, 0.8), (0.85, 0.3)):
        u, v = u_lo + fu * (u_hi - u_lo), v_lo + fv * (v_hi - v_lo)
        browser.point_at(driver, 0, u, v)
        shown = js(driver, "window.explorer.shown(0)")
        assert shown["exact"]
        pixel = (u_hi - u_lo) / 400  # a screen pixel of the plane, at most
        assert shown["plane"] == pytest.approx([u, v], abs=2 * pixel)  # where the mouse is
        with torch.no_grad():
            expected = levels(module.decode(torch.tensor([shown["latent"]], dtype=torch.float32)))[0]
        worst = max(worst, float(np.abs(np.array(shown["pixels"]) - expected).max()))
        assert js(driver, "window.explorer.decodedPixels(0)") == shown["pixels"]
    print(f"largest difference from module.decode at 3 pointer positions: {worst:.0f}/255")
    assert worst <= 1  # within 1/255 after rounding

    images, _ = load_test_images(stored["data"], str(mnist_root))
    browser.point_at(driver, 0, *js(driver, "window.explorer.codeOf(0, 5)"), click=True)
    clicked = js(driver, "window.explorer.clicked(0)")
    k = clicked["index"]  # the code under the mouse (5, or one drawn on the same pixel)
    assert js(driver, "window.explorer.codeOf(0, arguments[0])", k) == pytest.approx(
        js(driver, "window.explorer.codeOf(0, 5)"), abs=(u_hi - u_lo) / 50)
    assert clicked["image"] == levels(images[k: k + 1])[0].tolist()
    with torch.no_grad():
        reconstruction = levels(module.decode(module.encode(images[k: k + 1]).mean))[0]
    assert np.abs(np.array(clicked["reconstruction"]) - reconstruction).max() <= 1
    assert browser.console_errors(driver) == []


@pytest.mark.parametrize("model", [["model.latent_dim=4"], ["model=conv", "model.encoder.channels=[4,8]",
                                                             "model.encoder.hidden_dims=[16]"]], ids=["4-d", "conv"])
def test_a_larger_latent_decodes_on_its_pca_plane_and_a_conv_decoder_from_its_atlas(driver, mnist_root, tmp_path,
                                                                                      model):
    run = train_run(mnist_root, tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false",
                    "~callbacks.prior_grid", *model)
    browser.open_page(driver, run / "explore.html")  # train wrote it
    assert browser.console_errors(driver) == []
    module, _, _ = load_trained(run)
    u_lo, u_hi, v_lo, v_hi = js(driver, "window.explorer.box()")
    browser.point_at(driver, 0, u_lo + 0.3 * (u_hi - u_lo), v_lo + 0.6 * (v_hi - v_lo))
    shown = js(driver, "window.explorer.shown(0)")
    assert len(shown["latent"]) == module.latent_dim
    assert shown["exact"] == (model[0] != "model=conv")  # the conv decoder's images come from the atlas
    with torch.no_grad():
        expected = levels(module.decode(torch.tensor([shown["latent"]], dtype=torch.float32)))[0]
    assert np.abs(np.array(shown["pixels"]) - expected).max() <= 1
    text = driver.find_element("css selector", "ul.info").text
    assert ("PCA of the 128 test codes" in text) == (module.latent_dim == 4)
    assert ("nearest of an atlas of 48 x 48 decoded images" in text) == (model[0] == "model=conv")


def test_each_layer_changes_the_plane(driver, trained_run, mnist_root, tmp_path):
    from selenium.webdriver.common.by import By

    browser.open_page(driver, write_page(tmp_path, mnist_root, f"ckpt_path={trained_run}"))
    layers = js(driver, "window.explorer.layers()")
    assert layers[:4] == ["codes", "prior", "aggregate", "ratio"] and len(layers) == 4 + 6  # the study's samplers
    for layer in layers:
        before = js(driver, "window.explorer.image(0)")
        driver.find_element(By.CSS_SELECTOR, f'input[data-layer="{layer}"]').click()
        assert js(driver, "window.explorer.image(0)") != before, layer
        driver.find_element(By.CSS_SELECTOR, f'input[data-layer="{layer}"]').click()
        assert js(driver, "window.explorer.image(0)") == before, layer
    assert browser.console_errors(driver) == []


def test_a_sweeps_selectors_switch_the_runs_of_each_panel(driver, small_sweep, mnist_root, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    sweep = shutil.copytree(small_sweep, tmp_path / "sweep", ignore=shutil.ignore_patterns("explore.html"))
    # a second seed of job 0's configuration: job 4, its copy at seed 7
    shutil.copytree(sweep / "0", sweep / "4")
    config = OmegaConf.load(sweep / "4" / ".hydra" / "config.yaml")
    config.seed = 7
    OmegaConf.save(config, sweep / "4" / ".hydra" / "config.yaml")
    browser.open_page(driver, write_page(tmp_path, mnist_root, f"sweep={sweep}"))
    assert browser.console_errors(driver) == []
    assert js(driver, "window.explorer.panels()") == 2
    assert js(driver, "window.explorer.run(0)") != js(driver, "window.explorer.run(1)")

    configs = [Select(s) for s in driver.find_elements(By.CSS_SELECTOR, "select.config")]
    seeds = lambda: [Select(s) for s in driver.find_elements(By.CSS_SELECTOR, "select.seed")]  # noqa: E731
    before = js(driver, "window.explorer.image(0)"), js(driver, "window.explorer.run(0)")
    configs[0].select_by_index(2)
    assert js(driver, "window.explorer.run(0)") != before[1]
    assert js(driver, "window.explorer.image(0)") != before[0]
    configs[0].select_by_index(0)  # job 0's configuration (the first): seeds 12345 (job 0) and 7 (job 4)
    assert [o.text for o in seeds()[0].options] == ["7", "12345"]
    seeds()[0].select_by_visible_text("7")
    assert js(driver, "window.explorer.run(0)") == 4
    seeds()[0].select_by_visible_text("12345")
    assert js(driver, "window.explorer.run(0)") == 0

    u_lo, u_hi, v_lo, v_hi = js(driver, "window.explorer.box()")
    browser.point_at(driver, 1, (u_lo + u_hi) / 2, (v_lo + v_hi) / 2)
    left, right = js(driver, "window.explorer.shown(0)"), js(driver, "window.explorer.shown(1)")
    assert left["plane"] == right["plane"]  # both panels at the same pointer position
    assert left["pixels"] != right["pixels"]  # two models
    configs[1].select_by_index(2)  # a Beta prior's run: codes in (0, 1), beside the Gaussian's
    images = js(driver, "[window.explorer.image(0), window.explorer.image(1)]")
    driver.find_element(By.CSS_SELECTOR, 'input[data-axes="same"]').click()  # each panel on its own run's axes
    assert js(driver, "[window.explorer.image(0), window.explorer.image(1)]") != images
    assert js(driver, "window.explorer.box(0)") != js(driver, "window.explorer.box(1)")
    assert browser.console_errors(driver) == []
