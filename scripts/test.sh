#!/usr/bin/env bash
# The test command (README, .ci/run): one release build of everything, then every test.
# Release, because model-running tests are 10-100x slower in debug; -enable-testing for @testable.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
swift test -c release -Xswiftc -enable-testing "$@"
