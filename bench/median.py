#!/usr/bin/python3
"""Merges the JSON results of several benchmark rounds: every number becomes
the median over the rounds (lists element by element); everything else is
taken from the first round.  Adds "rounds": N.

usage: bench/median.py ROUND.json... > MERGED.json
"""
import json
import statistics
import sys


def merge(values):
    first = values[0]
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, (int, float)):
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return statistics.median(numbers) if numbers else None
    if isinstance(first, dict):
        return {k: merge([v.get(k) for v in values if isinstance(v, dict)]) for k in first}
    if isinstance(first, list):
        return [merge([v[i] for v in values if isinstance(v, list) and len(v) > i]) for i in range(len(first))]
    return first


rounds = [json.load(open(path)) for path in sys.argv[1:]]
merged = merge(rounds)
merged["rounds"] = len(rounds)
print(json.dumps(merged, indent=2))
