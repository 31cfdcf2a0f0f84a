"""The summary page in headless Chromium: images decode, no console errors, claims shown.

Skipped where Chromium or chromedriver is not installed (Debian: `.ci/install_browser.sh`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from helpers import tiny_png
from rgbench.summary.browser import WebDriver, check_page, find_chromium, headless_chromium
from rgbench.summary.summary import build_summary_page


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(None in find_chromium(), reason="needs chromium and chromedriver on PATH"),
]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def browser() -> WebDriver:
    """One headless Chromium (fresh profile) for every page of this module."""
    with headless_chromium() as session:
        yield session


def test_summary_page_loads_in_headless_chromium(tmp_path: Path, browser: WebDriver) -> None:
    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    pd.DataFrame({"claim_id": ["a", "b"], "source": ["s", "s"], "claim": ["x", "y"], "anchor_value": [1.0, 2.0],
                  "measured_value": [1.0, None], "config": ["default", "smoke"],
                  "verdict": ["reproduced", "not_run"], "note": ["", "smoke preset"]}
                 ).to_csv(results / "tables" / "claims.csv", index=False)
    pd.DataFrame({"model": ["GloNet"], "test_accuracy": [0.98]}).to_csv(results / "tables" / "glonet.csv", index=False)
    sizes = {"wide": (23, 5), "square": (8, 8), "tall": (3, 17)}
    for name, size in sizes.items():
        (results / "figures" / "glonet").mkdir(parents=True, exist_ok=True)
        (results / "figures" / "glonet" / f"{name}.png").write_bytes(tiny_png(*size))
    page = results / "report" / "index.html"
    build_summary_page(page, results_dir=results, preset="default", repo_root=tmp_path,
                       claims_csv=results / "tables" / "claims.csv",
                       experiments={"glonet": {"table": results / "tables" / "glonet.csv",
                                               "figures": [results / "figures" / "glonet" / f"{n}.png" for n in sizes]}})
    seen = check_page(page, browser=browser)
    assert seen["brokenImages"] == []
    assert {img["alt"].split(": ")[1]: (img["naturalWidth"], img["naturalHeight"]) for img in seen["images"]} == sizes
    assert seen["consoleErrors"] == []
    assert seen["externalResources"] == []
    assert seen["claimsRows"] == 2
    assert seen["claimsHeader"][:2] == ["claim_id", "claim"] and "verdict" in seen["claimsHeader"]
    assert seen["sections"][0] == "claims"


def test_the_check_sees_a_broken_image_and_a_console_error(tmp_path: Path, browser: WebDriver) -> None:
    page = tmp_path / "broken.html"
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "good.png").write_bytes(tiny_png(4, 4))
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="good.png" alt="good"><img src="bad.png" alt="bad">'
                    '<script>console.error("deliberate failure")</script></body></html>')
    seen = check_page(page, browser=browser)
    assert [img["alt"] for img in seen["brokenImages"]] == ["bad"]
    assert any("deliberate failure" in entry["message"] for entry in seen["consoleErrors"])
    assert seen["claimsRows"] == 0


def test_pipeline_summary_page(tmp_path: Path, browser: WebDriver) -> None:
    """The page the last pipeline run wrote (RGBENCH_REPORT_PAGE, default results/report/index.html)."""
    page = Path(os.environ.get("RGBENCH_REPORT_PAGE", ROOT / "results" / "report" / "index.html"))
    if not page.exists():
        pytest.skip(f"{page} does not exist: run the pipeline first")
    seen = check_page(page, screenshot=tmp_path / "index.png", browser=browser)
    assert seen["brokenImages"] == []
    assert seen["consoleErrors"] == []
    assert seen["externalResources"] == []
    assert seen["claimsRows"] > 0 and seen["sections"][0] == "claims"
    assert (tmp_path / "index.png").stat().st_size > 10_000
