"""A real headless browser for the explorer's page: the system's Chromium driven by Selenium through the system's
chromedriver (Debian's chromium and chromium-driver packages; Selenium Manager's downloads are not used).
`missing()` says what is absent, for a skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def missing() -> str:
    """'' when the browser test can run, else what to install."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if chromium() is None:
        return "no Chromium (apt-get install chromium)"
    if shutil.which("chromedriver") is None:
        return "no chromedriver (apt-get install chromium-driver)"
    return ""


def start(profile: Path, width: int = 1500, height: int = 1000) -> Any:
    """A headless Chromium with its profile and home under `profile`, its console kept for `get_log("browser")`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-breakpad",
                f"--window-size={width},{height}", f"--user-data-dir={profile / 'chromium'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    (profile / "home").mkdir(parents=True, exist_ok=True)
    # Chromium keeps its settings and crash reports under HOME and the XDG folders: all under `profile`
    env = {**os.environ, "HOME": str(profile / "home"), "XDG_CONFIG_HOME": str(profile / "home" / ".config"),
           "XDG_CACHE_HOME": str(profile / "home" / ".cache")}
    service = Service(shutil.which("chromedriver"), env=env)
    return webdriver.Chrome(service=service, options=options)


def open_page(driver: Any, page: Path) -> None:
    """Load a page from disk and wait until its script has drawn it."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.absolute().as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def point_at(driver: Any, panel: int, u: float, v: float, click: bool = False) -> None:
    """Move the mouse over panel `panel`'s plane to the plane point (u, v) (and click there)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_elements(By.CSS_SELECTOR, "canvas.plane")[panel]
    dx, dy = driver.execute_script("return window.explorer.offsetOf(arguments[0], arguments[1], arguments[2])",
                                   panel, u, v)
    actions = ActionChains(driver).move_to_element_with_offset(canvas, round(dx), round(dy))
    (actions.click() if click else actions).perform()
