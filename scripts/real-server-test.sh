#!/usr/bin/env bash
# Only the remote backend's tests against real llama.cpp servers on loopback (scripts/test.sh
# runs them too, with everything else).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
flags=(-c release -Xswiftc -enable-testing)
swift build "${flags[@]}" --product precept
"$(swift build "${flags[@]}" --show-bin-path)/precept" model pull gemma-3-270m qwen2.5-coder-0.5b-instruct
source scripts/llama-servers.sh
swift test "${flags[@]}" --filter "RealServerTests|OpenAIBackendTests"
