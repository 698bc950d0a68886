"""llama.cpp's side of scripts/bench-vs-llamacpp.sh: the same measurements `precept bench` makes,
on the same GGUF file, through llama-cpp-python's C API (no sampling chain, no Python loop per
token beyond the greedy argmax that `precept bench` also does).

usage: bench-llamacpp.py MODEL.gguf BATCH PROMPT_TOKENS NEW_TOKENS THREADS
Prints one JSON line: prefill_tokens_per_s (every prompt in one decode call, logits of each
last position), decode_tokens_per_s (one token per sequence per call, greedy), peak_rss_bytes.
"""
import ctypes
import json
import random
import resource
import sys
import time

import llama_cpp as L
import numpy as np

path, batch, prompt_tokens, new_tokens, threads = sys.argv[1], *map(int, sys.argv[2:6])
L.llama_backend_init()
mparams = L.llama_model_default_params()
model = L.llama_model_load_from_file(path.encode(), mparams)
vocab = L.llama_model_get_vocab(model)
n_vocab = L.llama_vocab_n_tokens(vocab)

cparams = L.llama_context_default_params()
cparams.n_ctx = batch * (prompt_tokens + new_tokens) + 16
cparams.n_batch = max(batch * prompt_tokens, 512)
cparams.n_ubatch = 512  # llama.cpp's default micro-batch (faster here than one 2048-token ubatch)
cparams.n_seq_max = batch
cparams.n_threads = threads
cparams.n_threads_batch = threads
# Each sequence its own KV stream (no shared prefix here), as llama.cpp's docs advise.
cparams.kv_unified = False
ctx = L.llama_init_from_model(model, cparams)

# The same kind of prompts as `precept bench`: ordinary text token ids, fixed seed.
rng = random.Random(1)
prompts = [[1000 + rng.randrange(n_vocab - 2000) for _ in range(prompt_tokens)] for _ in range(batch)]


def fill(b, items):
    """items: (token, position, sequence, wants_logits)."""
    b.n_tokens = len(items)
    for i, (tok, pos, seq, logits) in enumerate(items):
        b.token[i] = tok
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = 1 if logits else 0


def argmax(i):
    row = L.llama_get_logits_ith(ctx, i)
    return int(np.ctypeslib.as_array(ctypes.cast(row, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,)).argmax())


big = L.llama_batch_init(batch * prompt_tokens, 0, batch)
items = [(tok, pos, s, pos == prompt_tokens - 1) for s, p in enumerate(prompts) for pos, tok in enumerate(p)]

# Warm-up pass (page in the weights), then a clean cache for the timed prefill.
fill(big, items)
assert L.llama_decode(ctx, big) == 0
L.llama_memory_clear(L.llama_get_memory(ctx), True)

start = time.perf_counter()
fill(big, items)
assert L.llama_decode(ctx, big) == 0
next_tokens = [argmax(s * prompt_tokens + prompt_tokens - 1) for s in range(batch)]
prefill_seconds = time.perf_counter() - start

step = L.llama_batch_init(batch, 0, batch)
start = time.perf_counter()
for t in range(new_tokens):
    fill(step, [(next_tokens[s], prompt_tokens + t, s, True) for s in range(batch)])
    assert L.llama_decode(ctx, step) == 0
    next_tokens = [argmax(s) for s in range(batch)]
decode_seconds = time.perf_counter() - start

print(json.dumps({
    "prefill_tokens_per_s": batch * prompt_tokens / prefill_seconds,
    "decode_tokens_per_s": batch * new_tokens / decode_seconds,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "llama_cpp_python": L.__version__,
}))
L.llama_batch_free(step)
L.llama_batch_free(big)
L.llama_free(ctx)
L.llama_model_free(model)
