#!/usr/bin/env python3
"""Writes Tests/ModelKitTests/Fixtures/dequant.json: random GGML blocks of every type the
engine reads, with the values llama.cpp's own Python reader (pip package `gguf`) dequantizes
them to. The engine's tests compare against these, an implementation independent of ours.

Usage: pip install gguf numpy && python3 scripts/make-dequant-fixtures.py
"""
import json, os, struct
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

rng = np.random.default_rng(20261123)

# (type, bytes per block, elements per block, byte offsets of f16 scale fields)
layouts = {
    "Q8_0": (T.Q8_0, 34, 32, [0]),
    "Q4_0": (T.Q4_0, 18, 32, [0]),
    "Q4_1": (T.Q4_1, 20, 32, [0, 2]),
    "Q5_0": (T.Q5_0, 22, 32, [0]),
    "Q5_1": (T.Q5_1, 24, 32, [0, 2]),
    "Q4_K": (T.Q4_K, 144, 256, [0, 2]),
    "Q5_K": (T.Q5_K, 176, 256, [0, 2]),
    "Q6_K": (T.Q6_K, 210, 256, [208]),
    "F16": (T.F16, 2, 1, []),
    "BF16": (T.BF16, 2, 1, []),
}

out = {}
for name, (qtype, size, elements, halves) in layouts.items():
    blocks = 3 if elements > 1 else 96
    raw = bytearray(rng.integers(0, 256, size=size * blocks, dtype=np.uint8).tobytes())
    for b in range(blocks):
        for off in halves:  # keep scales finite and moderate, as real files have them
            raw[b * size + off:b * size + off + 2] = np.float16(rng.uniform(-0.05, 0.05)).tobytes()
    if name == "F16":
        raw = bytearray(np.float16(rng.normal(0, 2, blocks)).tobytes())
    if name == "BF16":
        f = np.float32(rng.normal(0, 2, blocks))
        raw = bytearray((f.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    values = dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), qtype).astype(np.float32).reshape(-1)
    out[name] = {"hex": bytes(raw).hex(), "values": [float(v) for v in values]}

path = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelKitTests", "Fixtures", "dequant.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
print("wrote", os.path.normpath(path), {k: len(v["values"]) for k, v in out.items()})
