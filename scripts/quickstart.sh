#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is missing, build in release, check
# every shipped pipeline, then fetch the default policy and generate with it on our engine.
# (The stages that run pipelines/quickstart.yaml end to end are the next piece of work; until
# they land this validates the pipelines and exercises the engine they will run on.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
swift build -c release --product precept
bin="$(swift build -c release --show-bin-path)/precept"
"$bin" validate pipelines/quickstart.yaml pipelines/cai-dpo.yaml pipelines/rlaif-ppo.yaml pipelines/remote.yaml
"$bin" generate --model gemma-3-270m --prompt "The capital of France is" --max-tokens 32
