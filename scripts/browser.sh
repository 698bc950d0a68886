#!/usr/bin/env bash
# Sourced by scripts/test.sh: what the review app's browser test (ReviewBrowserTests) needs —
# headless Chromium and its WebDriver from apt (chromium, chromium-driver) and Selenium from PyPI
# in .build/browser-venv — then exports PRECEPT_BROWSER_PYTHON, the venv's python.
# Measured on the 2-core dev machine: about 1 minute the first time (apt + pip), nothing after.

browser_packages=()
for p in chromium chromium-driver; do
    dpkg -s "$p" >/dev/null 2>&1 || browser_packages+=("$p")
done
if [ ${#browser_packages[@]} -gt 0 ]; then
    echo "browser: installing ${browser_packages[*]} with apt" >&2
    browser_sudo=""
    [ "$(id -u)" -ne 0 ] && browser_sudo="sudo"
    $browser_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $browser_sudo apt-get install -y -qq "${browser_packages[@]}" >/dev/null
fi
browser_venv=".build/browser-venv"
if ! "$browser_venv/bin/python" -c "import selenium" 2>/dev/null; then
    echo "browser: installing selenium into $browser_venv" >&2
    python3 -m venv "$browser_venv"
    "$browser_venv/bin/python" -m pip install -q selenium
fi
export PRECEPT_BROWSER_PYTHON="$PWD/$browser_venv/bin/python"
