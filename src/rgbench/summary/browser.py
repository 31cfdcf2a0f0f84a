"""Load a page in headless Chromium through chromedriver and report what the browser saw.

A dozen WebDriver calls over HTTP with urllib: enough to open a file at a given
viewport width, run a script in the page, read the console log and take a screenshot,
without Selenium.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-dev-shm-usage", "--hide-scrollbars")

# What the page reports about itself: every <img> with its decoded width, the tables.
PAGE_PROBE = """
return {
  images: Array.from(document.images).map(img => ({
    alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
    naturalHeight: img.naturalHeight, src: img.currentSrc.slice(0, 64)})),
  tables: Array.from(document.querySelectorAll('table')).map(t => t.id),
  claimsRows: document.querySelectorAll('#claims-table tbody tr').length,
  claimsHeader: Array.from(document.querySelectorAll('#claims-table thead th')).map(th => th.textContent),
  sections: Array.from(document.querySelectorAll('section')).map(s => s.id),
  height: document.documentElement.scrollHeight,
  viewport: {width: window.innerWidth, height: window.innerHeight,
             clientWidth: document.documentElement.clientWidth,
             scrollWidth: document.documentElement.scrollWidth},
  // every scorecard: where it sits, and anything inside it that sticks out to the right
  cards: Array.from(document.querySelectorAll('.card')).map(card => {
    const box = card.getBoundingClientRect();
    const sticking = Array.from(card.querySelectorAll('*')).filter(el => {
      const r = el.getBoundingClientRect();
      return r.width > 0 && r.right > box.right + 1;
    }).map(el => el.tagName + '.' + el.className);
    return {id: card.id, left: box.left, right: box.right, top: box.top, bottom: box.bottom,
            scrollWidth: card.scrollWidth, clientWidth: card.clientWidth, sticking: sticking,
            claims: card.querySelectorAll('.claim').length,
            badges: Array.from(card.querySelectorAll('.claim .badge')).map(b => b.textContent.trim()),
            thumbnail: card.querySelector('.thumb img') ? card.querySelector('.thumb img').alt : null};
  }),
  externalResources: performance.getEntriesByType('resource').map(r => r.name)
      .filter(name => !name.startsWith('data:') && !name.startsWith('file:')),
};
"""


def find_chromium() -> tuple[str | None, str | None]:
    """(browser, chromedriver) executables, or None for what is not installed."""
    browser = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    return browser, shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebDriver:
    """The few W3C WebDriver commands the checks need."""

    def __init__(self, url: str, session: str):
        self.url, self.session = url, session

    @staticmethod
    def call(url: str, method: str = "GET", payload: Any = None, timeout: float = 60) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}").get("value")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise RuntimeError(f"WebDriver {method} {url} failed: {error.code} {detail}") from None

    def command(self, method: str, path: str, payload: Any = None) -> Any:
        return self.call(f"{self.url}/session/{self.session}{path}", method, payload)

    def open(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def console(self) -> list[dict]:
        """Browser console entries so far (chromedriver's log endpoint)."""
        return self.command("POST", "/se/log", {"type": "browser"}) or []

    def cdp(self, cmd: str, params: dict | None = None) -> Any:
        """A Chrome DevTools Protocol command through chromedriver."""
        return self.command("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params or {}})

    def viewport(self, width: int, height: int) -> None:
        """Lay the page out as a ``width`` x ``height`` px screen (a phone's when narrow).

        Device emulation rather than a window size: a headless window has a minimum
        width and browser chrome, an emulated screen is exactly what it says.
        """
        self.cdp("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})

    def screenshot(self, path: str | os.PathLike, width: int = 1300, height: int | None = None) -> None:
        """A PNG of the page at ``width`` px: the first ``height`` px (one screen), or the
        whole page when ``height`` is None."""
        if height is None:  # measured at the final width, since text reflows with it
            self.viewport(width, 800)
            height = int(self.run("return document.documentElement.scrollHeight"))
            height = min(max(height, 400), 16000)
        self.viewport(width, height)
        Path(path).write_bytes(base64.b64decode(self.command("GET", "/screenshot")))


@contextlib.contextmanager
def headless_chromium(browser: str | None = None, chromedriver: str | None = None,
                      startup_timeout: float = 30) -> Iterator[WebDriver]:
    """A WebDriver session on headless Chromium with a fresh profile, torn down on exit."""
    found_browser, found_driver = find_chromium()
    browser, chromedriver = browser or found_browser, chromedriver or found_driver
    if not browser or not chromedriver:
        raise FileNotFoundError("headless checks need chromium and chromedriver on PATH "
                                "(Debian: apt-get install chromium chromium-driver)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="rgbench-chromium-") as profile:
        driver = subprocess.Popen([chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        session = None
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                try:
                    if (WebDriver.call(f"{url}/status", timeout=2) or {}).get("ready"):
                        break
                except (OSError, RuntimeError):
                    pass
                if time.monotonic() > deadline or driver.poll() is not None:
                    raise RuntimeError(f"chromedriver did not start on port {port}")
                time.sleep(0.1)
            capabilities = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": browser,
                                       "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]},
                "goog:loggingPrefs": {"browser": "ALL"},
            }}}
            created = WebDriver.call(f"{url}/session", "POST", capabilities, timeout=startup_timeout * 2)
            session = created["sessionId"]
            yield WebDriver(url, session)
        finally:
            if session is not None:
                with contextlib.suppress(Exception):
                    WebDriver.call(f"{url}/session/{session}", "DELETE", timeout=10)
            driver.terminate()
            try:
                driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                driver.kill()


def check_page(path: str | os.PathLike, screenshot: str | os.PathLike | None = None,
               browser: WebDriver | None = None, width: int = 1400, height: int = 900,
               full_page: bool = False) -> dict[str, Any]:
    """Open ``path`` headless on a ``width`` x ``height`` screen; return the page probe
    plus console errors and broken images.

    ``screenshot`` saves the first screen as PNG (the whole page with ``full_page``).
    ``browser`` reuses an open session (one Chromium start for several pages); the
    console log is read, and so emptied, before the page is opened.
    """
    with contextlib.ExitStack() as stack:
        if browser is None:
            browser = stack.enter_context(headless_chromium())
        browser.console()  # drop what earlier pages logged
        browser.viewport(width, height)
        browser.open(Path(path).resolve().as_uri())
        # data: images decode asynchronously; wait (briefly) until every one is complete
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if browser.run("return Array.from(document.images).every(img => img.complete)"):
                break
            time.sleep(0.1)
        probe = browser.run(PAGE_PROBE)
        console = browser.console()
        if screenshot:
            browser.screenshot(screenshot, width, None if full_page else height)
    probe["consoleErrors"] = [entry for entry in console if entry.get("level") == "SEVERE"]
    probe["console"] = console
    probe["brokenImages"] = [img for img in probe["images"] if not img["complete"] or img["naturalWidth"] <= 0]
    return probe
