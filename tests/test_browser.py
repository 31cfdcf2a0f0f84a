"""The scorecard page in headless Chromium, on a 1400 px screen and a 400 px phone:
every scorecard readable without horizontal scrolling and on the first screen, every
image decoded, no console errors, nothing fetched from the network.

Skipped where Chromium or chromedriver is not installed (Debian: `.ci/install_browser.sh`).
RGBENCH_REPORT_PAGE names a page the pipeline built (default results/report/index.html);
RGBENCH_SCREENSHOTS, when set, is where the first screen at each width is saved
(CI: results/report/screenshots/, for a reviewer to look at).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import tiny_png
from rgbench.summary.browser import WebDriver, check_page, find_chromium, headless_chromium
from rgbench.summary.summary import build_summary_page
from test_report import scorecard_results

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(None in find_chromium(), reason="needs chromium and chromedriver on PATH"),
]

ROOT = Path(__file__).resolve().parents[1]
SCREENS = {"wide": (1400, 900), "phone": (400, 860)}


@pytest.fixture(scope="module")
def browser() -> WebDriver:
    """One headless Chromium (fresh profile) for every page of this module."""
    with headless_chromium() as session:
        yield session


def assert_readable(seen: dict, width: int, cards: int | None = None) -> None:
    """What a reader needs from the page at one screen width."""
    assert seen["brokenImages"] == []
    assert seen["consoleErrors"] == []
    assert seen["externalResources"] == []
    viewport = seen["viewport"]
    assert viewport["width"] == width
    assert viewport["scrollWidth"] <= viewport["clientWidth"], "the page scrolls sideways"
    assert seen["cards"], "no scorecards on the page"
    if cards is not None:
        assert len(seen["cards"]) == cards
    for card in seen["cards"]:
        assert card["left"] >= 0 and card["right"] <= viewport["clientWidth"], f"{card['id']} leaves the screen"
        assert card["scrollWidth"] <= card["clientWidth"], f"{card['id']} scrolls sideways"
        assert card["sticking"] == [], f"{card['id']}: {card['sticking'][:3]} stick out of the card"
    # the first screen shows the scorecards: the first card starts in its upper half
    assert seen["sections"][0] == "scorecards"
    assert seen["cards"][0]["top"] < viewport["height"] / 2


@pytest.mark.parametrize("screen", SCREENS)
def test_scorecards_are_readable_at_every_width(tmp_path: Path, browser: WebDriver, screen: str) -> None:
    width, height = SCREENS[screen]
    arguments = scorecard_results(tmp_path)
    arguments["use_graphviz"] = shutil.which("dot") is not None  # its legend is the page's widest line
    page = arguments["results_dir"] / "report" / "index.html"
    build_summary_page(page, **arguments)
    seen = check_page(page, screenshot=tmp_path / "first-screen.png", browser=browser, width=width, height=height)
    assert_readable(seen, width, cards=4)
    glonet = seen["cards"][0]
    assert glonet["id"] == "card-glonet" and glonet["thumbnail"] == "GloNet depth study: accuracy vs depth"
    assert glonet["badges"] == ["✓ reproduced", "✗ not reproduced", "? inconclusive", "○ not run", "○ not run"]
    # thumbnail + 3 figures, each decoded at its own size
    sizes = {img["alt"]: (img["naturalWidth"], img["naturalHeight"]) for img in seen["images"]}
    assert sizes["glonet: accuracy_vs_depth"] == (1300, 500) and sizes["glonet: learning_curves"] == (30, 20)
    assert sizes["GloNet depth study: accuracy vs depth"] == (560, 215)
    assert (tmp_path / "first-screen.png").stat().st_size > 5_000


def test_the_check_sees_a_broken_image_a_console_error_and_a_wide_card(tmp_path: Path, browser: WebDriver) -> None:
    page = tmp_path / "broken.html"
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "good.png").write_bytes(tiny_png(4, 4))
    page.write_text('<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width, initial-scale=1">'
                    '<link rel="icon" href="data:,"></head><body>'
                    '<section id="scorecards"><article class="card" id="card-x" style="width: 300px">'
                    '<pre style="width: 900px">a very long unbreakable command line</pre></article></section>'
                    '<img src="good.png" alt="good"><img src="bad.png" alt="bad">'
                    '<script>console.error("deliberate failure")</script></body></html>')
    seen = check_page(page, browser=browser, width=400, height=800)
    assert [img["alt"] for img in seen["brokenImages"]] == ["bad"]
    assert any("deliberate failure" in entry["message"] for entry in seen["consoleErrors"])
    assert seen["cards"][0]["sticking"] == ["PRE."]
    assert seen["viewport"]["scrollWidth"] > seen["viewport"]["clientWidth"]
    with pytest.raises(AssertionError):
        assert_readable(seen, 400)


@pytest.mark.parametrize("screen", SCREENS)
def test_pipeline_summary_page(tmp_path: Path, browser: WebDriver, screen: str) -> None:
    """The page the last pipeline run wrote: its first screen at each width is saved."""
    page = Path(os.environ.get("RGBENCH_REPORT_PAGE", ROOT / "results" / "report" / "index.html"))
    if not page.exists():
        pytest.skip(f"{page} does not exist: run the pipeline first")
    width, height = SCREENS[screen]
    folder = Path(os.environ.get("RGBENCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    screenshot = folder / f"index-{width}px.png"
    seen = check_page(page, screenshot=screenshot, browser=browser, width=width, height=height)
    assert_readable(seen, width)
    assert len(seen["cards"]) >= 6  # five seed documents and the reference classifier
    assert screenshot.stat().st_size > 10_000
