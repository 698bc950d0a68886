#!/usr/bin/env python3
"""llama.cpp's own quantized run (the Q4_K_M file as llama.cpp executes it: 8-bit activations in
its matrix products) for the prompts of the F32 logits reference; writes
Tests/ModelKitTests/Fixtures/reference/<model>/logits_q4_k_m_llamacpp.json in the same shape as
logits_f32.json (per position: the 20 largest logits and the log-sum-exp over the vocabulary).

Why: the engine's default rounds activations to 8 bits as llama.cpp does, so its logits are
compared with this run (ForwardReferenceTests), and with the F32 run when activations stay Float32.
Usage: source scripts/llama-servers.sh (builds the llama-cpp-python venv), then
  .build/llama-venv/bin/python scripts/reference-llamacpp-q4.py gemma-3-270m qwen2.5-coder-0.5b-instruct
Settings as the other reference files: CPU, 2 threads, F32 KV cache, flash attention off.
"""
import ctypes
import json
import os
import sys

import llama_cpp as L
import numpy as np

FILES = {"gemma-3-270m": "gemma-3-270m-q4_k_m.gguf",
         "qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"}
home = os.environ.get("PRECEPT_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "precept")
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "ModelKitTests", "Fixtures", "reference")

L.llama_backend_init()
for name in sys.argv[1:]:
    model = L.llama_model_load_from_file(os.path.join(home, "models", FILES[name]).encode(), L.llama_model_default_params())
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    cases = json.load(open(os.path.join(root, name, "logits_f32.json")))
    out = []
    for case in cases:
        ids = case["ids"]
        cp = L.llama_context_default_params()
        cp.n_ctx = len(ids) + 16
        cp.n_batch = cp.n_ubatch = max(len(ids), 32)
        cp.n_threads = cp.n_threads_batch = 2
        cp.flash_attn_type = 0  # off
        cp.type_k = cp.type_v = 0  # GGML_TYPE_F32
        ctx = L.llama_init_from_model(model, cp)
        batch = L.llama_batch_init(len(ids), 0, 1)
        batch.n_tokens = len(ids)
        for i, t in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = t, i, 1, 1
            batch.seq_id[i][0] = 0
        assert L.llama_decode(ctx, batch) == 0
        positions = []
        for i in range(len(ids)):
            row = np.ctypeslib.as_array(ctypes.cast(L.llama_get_logits_ith(ctx, i), ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,)).astype(np.float64)
            top = np.argsort(-row, kind="stable")[:20]
            m = row.max()
            positions.append({"top": [[int(t), float(row[t])] for t in top], "logsumexp": float(m + np.log(np.exp(row - m).sum()))})
        out.append({"text": case["text"], "ids": ids, "positions": positions})
        L.llama_batch_free(batch)
        L.llama_free(ctx)
    with open(os.path.join(root, name, "logits_q4_k_m_llamacpp.json"), "w") as f:
        json.dump(out, f)
    print(name, len(out), "prompts")
