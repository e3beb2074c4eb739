#!/usr/bin/python3
"""The engine benchmark's workload in PyTorch, for a side-by-side comparison.

Same work as `ptune bench`: rows of 128 input tokens (random ids, EOS last), a
soft prompt of 20 rows, 2 single-token labels; classification by the label
tokens' logits at the first decoder step (what a competent user writes:
encoder once, one decoder step, two rows of the head), and a training step
(batch 8, forward + backward to the prompt only).  float32, frozen weights,
padded batches (all rows have the same length here, so padding costs nothing).

Debian's torch runs OpenBLAS, whose own thread pool competes with torch's:
both torch.set_num_threads(1) and (2) are measured and the faster is
reported, per figure, so PyTorch is never handicapped.

usage: python3 -m ptune_py.pytorch_bench MODEL_DIR [--quick] [--ptune build/ptune]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from ptune_py import torch_t5  # noqa: E402  (sets OPENBLAS_CORETYPE before torch loads)
import torch  # noqa: E402

INPUT_TOKENS = 128
PROMPT_LEN = 20


def median_seconds(fn, reps):
    fn()                                    # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def label_ids(model_dir, ptune):
    """Two labels that are one token each, chosen as `ptune bench` chooses them."""
    words = ["yes", "no", "spam", "ham", "true", "false", "good", "bad", "the", "and", "of", "to", "in"]
    out = subprocess.run([ptune, "tokenize", model_dir], input="\n".join(words) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    single = [int(line) for line in out if line and " " not in line]
    return single[:2]


def encoder_flops(cfg, batch, length):
    d, inner, ff = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"]
    gated = cfg["feed_forward_proj"].startswith("gated")
    tokens = batch * length
    return cfg["num_layers"] * (tokens * (2 * 4 * d * inner + 2 * (3 if gated else 2) * d * ff)
                                + 2 * 2 * batch * length * length * inner)


def run(model, cfg, labels, threads, reps):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    pieces = 32000 if cfg["vocab_size"] >= 32000 else cfg["vocab_size"]
    ids = torch.randint(3, pieces, (32, INPUT_TOKENS), generator=g)
    ids[:, -1] = 1
    mask = torch.ones_like(ids)
    prompt = torch.rand(PROMPT_LEN, cfg["d_model"], generator=g) - 0.5
    label_tensor = torch.tensor(labels)
    result = {"threads": threads, "classify_rows_per_s": {}}

    def classify(batch):
        with torch.no_grad():
            enc, enc_mask = model.encode(ids[:batch], mask[:batch], prompt)
            h = model.decode(torch.zeros(batch, 1, dtype=torch.long), enc, enc_mask)
            return torch.softmax(model.token_logits(h[:, 0], label_tensor), dim=-1).argmax(-1)

    for batch in (1, 8, 32):
        t = median_seconds(lambda: classify(batch), reps if batch > 1 else max(reps, 5))
        result["classify_rows_per_s"][str(batch)] = batch / t

    def encode32():
        with torch.no_grad():
            model.encode(ids, mask, prompt)
    t = median_seconds(encode32, reps)
    result["encoder_gflops"] = encoder_flops(cfg, 32, INPUT_TOKENS + PROMPT_LEN) / t / 1e9

    trainable = prompt.clone().requires_grad_(True)
    dec_in = torch.tensor([[0, labels[i % 2]] for i in range(8)])
    targets = torch.tensor([[labels[i % 2], 1] for i in range(8)])

    def train_step():
        loss = model.loss(ids[:8], mask[:8], trainable, dec_in, targets)
        loss.backward()
        trainable.grad = None
    result["train_step_ms"] = median_seconds(train_step, max(3, reps // 2)) * 1e3
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ptune", default=os.path.join(os.path.dirname(__file__), "..", "build", "ptune"))
    args = ap.parse_args()
    reps = 1 if args.quick else 7
    model = torch_t5.T5(args.model_dir)
    with open(os.path.join(args.model_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("feed_forward_proj", "relu")
    labels = label_ids(args.model_dir, args.ptune)
    runs = [run(model, cfg, labels, threads, reps) for threads in (1, 2)]
    best = {
        "classify_rows_per_s": {b: max(r["classify_rows_per_s"][b] for r in runs) for b in ("1", "8", "32")},
        "encoder_gflops": max(r["encoder_gflops"] for r in runs),
        "train_step_ms": min(r["train_step_ms"] for r in runs),
        "by_threads": runs,
        "torch": torch.__version__,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
    }
    json.dump(best, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
