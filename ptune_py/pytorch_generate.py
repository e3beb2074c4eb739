#!/usr/bin/python3
"""`ptune bench-generate`'s workload in PyTorch: cached greedy decoding.

Rows of INPUT token ids (the formula of src/cli/cmd_bench_generate.c, EOS
last), no prompt, the encoder once, then exactly NEW greedy tokens per row
(EOS ignored) with torch_t5.T5.generate_greedy: a self-attention key/value
cache and cross-attention keys/values computed once per layer.  float32,
frozen weights, no autograd.  Both torch.set_num_threads(1) and (2) are
measured and the faster kept, per figure (Debian's torch runs OpenBLAS, whose
own threads compete with torch's).

Per batch: tokens_per_s (batch * NEW / seconds, encoder included), step_ms
((time for NEW tokens - time for 1) / (NEW - 1)) and ids_row0.

usage: python3 -m ptune_py.pytorch_generate MODEL_DIR [--batches 1,32] [--input-tokens 128]
       [--new-tokens 32] [--reps 5] [--quick]
"""
import argparse
import json
import statistics
import sys
import time

from ptune_py import torch_t5  # noqa: E402  (sets OPENBLAS_CORETYPE before torch loads)
import torch  # noqa: E402


def input_ids(B, n, cfg):
    """The token ids ptune bench-generate uses (same formula)."""
    rows = []
    for i in range(B):
        rows.append([100 + ((i * 7919 + j * 104729) % 30000) % (cfg["vocab_size"] - 200)
                     for j in range(n - 1)] + [cfg["eos_id"]])
    return torch.tensor(rows, dtype=torch.long)


def run(m, ids, new):
    mask = torch.ones_like(ids)
    with torch.no_grad():
        enc, enc_mask = m.encode(ids, mask)
        return m.generate_greedy(enc, enc_mask, new, ignore_eos=True)


def median_seconds(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--input-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    reps = 1 if a.quick else a.reps
    m = torch_t5.T5(a.model_dir)
    out = {"model": a.model_dir, "input_tokens": a.input_tokens, "new_tokens": a.new_tokens,
           "reps": reps, "torch": torch.__version__, "batches": []}
    for B in [int(b) for b in a.batches.split(",")]:
        ids = input_ids(B, a.input_tokens, m.cfg)
        best = None
        for threads in (1, 2):
            torch.set_num_threads(threads)
            full = median_seconds(lambda: run(m, ids, a.new_tokens), reps)
            one = median_seconds(lambda: run(m, ids, 1), reps)
            fig = {"threads": threads, "seconds": full, "tokens_per_s": B * a.new_tokens / full,
                   "step_ms": (full - one) / (a.new_tokens - 1) * 1e3}
            if best is None or fig["seconds"] < best["seconds"]:
                best = fig
        gen, _ = run(m, ids, a.new_tokens)
        best.update({"batch": B, "ids_row0": gen[0].tolist()})
        out["batches"].append(best)
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
