"""Headless Chromium (Debian's, through Selenium) for the live-page tests.

``scripts/install_browser.sh`` (run by ``make test``) installs chromium and chromium-driver; without
them the browser tests are skipped with that reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="chromium/chromedriver missing: run scripts/install_browser.sh"
)
WAIT = 20


@contextmanager
def open_page(url: str) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM or "chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        browser.get(url)
        yield browser
    finally:
        browser.quit()


def wait_for(browser: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def cells(browser: Any, row_css: str) -> list[tuple[str, str]]:
    """(data-value, shown text) of each cell of the first row matching ``row_css`` (waits for it).

    The page re-renders its tables on every refresh, so a row found by one WebDriver call can be
    replaced before the next reads its cells (StaleElementReferenceException). The row and its cells
    are read in one script, inside the page's event loop, so they come from one rendering.
    """
    script = """
        const row = document.querySelector(arguments[0]);
        if (!row) return null;
        return Array.from(row.querySelectorAll('td'), td => [td.getAttribute('data-value'), td.innerText]);
    """
    return [(value, text) for value, text in read(browser, script, row_css)]


def read(browser: Any, script: str, *args: Any) -> Any:
    """What ``script`` returns once it returns something (waits for it): one read of one rendering."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT).until(lambda b: b.execute_script(script, *args))
