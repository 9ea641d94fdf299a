"""The generated report in a real browser: headless Chromium (Debian ``chromium`` + ``chromium-driver``)
driven by Selenium opens the pages from disk and checks that tables and images render, the console
stays clean, and a caption ``<script>alert(1)</script>`` shows as text and runs nothing.

Screenshots go to the test's tmp folder, or to ``$INTERPBENCH_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from benchmark.report.build import build_report
from benchmark.report.fixtures import XSS, write_sample_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs the Debian packages chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    write_sample_run(run, seeds=(0, 1))
    return build_report(run)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e .[test])")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="interpbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, page: Path) -> None:
    driver.get(page.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


def _images(driver) -> list[tuple[str, int]]:
    return driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete ? i.naturalWidth : 0]);"
    )


def _severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("INTERPBENCH_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(height, 600), 6000))
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def test_index_renders_tables_and_figures(browser, report, tmp_path):
    from selenium.webdriver.common.by import By

    _open(browser, report.parent / "index.html")
    tables = browser.find_elements(By.CSS_SELECTOR, "table.board")
    assert len(tables) == 4 and all(t.is_displayed() for t in tables)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.board tbody tr")
    assert len(rows) >= 6 + 3 + 2 * 7  # overall, stability, two tasks with their chance rows
    best = browser.find_elements(By.CSS_SELECTOR, "td.best")
    assert best and all(b.value_of_css_property("font-weight") in ("700", "bold") for b in best)
    images = _images(browser)
    assert len(images) == 4 and all(width > 0 for _, width in images), images
    assert _severe(browser) == []
    _screenshot(browser, tmp_path, "index")


def test_method_page_shows_the_hostile_caption_as_text_and_runs_nothing(browser, report, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    page = next(report.parent.glob("tasks/shapes_cnn__conv2__shapes/neurons-*.html"))
    _open(browser, page)
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - an alert would mean the caption ran
    assert browser.execute_script("return document.scripts.length") == 0
    captions = browser.find_elements(By.CSS_SELECTOR, "figure.thumb .cap")
    assert any(c.get_attribute("textContent") == XSS for c in captions)
    images = _images(browser)
    assert len(images) == 9 * 2 * 8 and all(width > 0 for _, width in images)  # every sprite cell rendered
    assert _severe(browser) == []
    _screenshot(browser, tmp_path, "method-vision")


def test_language_page_highlights_the_active_token(browser, report, tmp_path):
    from selenium.webdriver.common.by import By

    page = next(report.parent.glob("tasks/bytes_1l__mlp__textmix/pca-*.html"))
    _open(browser, page)
    marks = browser.find_elements(By.CSS_SELECTOR, "ol.contexts mark")
    assert marks and {m.text for m in marks} >= {"return", "<b>"}
    contexts = [c.get_attribute("textContent") for c in browser.find_elements(By.CSS_SELECTOR, "ol.contexts .ctx")]
    assert any(XSS in c for c in contexts)
    assert browser.execute_script("return document.scripts.length") == 0
    assert _severe(browser) == []
    _screenshot(browser, tmp_path, "method-language")
