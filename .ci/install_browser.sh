#!/usr/bin/env bash
# Headless Chromium and chromedriver for tests/test_browser.py, and Graphviz so the
# summary page's rule graph is drawn by dot (the page builds without it too).
# Debian / Ubuntu; run as root (CI containers) or through sudo.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian names the packages chromium / chromium-driver; Ubuntu's chromium is a snap
# shim, so there the Debian names may fail and chromium-browser is tried instead.
if ! $SUDO apt-get install -y -qq chromium chromium-driver graphviz; then
    $SUDO apt-get install -y -qq chromium-browser chromium-chromedriver graphviz
fi

browser="$(command -v chromium || command -v chromium-browser)"
"$browser" --version
chromedriver --version
dot -V
