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
    w(f"`bench/generate_bench.sh`: {int(fp32['input_tokens'])}-token inputs, {int(fp32['new_tokens'])} new tokens per row, "
      "greedy, EOS ignored so that every run decodes the same number of steps (`ptune bench-generate`, "
      "`ptune_py/pytorch_generate.py`); random weights of the model's shapes "
      f"({os.path.basename(fp32['model'])}), median of {fp32.get('rounds', 1)} interleaved rounds. PyTorch runs "
      "the same cached decoding (self-attention key/value cache, cross-attention keys/values once per "
      "layer) in float32 at its faster of 1 and 2 threads. Tokens/s count the encoder too; the step is one "
      "decoder step of the whole batch, without the encoder ((time for all tokens - time for 1) / (tokens - 1)). "
      "The floor is the step's matrix products. The weight products (every layer's self Q/K/V/O, cross Q/O, "
      "feed-forward and the LM head for the batch's rows, the model's own weights and precision) are timed alone, "
      "back to back, in the faster of two arrangements: each product on all threads, or the layers split by rows "
      "between threads as the step splits them (*floor*). Attention's two products per layer, q . K^T and "
      "p . V over the caches, are bound by reading their operands: every layer's cross-attention keys and values "
      "of the batch (computed once per row) and the self-attention cache, kept in "
      f"{fp32.get('cache', 'fp32')} for the fp32 model and in {bf16.get('cache', 'fp32')} for the bf16 model "
      "(*cache MB / step*, the mean over the steps); their floor is those bytes at this machine's read bandwidth, "
      "measured in the same run with all threads over a buffer of that size (*floor + attention*).\n")
    w("| batch | ptune fp32 tok/s | ptune bf16 tok/s | PyTorch tok/s | bf16 / PyTorch | "
      "step ms fp32 / bf16 / PyTorch | floor ms fp32 / bf16 | cache MB / step fp32 / bf16 | read GB/s fp32 / bf16 | "
      "floor + attention ms fp32 / bf16 | step / floor fp32 / bf16 | step / (floor + attention) fp32 / bf16 |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e32, e16, pt in zip(fp32["batches"], bf16["batches"], torch["batches"]):
        w(f"| {int(e32['batch'])} | {fmt(e32['tokens_per_s'])} | {fmt(e16['tokens_per_s'])} | "
          f"{fmt(pt['tokens_per_s'])} | {e16['tokens_per_s'] / pt['tokens_per_s']:.2f}x | "
          f"{fmt(e32['step_ms'], 2)} / {fmt(e16['step_ms'], 2)} / {fmt(pt['step_ms'], 2)} | "
          f"{fmt(e32['floor_ms'], 2)} / {fmt(e16['floor_ms'], 2)} | "
          f"{fmt(e32.get('cache_mb_per_step'))} / {fmt(e16.get('cache_mb_per_step'))} | "
          f"{fmt(e32.get('read_gb_per_s'))} / {fmt(e16.get('read_gb_per_s'))} | "
          f"{fmt(e32.get('floor_with_attention_ms'), 2)} / {fmt(e16.get('floor_with_attention_ms'), 2)} | "
          f"{e32['step_over_floor']:.2f} / {e16['step_over_floor']:.2f} | "
          f"{fmt(e32.get('step_over_floor_with_attention'), 2)} / {fmt(e16.get('step_over_floor_with_attention'), 2)} |")
    same = all(e["ids_row0"] == p["ids_row0"] for e, p in zip(fp32["batches"], torch["batches"]))
    big = [i for i, e in enumerate(bf16["batches"]) if e["batch"] == 32]
    if big:
        i = big[0]
        ratio = bf16["batches"][i]["tokens_per_s"] / torch["batches"][i]["tokens_per_s"]
        over = max(fp32["batches"][i]["step_over_floor"], bf16["batches"][i]["step_over_floor"])
        with_att = [e["batches"][i].get("step_over_floor_with_attention") for e in (fp32, bf16)]
        over_att = max(with_att) if None not in with_att else None
        w(f"\nGoals at batch 32: bf16 at least 2x PyTorch's tokens/s: {ratio:.2f}x, {verdict(ratio >= 2)}; "
          f"the decoder step within 20% of its matrix-product floor (the weight products and attention's, "
          f"the worse of fp32 and bf16): {fmt(over_att, 2)}x, "
          f"{'n/a (no read bandwidth measured)' if over_att is None else verdict(over_att <= 1.2)}. "
          f"Against the weight products alone the step is {over:.2f}x (the time attention must spend reading "
          f"the caches counted as overhead).")
    w(f"\nThe first row's generated ids are {'identical' if same else '**not** identical'} in ptune fp32 and "
      "PyTorch (a check that both decode the same thing).")
    parts = [("products", "layer products"), ("lm_head", "LM head"), ("self_attention", "self-attention"),
             ("cross_attention", "cross-attention"), ("rest", "norms etc."), ("argmax", "argmax"),
             ("select", "selection")]
    if all("step_parts_ms" in e for e in fp32["batches"] + bf16["batches"]):
        w("\nWhere a step's time goes (ms per step, the engine's in-step timer over one more run; the "
          "products' and the LM head's sum is what the floor measures alone; where the layers run split by rows, "
          "the layers' parts are the first thread's and its wait for the others is in *norms etc.*):\n")
        w("| batch | precision | " + " | ".join(name for _, name in parts) + " |")
        w("|---|---|" + "---|" * len(parts))
        for prec, eng in (("fp32", fp32), ("bf16", bf16)):
            for e in eng["batches"]:
                w(f"| {int(e['batch'])} | {prec} | " +
                  " | ".join(fmt(e["step_parts_ms"][k], 2) for k, _ in parts) + " |")


out = []
w = out.append
if GENERATION_ONLY:
    generation_section(w)
    print("\n".join(out))
    sys.exit(0)
models = [m for m in ("t5-small", "flan-t5-small", "tiny-gated") if load(f"engine_{m}_fp32.json")]
main_model = models[-1] if models else None

rounds = (load(f"engine_{main_model}_fp32.json") or {}).get("rounds", 1) if main_model else 1
k0 = (load(f"engine_{main_model}_fp32.json") or {}).get("kernels", {}) if main_model else {}


def kernel_of(precision):
    """oneDNN's kernel for a precision, as the run in that precision reported it."""
    e = load(f"engine_{main_model}_{precision}.json") or {}
    return (e.get("kernels") or {}).get(precision) or "n/a"


def pieces_text():
    """oneDNN's piece sizes per precision, as each precision's run chose them (kernel_choice.h)."""
    parts = []
    for p in ("fp32", "bf16", "int8"):
        pr = ((load(f"engine_{main_model}_{p}.json") or {}).get("kernels") or {}).get("piece_rows")
        if not isinstance(pr, dict) or not pr.get(p):
            continue
        g = (pr.get("gflops") or {}).get(p) or {}
        trial = ", ".join(f"{rows}: {fmt(v, 0)}" for rows, v in g.items() if v)
        parts.append(f"{p} **{pr[p]}** rows" + (f" (GFLOP/s per candidate {trial})" if trial else "")
                     + f", {pr.get('chosen', '?')}")
    if not parts:
        return ""
    return (" oneDNN runs a product in pieces of at most so many rows, chosen per precision by a timed trial "
            "when the model loads (2048 rows of the largest weight shape, candidates 256, 1024 and 4096): "
            + "; ".join(parts) + ".")


w("# Benchmarks\n")
w("Everything below was measured in one run of `bench/run.sh` on this machine: "
  f"**{cpu_model()}**, {os.cpu_count()} cores (flags that matter for the products: "
  f"`{k0.get('cpu_flags', 'unknown')}`), 2 threads for every contender. Checkpoints come from "
  "`ptune_py/gen_checkpoint.py` with the exact shapes of t5-small and flan-t5-small (random weights: speed "
  "does not depend on their values). Times are medians of repeated runs after a warm-up; the engine "
  f"and its peers ran in {rounds} interleaved round(s) and each of their figures is the median over the rounds "
  "(this machine's speed drifts by tens of percent within minutes). "
  "Workload (as the speed issue defines it): rows of 128 input tokens, a soft prompt of 20 rows, "
  "2 single-token labels; the training step is batch 8, forward and backward to the prompt. "
  "The figures of the earlier Intel Xeon (AMX) machine are at the end, in a table of their own.\n")
if k0:
    f = k0["fp32"]
    w(f"Kernels, as `ptune bench` and `ptune.model_info()` report them: fp32 forward products on "
      f"**{f['forward']}**, backward on **{f['backward']}** ({f['chosen']}: OpenBLAS "
      f"`{(load(f'engine_{main_model}_fp32.json') or {}).get('blas_kernels', '?')}` kernels at "
      f"{fmt(f['gflops']['openblas_forward'])} / {fmt(f['gflops']['openblas_backward'])} GFLOP/s forward / backward "
      f"against oneDNN at {fmt(f['gflops']['onednn_forward'])} / {fmt(f['gflops']['onednn_backward'])} on the "
      f"model's shapes, 512 rows, when the model loaded); bf16 on oneDNN `{kernel_of('bf16')}`; int8 on oneDNN "
      f"`{kernel_of('int8')}`.{pieces_text()}\n")
w("Contenders: **ptune fp32**, **ptune bf16** (`ptune.precision = bf16`: bfloat16 weight and activation "
  "products on oneDNN; fp32 everywhere else), **ptune int8** (`ptune.precision = int8`: s8 weights with one "
  "scale per output channel, s8 activations with one scale per row, int32 products on oneDNN, fp32 "
  "everywhere else), **PyTorch** (Debian python3-torch, fp32, the same label-only scoring, the faster of "
  "`torch.set_num_threads(1)` and `(2)` per figure), **ONNX Runtime fp32** (npm onnxruntime-node, the same "
  "graph exported with torch.onnx.export, 2 intra-op threads) and **ONNX Runtime int8** (that graph with "
  "every weight MatMul made DynamicQuantizeLinear + MatMulInteger by `bench/ort/quantize_onnx.py`, as "
  "quantize_dynamic does: per-column int8 weights, dynamic uint8 activations per tensor).\n")

def ceilings(e, label):
    """The matrix library's speed for a precision at the run's own shapes: the feed-forward shape, and all four
    weighted by the multiply-adds a layer does at each (per_layer products; without it, as flan-t5's gated
    layers: 3, 1, 2, 1)."""
    shapes = e.get("sgemm_shapes") or []
    key = {"fp32": None, "bf16": "onednn_bf16", "int8": "onednn_int8"}[label]

    def speed(sh):
        return max(sh["gflops"], sh.get("onednn_f32") or 0) if key is None else sh.get(key)
    if len(shapes) != 4 or not all(speed(sh) for sh in shapes):
        return {"ff": None, "weighted": None}
    counts = [sh.get("per_layer", c) for sh, c in zip(shapes, (3, 1, 2, 1))]
    flops = [2.0 * sh["m"] * sh["n"] * sh["k"] * c for sh, c in zip(shapes, counts)]
    return {"ff": speed(shapes[2]),
            "weighted": sum(flops) / sum(f / speed(sh) for f, sh in zip(flops, shapes))}


for m in models:
    e32, e16, e8 = (load(f"engine_{m}_{p}.json") for p in ("fp32", "bf16", "int8"))
    pt, ort, ort8 = load(f"pytorch_{m}.json"), load(f"ort_{m}.json"), load(f"ort_{m}_int8.json")
    w(f"\n## {m}\n")
    w("### Ceilings: the matrix libraries at the model's shapes (M = 32 rows x 148 tokens), GFLOP/s\n")
    w("| layer | M | N | K | OpenBLAS sgemm | oneDNN f32 | oneDNN bf16 | oneDNN int8 |\n|---|---|---|---|---|---|---|---|")
    for s in e32["sgemm_shapes"]:
        w(f"| {s['layer']} | {s['m']} | {s['n']} | {s['k']} | {fmt(s['gflops'])} | {fmt(s.get('onednn_f32'))} | "
          f"{fmt(s.get('onednn_bf16'))} | {fmt(s.get('onednn_int8'))} |")
    w("")
    w("| encoder, 32 rows | achieved GFLOP/s | its precision's ceiling at the model's shapes (weighted) | share | "
      "at the feed-forward shape alone | share | linear layers' products | everything else (attention products, "
      "softmax, norms, gelu, bias, packing) |\n|---|---|---|---|---|---|---|---|")
    for label, e in (("fp32", e32), ("bf16", e16), ("int8", e8)):
        if e and e.get("encoder_gflops"):
            sp = e.get("encoder_split_ms") or {}
            split = ("n/a", "n/a")
            if sp.get("total") and sp.get("products"):
                other = max(0.0, sp["total"] - sp["products"])
                split = (f"{fmt(sp['products'], 0)} ms ({sp['products'] / sp['total']:.0%})",
                         f"{fmt(other, 0)} ms ({other / sp['total']:.0%})")
            cells = []
            for ceiling in (ceilings(e, label)["weighted"], ceilings(e, label)["ff"]):
                cells += [fmt(ceiling), f"{e['encoder_gflops'] / ceiling:.0%}"] if ceiling else ["n/a", "n/a"]
            w(f"| ptune {label} | {fmt(e['encoder_gflops'])} | {' | '.join(cells)} | {split[0]} | {split[1]} |")
    if pt:
        w(f"| PyTorch fp32 | {fmt(pt['encoder_gflops'])} | | | | | | |")
    w("\nThe ceilings are the matrix library's own matmul in the run's precision (fp32: the faster of OpenBLAS and "
      "oneDNN), measured by the same run a minute before the encoder. *At the model's shapes*: the four shapes above, "
      "weighted by the multiply-adds each takes in a layer (three q, k, v products, one o, two wi when gated, one wo), "
      "that is the speed the encoder's linear layers would reach if every product ran as fast as oneDNN alone at its "
      "shape; *the feed-forward shape alone* is the fastest of them, a stricter yardstick. The split times the "
      "encoder's linear layers alone on the same rows (one layer's products, times the layer count) against the whole "
      "encoder; the rest is the non-product work.")
    w("\n### Classification rows/s and the training step\n")
    w("| | batch 1 | batch 8 | batch 32 | training step (ms) |\n|---|---|---|---|---|")
    for label, r in (("ptune fp32", e32), ("ptune bf16", e16), ("ptune int8", e8), ("PyTorch", pt),
                     ("ONNX Runtime fp32", ort), ("ONNX Runtime int8", ort8)):
        if r:
            c = r["classify_rows_per_s"]
            w(f"| {label} | {fmt(c['1'])} | {fmt(c['8'])} | {fmt(c['32'])} | "
              f"{fmt(r.get('train_step_ms'), 0) if r.get('train_step_ms') else 'n/a'} |")
    w("\nThe training step runs in mixed precision for ptune bf16 (products in bfloat16 with fp32 accumulation; "
      "the prompt, its gradient, the optimizer, norms and softmax in fp32) and in fp32 for ptune fp32 and int8 "
      "(int8 is for inference only): those two rows measure the same code, and their difference is this "
      "machine's drift.")
    if pt:
        w("")
        w(f"PyTorch per thread setting: " + "; ".join(
            f"{r['threads']} thread(s): {fmt(r['classify_rows_per_s']['32'])} rows/s at batch 32, "
            f"{fmt(r['train_step_ms'], 0)} ms per step" for r in pt["by_threads"]) + ".")

# ---- targets -------------------------------------------------------------
acc = load("bf16_accuracy.json")
if main_model:
    e32, e16, e8 = (load(f"engine_{main_model}_{p}.json") for p in ("fp32", "bf16", "int8"))
    pt, ort, ort8 = load(f"pytorch_{main_model}.json"), load(f"ort_{main_model}.json"), load(f"ort_{main_model}_int8.json")

    def best(r):
        return max(r["classify_rows_per_s"]["8"], r["classify_rows_per_s"]["32"])

    w(f"\n## Targets ({main_model})\n")
    w("Classification figures are the better of batch 8 and batch 32 for each contender.\n")
    w("| target | measured | verdict |\n|---|---|---|")
    if ort:
        ratio = best(e32) / best(ort)
        w(f"| fp32 classify at least 1.2x ONNX Runtime fp32 | {ratio:.2f}x ({fmt(best(e32))} vs "
          f"{fmt(best(ort))} rows/s) | {verdict(ratio >= 1.2)} |")
    if ort8:
        agree = {"fp32": 1.0, "bf16": acc and acc.get("label_agreement"), "int8": acc and acc.get("label_agreement_int8")}
        cands = [(p, e) for p, e in (("fp32", e32), ("bf16", e16), ("int8", e8))
                 if e and agree.get(p) is not None and agree[p] >= 0.99]
        if cands:
            p, e = max(cands, key=lambda pe: best(pe[1]))
            ratio = best(e) / best(ort8)
            w(f"| the fastest precision with at least 99% label agreement with fp32 at least 1.5x ONNX Runtime int8 "
              f"| ptune {p} ({agree[p]:.2%} agreement): {ratio:.2f}x ({fmt(best(e))} vs {fmt(best(ort8))} rows/s) "
              f"| {verdict(ratio >= 1.5)} |")
    if pt:
        ratio = pt["train_step_ms"] / e32["train_step_ms"]
        w(f"| fp32 training step at least 2x PyTorch's best setting | {ratio:.2f}x ({fmt(e32['train_step_ms'], 0)} vs "
          f"{fmt(pt['train_step_ms'], 0)} ms) | {verdict(ratio >= 2)} |")
    if pt and e16 and e16.get("train_step_ms"):
        ratio = pt["train_step_ms"] / e16["train_step_ms"]
        w(f"| mixed-precision (bf16) training step at least 3x PyTorch's best fp32 setting (issue 14) | {ratio:.2f}x "
          f"({fmt(e16['train_step_ms'], 0)} vs {fmt(pt['train_step_ms'], 0)} ms) | {verdict(ratio >= 3)} |")
    c16 = ceilings(e16, "bf16") if e16 else {}
    if c16.get("weighted"):
        share = e16["encoder_gflops"] / c16["weighted"]
        w(f"| bf16 encoder at least 80% of oneDNN's bf16 matmul GFLOP/s at the model's shapes | "
          f"{share:.0%} ({fmt(e16['encoder_gflops'])} of {fmt(c16['weighted'])}, oneDNN at the four shapes weighted "
          f"by their multiply-adds; {e16['encoder_gflops'] / c16['ff']:.0%} of the feed-forward shape's "
          f"{fmt(c16['ff'])} alone) | {verdict(share >= 0.8)} |")

# a note on this run (say, what disturbed it), kept beside its results
note = os.path.join(R, "NOTE.md")
if os.path.exists(note):
    w("\n" + open(note).read().strip())

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
def scale_section():
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



if load("scale_input_128.json") or load("scale_flan-t5-base_bf16.json"):
    scale_section()

# ---- accuracy of bf16 ------------------------------------------------------
a = load("bf16_accuracy.json")
if a:
    w("\n## bf16 and int8 against fp32\n")
    w(f"The same trained prompt (`bench/bf16_accuracy.sh`) classifies {a['rows']} spam dev rows in each precision.\n")
    w("| precision | accuracy | labels agreeing with fp32 | largest probability difference from fp32 |\n|---|---|---|---|")
    w(f"| fp32 | {a['accuracy_fp32']:.4f} | — | — |")
    w(f"| bf16 | {a['accuracy_bf16']:.4f} | {a['label_agreement']:.2%} | {a['max_probability_difference']:.4f} |")
    if "accuracy_int8" in a:
        w(f"| int8 | {a['accuracy_int8']:.4f} | {a['label_agreement_int8']:.2%} | "
          f"{a['max_probability_difference_int8']:.4f} |")
generation_section(w)

# ---- model sizes in bf16 (measured by hand, bench/paper-scale.md) ---------------
paper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper-scale.md")
if os.path.exists(paper):
    w("\n## Paper scale: bf16 weights, mixed-precision training, flan-t5-xl\n")
    w(open(paper).read().strip())

# ---- the earlier machine -----------------------------------------------------
intel = os.path.join(os.path.dirname(os.path.abspath(__file__)), "intel-xeon-amx.md")
if os.path.exists(intel):
    w("\n## Earlier figures: Intel Xeon with AMX\n")
    w(open(intel).read().strip())
print("\n".join(out))
