#!/usr/bin/env python3
"""Turns a gold file (prompt, better, worse, category, ...) into a `precept judge` pairs file:
response_a / response_b with `better` "a" or "b". The better response is placed first in every
other row among the pairs whose better response is shorter, and likewise among the rest, so
neither a position bias nor a length bias can pass for skill. Other fields are kept.

    python3 scripts/gold-to-pairs.py ../shared/gold/judge-dev.jsonl > data/gold/judge-dev-pairs.jsonl
"""
import json, sys

seen = {True: 0, False: 0}
for line in (l for l in open(sys.argv[1]) if l.strip()):
    row = json.loads(line)
    better, worse = row.pop("better"), row.pop("worse")
    shorter = len(better.split()) < len(worse.split())
    first = seen[shorter] % 2 == 0
    seen[shorter] += 1
    row["response_a"], row["response_b"] = (better, worse) if first else (worse, better)
    row["better"] = "a" if first else "b"
    print(json.dumps(row, ensure_ascii=False))
