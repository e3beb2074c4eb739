#!/usr/bin/python3
"""Randomized bad arguments for every ptune SQL function.

Generates N calls with random bad values (NULLs, empty and huge strings,
wrong types, unknown tasks and tables, negative and absurd hyper-parameters),
runs each in its own transaction through psql, and checks that every one
ends in a clean ERROR with an SQLSTATE that is not an internal error (XX000)
and that the server neither crashed nor restarted its worker.  Prints JSON:
calls, errors by SQLSTATE class, unexpected outcomes.

usage: bad_args.py N SEED PSQL_COMMAND...
"""
import collections
import json
import random
import re
import subprocess
import sys

N, SEED, PSQL = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
rnd = random.Random(SEED)


def lit(v):
    return "NULL" if v is None else "'" + str(v).replace("'", "''") + "'"


TEXTS = [None, "", "x" * 100000, "a dog", "'; DROP TABLE toy; --", "\\x00", "ünïcødé ✓", "no_such_task"]
NAMES = [None, "", "no_such_column", "text", "label", "x" * 70, '"quoted"', "text; DROP TABLE toy"]
RELATIONS = [None, "", "no_such_table", "toy", "pg_catalog.pg_class", "toy; DROP TABLE toy"]
NUMBERS = [None, -1, 0, 1, 2, 3, 10**9, -2**31, 2**31 - 1, "NaN", "Infinity", "-Infinity", 1e308, 0.5, -0.5, "abc"]
INITS = [None, "", "zeros", "class_labels", "RANDOM_UNIFORM", "x" * 1000]
OPTIMIZERS = [None, "", "sgd", "adam", "ADAM", "adafactor "]
TASKS = [None, "", "no_such_task", "x" * 300, "'; DROP TABLE toy; --"]
SCORINGS = [None, "", "full", "RANK", "rank ", "label_tokens", "x" * 1000]


def scoring():
    """Half the calls also pass a scoring argument, good or bad."""
    return f", scoring => {lit(rnd.choice(SCORINGS))}" if rnd.random() < 0.5 else ""


def call():
    kind = rnd.choice(["classify", "classify_array", "scores", "evaluate", "explain", "train", "activate", "drop"])
    t = lit(rnd.choice(TASKS))
    if kind == "classify":
        return f"SELECT ptune.classify({t}, {lit(rnd.choice(TEXTS))}{scoring()})"
    if kind == "classify_array":
        items = ", ".join(lit(rnd.choice(TEXTS)) for _ in range(rnd.randint(0, 4)))
        return f"SELECT ptune.classify({t}, ARRAY[{items}]::text[]{scoring()})"
    if kind == "scores":
        return f"SELECT * FROM ptune.classify_scores({t}, {lit(rnd.choice(TEXTS))}{scoring()})"
    if kind == "evaluate":
        return (f"SELECT * FROM ptune.evaluate({t}, {lit(rnd.choice(RELATIONS))}, {lit(rnd.choice(NAMES))}, "
                f"{lit(rnd.choice(NAMES))}{scoring()})")
    if kind == "explain":
        return f"SELECT * FROM ptune.explain_prompt({t}, {lit(rnd.choice(NUMBERS))})"
    if kind == "activate":
        return f"SELECT ptune.activate({t}, {lit(rnd.choice(NUMBERS))})"
    if kind == "drop":
        return f"SELECT ptune.drop_task({t})"
    args = [f"prompt_length => {lit(rnd.choice(NUMBERS))}", f"init => {lit(rnd.choice(INITS))}",
            f"optimizer => {lit(rnd.choice(OPTIMIZERS))}", f"learning_rate => {lit(rnd.choice(NUMBERS))}",
            f"batch_size => {lit(rnd.choice(NUMBERS))}", f"epochs => {lit(rnd.choice(NUMBERS))}",
            f"max_steps => {lit(rnd.choice(NUMBERS))}", f"validation_fraction => {lit(rnd.choice(NUMBERS))}",
            f"ensemble_size => {lit(rnd.choice(NUMBERS))}", f"max_input_tokens => {lit(rnd.choice(NUMBERS))}",
            f"seed => {lit(rnd.choice(NUMBERS))}", f"scoring => {lit(rnd.choice(SCORINGS))}"]
    chosen = rnd.sample(args, rnd.randint(1, 4))
    # at least one argument is bad for sure: a bad task or relation
    return (f"SELECT * FROM ptune.train_prompt({t}, {lit(rnd.choice(RELATIONS))}, {lit(rnd.choice(NAMES))}, "
            f"{lit(rnd.choice(NAMES))}, {', '.join(chosen)})")


def server_identity():
    out = subprocess.run(PSQL + ["-At", "-c", "SELECT pg_postmaster_start_time(), worker_pid FROM ptune.status()"],
                         capture_output=True, text=True)
    return out.stdout.strip()


before = server_identity()
states = collections.Counter()
unexpected = []
script = "\\set VERBOSITY verbose\n" + "".join(
    f"BEGIN;\n{call()};\nROLLBACK;\n" for _ in range(N))
out = subprocess.run(PSQL + ["-X", "-q", "-f", "-"], input=script, capture_output=True, text=True)
for line in out.stderr.splitlines():
    m = re.search(r"ERROR:\s+([0-9A-Z]{5}):", line)
    if m:
        states[m.group(1)] += 1
        if m.group(1).startswith("XX"):
            unexpected.append(line[:200])
    elif "server closed the connection" in line or "terminated abnormally" in line:
        unexpected.append(line[:200])
after = server_identity()
successes = out.stdout.count("\n")
if before != after:
    unexpected.append(f"the server or worker restarted: {before} -> {after}")
if sum(states.values()) != N:
    unexpected.append(f"{N - sum(states.values())} calls did not end in an error")
print(json.dumps({"calls": N, "errors": sum(states.values()), "by_sqlstate": dict(states.most_common()),
                  "unexpected": unexpected, "server_unchanged": before == after}, indent=1))
sys.exit(1 if unexpected else 0)
