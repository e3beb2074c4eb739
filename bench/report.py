#!/usr/bin/python3
"""Writes BENCHMARKS.md from the JSON files bench/run.sh leaves in bench/results.

usage: bench/report.py RESULTS_DIR > BENCHMARKS.md
"""
import json
import os
import platform
import subprocess
import sys

R = sys.argv[1]
GENERATION_ONLY = "--generation-only" in sys.argv[2:]


def load(name):
    path = os.path.join(R, name)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as f:
        return json.load(f)


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def verdict(ok):
    return "**met**" if ok else "**not met**"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def rate_at(engine, batch):
    """Engine rows/s at a batch size, interpolated linearly between measured sizes."""
    points = sorted((int(b), r) for b, r in engine["classify_rows_per_s"].items())
    if batch <= points[0][0]:
        return points[0][1]
    for (b0, r0), (b1, r1) in zip(points, points[1:]):
        if batch <= b1:
            return r0 + (r1 - r0) * (batch - b0) / (b1 - b0)
    return points[-1][1]


def generation_section(w):
    """Text generation: bench/generate_bench.sh's figures (absent files: no section)."""
    fp32, bf16, torch = (load(f"generate_{k}.json") for k in ("engine_fp32", "engine_bf16", "pytorch"))
    if not (fp32 and bf16 and torch):
        return
    w("\n## Text generation\n")
    w(f"`bench/generate_bench.sh`: {fp32['input_tokens']}-token inputs, {fp32['new_tokens']} new tokens per row, "
      "greedy, EOS ignored so that every run decodes the same number of steps (`ptune bench-generate`, "
      "`ptune_py/pytorch_generate.py`); random weights of the model's shapes "
      f"({os.path.basename(fp32['model'])}), median of {fp32.get('rounds', 1)} interleaved rounds. PyTorch runs "
      "the same cached decoding (self-attention key/value cache, cross-attention keys/values once per "
      "layer) in float32 at its faster of 1 and 2 threads. Tokens/s count the encoder too; the step is one "
      "decoder step of the whole batch, without the encoder ((time for all tokens - time for 1) / (tokens - 1)). "
      "The floor is the step's matrix products alone (every layer's self Q/K/V/O, cross Q/O, "
      "feed-forward and the LM head at M = batch rows, the model's own weights and precision), timed "
      "back to back.\n")
    w("| batch | ptune fp32 tok/s | ptune bf16 tok/s | PyTorch tok/s | bf16 / PyTorch | "
      "step ms fp32 / bf16 / PyTorch | floor ms fp32 / bf16 | step / floor fp32 / bf16 |")
    w("|---|---|---|---|---|---|---|---|")
    for e32, e16, pt in zip(fp32["batches"], bf16["batches"], torch["batches"]):
        w(f"| {e32['batch']} | {fmt(e32['tokens_per_s'])} | {fmt(e16['tokens_per_s'])} | "
          f"{fmt(pt['tokens_per_s'])} | {e16['tokens_per_s'] / pt['tokens_per_s']:.2f}x | "
          f"{fmt(e32['step_ms'], 2)} / {fmt(e16['step_ms'], 2)} / {fmt(pt['step_ms'], 2)} | "
          f"{fmt(e32['floor_ms'], 2)} / {fmt(e16['floor_ms'], 2)} | "
          f"{e32['step_over_floor']:.2f} / {e16['step_over_floor']:.2f} |")
    same = all(e["ids_row0"] == p["ids_row0"] for e, p in zip(fp32["batches"], torch["batches"]))
    big = [i for i, e in enumerate(bf16["batches"]) if e["batch"] == 32]
    if big:
        i = big[0]
        ratio = bf16["batches"][i]["tokens_per_s"] / torch["batches"][i]["tokens_per_s"]
        over = max(fp32["batches"][i]["step_over_floor"], bf16["batches"][i]["step_over_floor"])
        w(f"\nGoals at batch 32: bf16 at least 2x PyTorch's tokens/s: {ratio:.2f}x, {verdict(ratio >= 2)}; "
          f"the decoder step within 20% of its product floor: {over:.2f}x, {verdict(over <= 1.2)}.")
    w(f"\nThe first row's generated ids are {'identical' if same else '**not** identical'} in ptune fp32 and "
      "PyTorch (a check that both decode the same thing).")


out = []
w = out.append
if GENERATION_ONLY:
    generation_section(w)
    print("\n".join(out))
    sys.exit(0)
models = [m for m in ("t5-small", "flan-t5-small", "tiny-gated") if load(f"engine_{m}_fp32.json")]
main_model = models[-1] if models else None

rounds = (load(f"engine_{main_model}_fp32.json") or {}).get("rounds", 1) if main_model else 1
w("# Benchmarks\n")
w("Everything below was measured in one run of `bench/run.sh` on this machine: "
  f"{cpu_model()}, {os.cpu_count()} cores, 2 threads for every contender. Checkpoints come from "
  "`ptune_py/gen_checkpoint.py` with the exact shapes of t5-small and flan-t5-small (random weights: speed "
  "does not depend on their values). Times are medians of repeated runs after a warm-up; the engine "
  f"and its peers ran in {rounds} interleaved rounds and each of their figures is the median over the rounds "
  "(this machine's speed drifts by tens of percent within minutes). "
  "Workload (as the speed issue defines it): rows of 128 input tokens, a soft prompt of 20 rows, "
  "2 single-token labels; the training step is batch 8, forward and backward to the prompt.\n")
w("Contenders: **ptune fp32** (OpenBLAS sgemm, `SkylakeX` kernels), **ptune bf16** (`ptune.precision = "
  "bf16`: bfloat16 weight and activation products on oneDNN, AMX here; fp32 everywhere else), "
  "**PyTorch** (Debian python3-torch, fp32, the same label-only scoring, the faster of "
  "`torch.set_num_threads(1)` and `(2)` per figure, OpenBLAS given its AVX-512 kernels too), **ONNX "
  "Runtime** (npm onnxruntime-node, the same graph exported with torch.onnx.export, 2 intra-op threads).\n")

for m in models:
    e32, e16 = load(f"engine_{m}_fp32.json"), load(f"engine_{m}_bf16.json")
    pt, ort = load(f"pytorch_{m}.json"), load(f"ort_{m}.json")
    w(f"\n## {m}\n")
    w("### Ceiling: OpenBLAS sgemm at the model's shapes (M = 32 rows x 148 tokens)\n")
    w("| layer | M | N | K | GFLOP/s |\n|---|---|---|---|---|")
    for s in e32["sgemm_shapes"]:
        w(f"| {s['layer']} | {s['m']} | {s['n']} | {s['k']} | {fmt(s['gflops'])} |")
    w("")
    w("| encoder, 32 rows | achieved GFLOP/s | share of sgemm at the feed-forward shape |\n|---|---|---|")
    w(f"| ptune fp32 | {fmt(e32['encoder_gflops'])} | {e32['encoder_gflops'] / e32['sgemm_gflops']:.0%} "
      f"(of {fmt(e32['sgemm_gflops'])}) |")
    if e16:
        w(f"| ptune bf16 | {fmt(e16['encoder_gflops'])} | {e16['encoder_gflops'] / e32['sgemm_gflops']:.0%} |")
    if pt:
        w(f"| PyTorch | {fmt(pt['encoder_gflops'])} | {pt['encoder_gflops'] / e32['sgemm_gflops']:.0%} |")
    w("\n### Classification rows/s and the training step\n")
    w("| | batch 1 | batch 8 | batch 32 | training step (ms) |\n|---|---|---|---|---|")
    for label, r in (("ptune fp32", e32), ("ptune bf16", e16), ("PyTorch", pt), ("ONNX Runtime fp32", ort)):
        if r:
            c = r["classify_rows_per_s"]
            w(f"| {label} | {fmt(c['1'])} | {fmt(c['8'])} | {fmt(c['32'])} | "
              f"{fmt(r.get('train_step_ms'), 0) if r.get('train_step_ms') else 'n/a'} |")
    w("\nTraining computes in fp32 in both precisions (bf16 is for inference only): the two ptune training-step "
      "figures measure the same code, and their difference is this machine's drift.")
    if pt:
        w("")
        w(f"PyTorch per thread setting: " + "; ".join(
            f"{r['threads']} thread(s): {fmt(r['classify_rows_per_s']['32'])} rows/s at batch 32, "
            f"{fmt(r['train_step_ms'], 0)} ms per step" for r in pt["by_threads"]) + ".")

# ---- targets -------------------------------------------------------------
if main_model:
    e32, e16 = load(f"engine_{main_model}_fp32.json"), load(f"engine_{main_model}_bf16.json")
    pt, ort = load(f"pytorch_{main_model}.json"), load(f"ort_{main_model}.json")
    best = e16 if e16 and e16["classify_rows_per_s"]["32"] > e32["classify_rows_per_s"]["32"] else e32
    w(f"\n## Targets ({main_model})\n")
    w("| target | measured | verdict |\n|---|---|---|")
    if pt:
        for label, e in (("fp32", e32), ("bf16", e16)):
            if e:
                ratio = e["classify_rows_per_s"]["32"] / pt["classify_rows_per_s"]["32"]
                w(f"| classify at batch 32: at least 2x PyTorch (ptune {label}) | {ratio:.2f}x "
                  f"({fmt(e['classify_rows_per_s']['32'])} vs {fmt(pt['classify_rows_per_s']['32'])} rows/s) | {verdict(ratio >= 2)} |")
    if ort:
        for label, e in (("fp32", e32), ("bf16", e16)):
            if e:
                ratio = e["classify_rows_per_s"]["32"] / ort["classify_rows_per_s"]["32"]
                w(f"| classify at batch 32: ahead of ONNX Runtime fp32 (ptune {label}) | {ratio:.2f}x | {verdict(ratio > 1)} |")
    share = e32["encoder_gflops"] / e32["sgemm_gflops"]
    w(f"| fp32 encoder at least 75% of sgemm GFLOP/s | {share:.0%} | {verdict(share >= 0.75)} |")
    if pt:
        ratio = pt["train_step_ms"] / e32["train_step_ms"]
        w(f"| training step at least 1.5x PyTorch | {ratio:.2f}x ({fmt(e32['train_step_ms'], 0)} vs "
          f"{fmt(pt['train_step_ms'], 0)} ms) | {verdict(ratio >= 1.5)} |")
    w("| stretch: ahead of ONNX Runtime int8 (about 50 rows/s measured elsewhere) | not measured here: no "
      "ONNX quantization tool is installable offline | — |")

# ---- SQL -----------------------------------------------------------------
for precision in ("fp32", "bf16"):
    s = load(f"sql_{precision}.json")
    e = load(f"engine_{main_model}_{precision}.json") if main_model else None
    if not s or not e:
        continue
    if "engine_rows_per_s" in s:   # the engine measured in the same minutes as the SQL figures
        e = dict(e, classify_rows_per_s=s["engine_rows_per_s"])
    w(f"\n## Through SQL ({precision}, {s['rows']} rows of 128 tokens)\n")
    w("The engine's rows/s below were measured by `ptune bench` right before the SQL queries, on the same "
      "model and precision (this machine's speed drifts within minutes).\n")
    w("| query | rows/s | worker's mean batch | engine rows/s at that batch | ratio |\n|---|---|---|---|---|")
    names = {"serial": "`SELECT ptune.classify(task, text) FROM t` (no parallel workers)",
             "parallel": "the same with 2 parallel workers",
             "array": "`SELECT ptune.classify(task, array_agg(text)) FROM t`",
             "sessions_4": "4 concurrent sessions, one call per row"}
    for key, label in names.items():
        q = s[key]
        eng = rate_at(e, q["mean_batch"])
        w(f"| {label} | {fmt(q['rows_per_s'])} | {q['mean_batch']:.1f} | {fmt(eng)} | {q['rows_per_s'] / eng:.0%} |")
    lat = s["latency_ms"]
    sql_only = s.get("sql_only_latency_ms", {"p50": 0.0})
    engine_ms = 1000 / e["classify_rows_per_s"]["1"]
    added = lat["p50"] - engine_ms - sql_only["p50"]
    w(f"\nSingle calls (pgbench, one client, {lat['calls']} calls): p50 {lat['p50']:.2f} ms, p99 "
      f"{lat['p99']:.2f} ms. The same query without classify takes {sql_only['p50']:.2f} ms and the engine's "
      f"own time for one row is {engine_ms:.2f} ms, so ptune's call adds **{added:.2f} ms** at the median "
      "(request and answer through shared memory, waking the worker, tokenizing, looking up the prompt).")
    mem = s["memory_mb"]
    w(f"\nMemory: the worker's RSS is {fmt(mem['worker_rss'])} MB for a {fmt(mem['model_file'])} MB model file; "
      f"a backend's RSS goes from {fmt(mem['backend_before'])} MB to {fmt(mem['backend_after'])} MB after "
      f"classifying 50 rows (no model-sized growth).")
    if precision == "fp32":
        array_ratio = s["array"]["rows_per_s"] / rate_at(e, s["array"]["mean_batch"])
        sess_ratio = s["sessions_4"]["rows_per_s"] / rate_at(e, s["sessions_4"]["mean_batch"])
        w("\n| target | measured | verdict |\n|---|---|---|")
        w(f"| array form at least 90% of the engine | {array_ratio:.0%} | {verdict(array_ratio >= 0.9)} |")
        w(f"| cross-session batching at least 90% of the engine at its batch | {sess_ratio:.0%} | {verdict(sess_ratio >= 0.9)} |")
        w(f"| a single call adds under 1 ms | {added:.2f} ms | {verdict(added < 1)} |")
        arena = max(0.0, e["peak_rss_mb"] - e["file_mb"])
        w(f"| worker RSS within 10% of model file + activations ({fmt(mem['model_file'])} + {fmt(arena)} MB, "
          f"the engine's peak at batch 32 beyond its weights) | {fmt(mem['worker_rss'])} MB | "
          f"{verdict(mem['worker_rss'] <= 1.1 * (mem['model_file'] + arena))} |")
        growth = mem['backend_after'] - mem['backend_before']
        w(f"| backends add nothing model-sized (under 10% of the model, or 8 MB) | +{fmt(growth)} MB | "
          f"{verdict(growth < max(0.1 * mem['model_file'], 8))} |")

# ---- scale ---------------------------------------------------------------
w("\n## Scale\n")
rows = [("model", "file MB", "load s", "peak RSS MB", "rows/s batch 1", "rows/s batch 8")]
for m in models:
    e = load(f"engine_{m}_bf16.json")
    if e:
        rows.append((f"{m} (F32 file, bf16)", fmt(e["file_mb"]), fmt(e["load_seconds"], 2), fmt(e["peak_rss_mb"]),
                     fmt(e["classify_rows_per_s"]["1"]), fmt(e["classify_rows_per_s"]["8"])))
for m in ("flan-t5-base", "flan-t5-large"):
    e = load(f"scale_{m}_bf16.json")
    if e:
        rows.append((f"{m} (BF16 file, bf16)", fmt(e["file_mb"]), fmt(e["load_seconds"], 2), fmt(e["peak_rss_mb"]),
                     fmt(e["classify_rows_per_s"]["1"]), fmt(e["classify_rows_per_s"]["8"])))
w("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
for r in rows[1:]:
    w("| " + " | ".join(r) + " |")
w("\nInput length and prompt length (bf16, batch 8):\n")
w("| input tokens | prompt rows | rows/s | peak RSS MB |\n|---|---|---|---|")
for t in (32, 128, 512):
    e = load(f"scale_input_{t}.json")
    if e:
        w(f"| {t} | {e['prompt_length']} | {fmt(e['classify_rows_per_s']['8'])} | {fmt(e['peak_rss_mb'])} |")
for p in (1, 20, 100):
    e = load(f"scale_prompt_{p}.json")
    if e:
        w(f"| {e['input_tokens']} | {p} | {fmt(e['classify_rows_per_s']['8'])} | {fmt(e['peak_rss_mb'])} |")

# ---- accuracy of bf16 ------------------------------------------------------
a = load("bf16_accuracy.json")
if a:
    w("\n## bf16 against fp32\n")
    w(f"The same trained prompt classifies {a['rows']} spam dev rows: accuracy {a['accuracy_fp32']:.4f} in fp32, "
      f"{a['accuracy_bf16']:.4f} in bf16; the labels agree on {a['label_agreement']:.2%} of the rows; the "
      f"largest difference in a probability is {a['max_probability_difference']:.4f}.")
generation_section(w)
print("\n".join(out))
