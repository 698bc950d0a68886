#!/usr/bin/env bash
# Installs what Precept needs on a Debian machine, if it is missing:
# OpenBLAS (the numeric core's sgemm), SQLite headers (the run store), libcurl headers (the
# OpenAI-compatible backend), pip (model fetching:
# catalog models are PyPI wheels), and venv, a C++ compiler and curl (llama.cpp's server for tests).
set -euo pipefail

# Extra apt packages may be named as arguments (scripts/browser.sh: chromium chromium-driver).
packages=(libopenblas-dev libsqlite3-dev libcurl4-openssl-dev "$@")
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
# llama.cpp's server for the remote backend's tests is built from source in a venv.
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || packages+=(python3-venv)
command -v c++ >/dev/null 2>&1 || packages+=(g++)
command -v curl >/dev/null 2>&1 || packages+=(curl)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]} with apt" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "bootstrap: swift is not on PATH; install Swift 6 (https://www.swift.org/install/linux/)" >&2
    exit 1
fi
