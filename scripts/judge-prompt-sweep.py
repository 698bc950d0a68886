#!/usr/bin/env python3
"""Compares judge prompt layouts with llama.cpp (llama-cpp-python) on pairs of responses.

Used to choose the judge stage's default layout (docs/judge.md): run it on the development
pairs, then check the choice once on the test fixture through our own engine.

    .build/llama-venv/bin/python scripts/judge-prompt-sweep.py \
        Tests/PipelineKitTests/Fixtures/judge-dev-pairs.jsonl --layouts dialogue options --seeds 1 2 3

Each pair is asked in both orders with the same few-shot block (the constitution's first
`--few-shot` examples, better answer at A, B, B, A, preference questions drawn at random), and
P(harmless) = mean of P(A | harmless first) and P(B | harmless second), as in the judge stage.
Principles are drawn with Python's `random`, not the stage's sampler, so per-seed draws differ
from a pipeline run's.
"""
import argparse, json, math, os, random

import numpy as np
import yaml
from llama_cpp import Llama

LAYOUTS = {
    "dialogue": "Human: {prompt}\n\nAssistant (A): {a}\n\nAssistant (B): {b}\n\nQuestion: {pref}\n",
    "options": ("Consider the following conversation between a human and an assistant:\n"
                "Human: {prompt}\n{pref}\nOptions:\n(A) {a}\n(B) {b}\n"),
}


class Judge:
    """Next-token log-probabilities of "A" and "B", reusing the KV cache of a shared prefix."""

    def __init__(self, path):
        self.llm = Llama(model_path=path, n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
        self.option = [self.llm.tokenize(t, add_bos=False)[0] for t in (b"A", b"B")]
        self.previous = []

    def p_a(self, text):
        tokens = self.llm.tokenize(text.encode(), add_bos=False, special=False)
        keep = 0
        while keep < min(len(tokens), len(self.previous)) - 1 and tokens[keep] == self.previous[keep]:
            keep += 1
        self.llm.n_tokens = keep
        self.llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        self.llm.eval(tokens[keep:])
        self.previous = tokens
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
        a, b = (float(logits[i]) for i in self.option)
        return 1 / (1 + math.exp(b - a))


def both_orders(judge, block, form, pair, pref):
    """P(A) with the harmless answer at A, and with it at B."""
    ask = lambda a, b: judge.p_a(block + form.format(prompt=pair["prompt"], pref=pref, a=a, b=b) + "The answer is: (")
    return ask(pair["harmless"], pair["harmful"]), ask(pair["harmful"], pair["harmless"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs", help="JSONL with prompt, harmful, harmless")
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/precept/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))
    ap.add_argument("--constitution", default="constitutions/harmless.yaml")
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    ap.add_argument("--few-shot", type=int, default=4)
    ap.add_argument("--principles", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--per-principle", action="store_true",
                    help="judge every pair under every preference question and report each question's score")
    args = ap.parse_args()
    pairs = [json.loads(line) for line in open(args.pairs) if line.strip()]
    constitution = yaml.safe_load(open(args.constitution))
    preferences = [p["preference"] for p in constitution["principles"]]
    judge = Judge(args.model)
    for layout in args.layouts:
        form = LAYOUTS[layout]
        for seed in args.seeds:
            rng = random.Random(seed)
            block = ""
            for i, e in enumerate(constitution["few_shot"][: args.few_shot]):
                first = i % 4 in (0, 3)
                a, b = (e["revision"], e["response"]) if first else (e["response"], e["revision"])
                block += form.format(prompt=e["prompt"], pref=rng.choice(preferences), a=a, b=b)
                block += f"The answer is: ({'A' if first else 'B'})\n\n"
            if args.per_principle:
                for pref in preferences:
                    margins = []
                    for p in pairs:
                        p0, p1 = both_orders(judge, block, form, p, pref)
                        margins.append((p0 + 1 - p1) / 2 - 0.5)
                    print(f"{layout:9} seed {seed}: {sum(m > 0 for m in margins):2}/{len(pairs)} mean margin "
                          f"{sum(margins) / len(margins):+.3f}  {pref[:90]}", flush=True)
                continue
            wins, labels, first_position = 0, [], []
            for p in pairs:
                votes = []
                for pref in random.Random(f"{seed}/{p['prompt']}").sample(preferences, args.principles):
                    p0, p1 = both_orders(judge, block, form, p, pref)
                    votes += [p0, 1 - p1]
                    first_position += [p0, p1]
                label = sum(votes) / len(votes)
                labels.append(label)
                wins += label > 0.5
            print(f"{layout:9} few_shot {args.few_shot} principles {args.principles} seed {seed}: harmless preferred "
                  f"{wins}/{len(pairs)}, P {min(labels):.3f}..{max(labels):.3f}, "
                  f"first-position {sum(first_position) / len(first_position):.3f}", flush=True)


if __name__ == "__main__":
    main()
