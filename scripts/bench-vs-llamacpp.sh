#!/usr/bin/env bash
# A benchmark, not a test (issue 16): llama.cpp (llama-cpp-python 0.3.36, the venv the tests build,
# scripts/llama-servers.sh) and `precept bench` on the same GGUF files, side by side in one run,
# with the ratios precept / llama.cpp. Both use every core the machine has.
#
#   bash scripts/bench-vs-llamacpp.sh [MODEL ...]     (catalog names; default gemma-3-270m)
#
# Per model: decode at batch 1 and 32 (64-token prompts, 32 new tokens, greedy), prefill of
# 32 x 64 tokens, one 600-token prompt at its last position with 8-bit and with Float32 activations
# (the judge's case: judges score with Float32 activations; with bfloat16 products too where the
# CPU has AVX512-BF16), and peak
# RSS at batch 1 with 256-token prompts against the GGUF file size; each
# the best of BENCH_REPEATS (3) runs. llama.cpp is the portable build the tests use (AVX2/FMA, no
# AVX-512: a native build segfaults on AMX CPUs here), so it is slower than a native build.
# Build precept in release first (scripts/test.sh or `swift build -c release`).
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(gemma-3-270m)
precept="$(swift build -c release --show-bin-path)/precept"
[ -x "$precept" ] || { echo "bench: build precept in release first (swift build -c release)" >&2; exit 1; }
python=".build/llama-venv/bin/python"
"$python" -c "import llama_cpp" 2>/dev/null || { echo "bench: no llama-cpp-python venv; run: source scripts/llama-servers.sh" >&2; exit 1; }
threads=$(nproc)
cache="${PRECEPT_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/precept}/models"

# best N COMMAND...: runs COMMAND N times (default 3, BENCH_REPEATS) and prints one JSON line with
# the best of each rate and the lowest peak RSS (single runs on 2 cores vary by up to 30 %).
best() {
    local runs=() i
    for i in $(seq 1 "${BENCH_REPEATS:-3}"); do runs+=("$("$@")"); done
    python3 -c '
import json, sys
rows = [json.loads(r) for r in sys.argv[1:]]
out = dict(rows[0])
for k in out:
    if k.endswith("_per_s"): out[k] = max(r[k] for r in rows)
    if k == "peak_rss_bytes": out[k] = min(r[k] for r in rows)
print(json.dumps(out))' "${runs[@]}"
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}x')" "$1" "$2"; }
fmt() { python3 -c "import sys; print(f'{float(sys.argv[1]):.1f}')" "$1"; }

for m in "${models[@]}"; do
    "$precept" model pull "$m" >/dev/null
    gguf=$(ls "$cache/$m"*.gguf | head -1)
    size=$(stat -c %s "$gguf")
    echo "## $m ($(basename "$gguf"), $((size / 1000000)) MB), $threads threads, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "| measure | precept | llama.cpp | ratio |"
    echo "|---|---|---|---|"
    p1=$(best "$precept" bench --model "$gguf" --batch 1 --prompt-tokens 64 --new-tokens 32 --json)
    l1=$(best "$python" scripts/bench-llamacpp.py "$gguf" 1 64 32 "$threads" 2>/dev/null)
    echo "| decode batch 1 (tok/s) | $(fmt "$(field "$p1" decode_tokens_per_s)") | $(fmt "$(field "$l1" decode_tokens_per_s)") | $(ratio "$(field "$p1" decode_tokens_per_s)" "$(field "$l1" decode_tokens_per_s)") |"
    p32=$(best "$precept" bench --model "$gguf" --batch 32 --prompt-tokens 64 --new-tokens 32 --json)
    l32=$(best "$python" scripts/bench-llamacpp.py "$gguf" 32 64 32 "$threads" 2>/dev/null)
    echo "| decode batch 32 (tok/s) | $(fmt "$(field "$p32" decode_tokens_per_s)") | $(fmt "$(field "$l32" decode_tokens_per_s)") | $(ratio "$(field "$p32" decode_tokens_per_s)" "$(field "$l32" decode_tokens_per_s)") |"
    echo "| prefill 32 x 64 (tok/s) | $(fmt "$(field "$p32" prefill_tokens_per_s)") | $(fmt "$(field "$l32" prefill_tokens_per_s)") | $(ratio "$(field "$p32" prefill_tokens_per_s)" "$(field "$l32" prefill_tokens_per_s)") |"
    # The judge's case: one 600-token prompt, logits at its last position (issue 16's scoring bar).
    # Judges score with Float32 activations (Scorer), generation's prefill rounds them to 8 bits:
    # both are measured.
    ps=$(best "$precept" bench --model "$gguf" --batch 1 --prompt-tokens 600 --new-tokens 1 --json)
    pf=$(best env PRECEPT_ACTIVATIONS=f32 "$precept" bench --model "$gguf" --batch 1 --prompt-tokens 600 --new-tokens 1 --json)
    ls=$(best "$python" scripts/bench-llamacpp.py "$gguf" 1 600 1 "$threads" 2>/dev/null)
    echo "| prefill 1 x 600, 8-bit activations (prompt tok/s) | $(fmt "$(field "$ps" prefill_tokens_per_s)") | $(fmt "$(field "$ls" prefill_tokens_per_s)") | $(ratio "$(field "$ps" prefill_tokens_per_s)" "$(field "$ls" prefill_tokens_per_s)") |"
    echo "| scoring 1 x 600, Float32 activations as judges score (prompt tok/s) | $(fmt "$(field "$pf" prefill_tokens_per_s)") | $(fmt "$(field "$ls" prefill_tokens_per_s)") | $(ratio "$(field "$pf" prefill_tokens_per_s)" "$(field "$ls" prefill_tokens_per_s)") |"
    # `scoring: bfloat16` (a model key): Float32 activations with bfloat16 products, on CPUs with
    # AVX512-BF16 only.
    if grep -qw avx512_bf16 /proc/cpuinfo; then
        pb=$(best "$precept" bench --model "$gguf" --batch 1 --prompt-tokens 600 --new-tokens 1 --scoring bfloat16 --json)
        echo "| scoring 1 x 600, bfloat16 products (scoring: bfloat16) (prompt tok/s) | $(fmt "$(field "$pb" prefill_tokens_per_s)") | $(fmt "$(field "$ls" prefill_tokens_per_s)") | $(ratio "$(field "$pb" prefill_tokens_per_s)" "$(field "$ls" prefill_tokens_per_s)") |"
    fi
    pm=$(best "$precept" bench --model "$gguf" --batch 1 --prompt-tokens 256 --new-tokens 32 --json)
    lm=$(best "$python" scripts/bench-llamacpp.py "$gguf" 1 256 32 "$threads" 2>/dev/null)
    mb() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6:.0f} MB')" "$1"; }
    echo "| peak RSS, batch 1, 256 tokens | $(mb "$(field "$pm" peak_rss_bytes)") | $(mb "$(field "$lm" peak_rss_bytes)") | file + $(mb $(( $(field "$pm" peak_rss_bytes) - size ))) (precept) |"
    echo
done
