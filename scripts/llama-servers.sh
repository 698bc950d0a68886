#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/real-server-test.sh: installs llama.cpp's OpenAI-compatible
# server (llama-cpp-python[server] from PyPI, built from source into .build/llama-venv: 7 min 50 s
# on the 2-core dev machine the first time) and starts two servers on loopback — gemma-3-270m with
# every position's logits (the echo route) and qwen2.5-coder-0.5b-instruct (chat top_logprobs) —
# exporting PRECEPT_REAL_SERVER_URL and PRECEPT_REAL_CHAT_URL for RealServerTests, and
# PRECEPT_PYTHON (the venv's python, with llama_cpp and datasets) for EcosystemTests. The servers
# stop when the sourcing shell exits. Needs the two models in the cache (`precept model pull`).

venv=".build/llama-venv"
# A portable build (AVX2/FMA/F16C, no -march=native): a native build on a CPU with AMX
# (Sapphire Rapids) segfaults in its first decode under our VMs (seen 2026-12-03 with 0.3.36).
# The marker file says the venv was built this way; an older native build is rebuilt.
llama_flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
if ! "$venv/bin/python" -c "import llama_cpp.server" 2>/dev/null || [ "$(cat "$venv/.precept-llama-flags" 2>/dev/null)" != "$llama_flags" ]; then
    echo "llama-servers: installing llama-cpp-python[server] into $venv (builds llama.cpp; several minutes)" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    CMAKE_ARGS="$llama_flags" "$venv/bin/python" -m pip install -q --force-reinstall --no-cache-dir --no-deps 'llama-cpp-python==0.3.36'
    "$venv/bin/python" -m pip install -q 'llama-cpp-python[server]==0.3.36'
    echo "$llama_flags" > "$venv/.precept-llama-flags"
fi
# Hugging Face `datasets` in the same venv, for the export-loading tests (EcosystemTests).
if ! "$venv/bin/python" -c "import datasets" 2>/dev/null; then
    echo "llama-servers: installing datasets into $venv" >&2
    "$venv/bin/python" -m pip install -q datasets
fi
# The venv's python (llama_cpp, datasets) for EcosystemTests.
export PRECEPT_PYTHON="$PWD/$venv/bin/python"
models="${PRECEPT_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/precept}/models"
llama_pids=()
llama_logs=()
trap 'kill "${llama_pids[@]}" 2>/dev/null || true; rm -f "${llama_logs[@]}"' EXIT
# serve VAR MODEL ALIAS [extra args]: starts a server on a free port; sets VAR to its base URL once it answers.
serve() {
    local port log
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log="$(mktemp)"
    llama_logs+=("$log")
    "$venv/bin/python" -m llama_cpp.server --model "$2" --model_alias "$3" --host 127.0.0.1 --port "$port" --n_ctx 2048 "${@:4}" >"$log" 2>&1 &
    llama_pids+=($!)
    for _ in $(seq 1 180); do
        if curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null; then printf -v "$1" '%s' "http://127.0.0.1:$port/v1"; return; fi
        kill -0 "${llama_pids[-1]}" 2>/dev/null || { cat "$log" >&2; echo "llama-servers: the server for $3 exited" >&2; return 1; }
        sleep 1
    done
    echo "llama-servers: the server for $3 did not answer in 180 s" >&2
    return 1
}
serve PRECEPT_REAL_SERVER_URL "$models/gemma-3-270m-q4_k_m.gguf" gemma-3-270m --logits_all true
serve PRECEPT_REAL_CHAT_URL "$models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" qwen2.5-coder-0.5b-instruct
export PRECEPT_REAL_SERVER_URL PRECEPT_REAL_CHAT_URL
echo "llama-servers: $PRECEPT_REAL_SERVER_URL (gemma-3-270m), $PRECEPT_REAL_CHAT_URL (qwen2.5-coder-0.5b-instruct)" >&2
