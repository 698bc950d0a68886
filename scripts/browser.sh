#!/usr/bin/env bash
# Sourced by scripts/test.sh: what the review app's browser test (ReviewBrowserTests) needs —
# headless Chromium and its WebDriver from apt (chromium, chromium-driver) and Selenium from PyPI
# in .build/browser-venv — then exports PRECEPT_BROWSER_PYTHON, the venv's python.
# Measured on the 2-core dev machine: about 1 minute the first time (apt + pip), nothing after.

bash scripts/bootstrap.sh chromium chromium-driver
browser_venv=".build/browser-venv"
if ! "$browser_venv/bin/python" -c "import selenium" 2>/dev/null; then
    echo "browser: installing selenium into $browser_venv" >&2
    python3 -m venv "$browser_venv"
    "$browser_venv/bin/python" -m pip install -q selenium
fi
export PRECEPT_BROWSER_PYTHON="$PWD/$browser_venv/bin/python"
