#!/usr/bin/python3
"""Markdown learning curves from bench/learning_curves.sh's CSV files.

usage: bench/curves_table.py bench/results/curves
Prints, for each run, the validation accuracy at every evaluation and the
training loss of the last window.
"""
import csv
import glob
import os
import sys

runs = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.csv"))):
    name = os.path.basename(path)[:-4]
    rows = list(csv.DictReader(open(path)))
    if not rows or name.startswith("ptune_"):
        continue
    init, _, rest = name.rpartition("_")[0], None, name.rpartition("_")[2]
    parts = name.split("_")
    runs.append((name, rows))

steps = sorted({int(r["step"]) for _, rows in runs for r in rows})
order = {"class_labels": 0, "sampled_vocab": 1, "random_uniform": 2}
def key(run):
    name = run[0]
    length = int(name.rsplit("_", 1)[1])
    optimizer = name.rsplit("_", 2)[1]
    init = name.rsplit("_", 2)[0]
    return (optimizer != "adafactor", order.get(init, 9), length)

print("| init | optimizer | prompt length | " + " | ".join(f"step {s}" for s in steps) + " | last train loss |")
print("|---|---|---|" + "---|" * len(steps) + "---|")
for name, rows in sorted(runs, key=key):
    init, optimizer, length = name.rsplit("_", 2)
    acc = {int(r["step"]): float(r["val_accuracy"]) for r in rows}
    best = max(acc.values())
    cells = [(f"**{acc[s]:.3f}**" if acc[s] == best else f"{acc[s]:.3f}") if s in acc else "" for s in steps]
    print(f"| {init} | {optimizer} | {length} | " + " | ".join(cells) + f" | {float(rows[-1]['train_loss']):.3f} |")
