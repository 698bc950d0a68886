#!/usr/bin/env bash
# Only the remote backend's tests: the fault-injecting server and real llama.cpp servers on
# loopback (scripts/test.sh runs them too, with everything else).
exec bash "$(dirname "$0")/test.sh" --filter "RealServerTests|OpenAIBackendTests"
