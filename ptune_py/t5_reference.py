#!/usr/bin/python3
"""Independent float64 reference of the T5 encoder-decoder forward pass.

This is the oracle used by ptune's cross-check tests: the C engine's logits,
losses and soft-prompt gradients are compared against what this script
computes.  It is written from the equations of Hugging Face's modeling_t5.py
(T5ForConditionalGeneration, eval mode, no dropout) and does not use the
transformers package.  Everything is computed in float64 with the weights
frozen; autograd gives d(loss)/d(prompt) only.

Equations:
  LN(x)        = x * rsqrt(mean(x^2) + eps) * w          (no mean, no bias)
  attention    = softmax(Q K^T + bias) V, then o         (no 1/sqrt(d_kv))
  bias         = relative position bias (block 0 of each stack, shared by all
                 layers); bidirectional in the encoder, causal + unidirectional
                 in decoder self-attention, none in cross-attention
  enc block    = h += SelfAttn(LN h); h += FF(LN h)
  dec block    = h += SelfAttn(LN h); h += CrossAttn(LN h, enc); h += FF(LN h)
  FF           = wo(act(wi x))  or gated  wo(act(wi_0 x) * wi_1 x)
  logits       = LN_final(dec) [* d_model^-0.5 if tied] @ E^T  (or lm_head^T)
  loss         = mean cross-entropy over target positions (teacher forcing,
                 decoder input = [decoder_start_token_id] + target[:-1])
A soft prompt (P x d_model) is prepended to the embedded encoder input.

CLI:
  t5_reference.py check MODEL_DIR < cases.json > results.json
  t5_reference.py buckets --buckets B --max-distance M --max-len T
  t5_reference.py generate MODEL_DIR [--max-new-tokens N] [--num-beams K]
                  [--length-penalty A] [--eos-id E] < cases.json > results.json
  t5_reference.py compare-generate REFERENCE.json ENGINE.json [--tol T]
  t5_reference.py pick-eos RESULTS.json
  t5_reference.py make-cases MODEL_DIR --n N --seed S [--prompt-len P]
                  [--max-input L] [--max-target K] [--decoder-longer] [--rank-labels L]
                  [--mixed-prompts] > cases.json
    --decoder-longer: every target is longer than its encoder row (prompt +
    input), inputs of 1 to 3 tokens: the shapes where decoder self-attention
    blocks are the largest of the pass
A case with "label_ids" (each label's tokens, EOS appended) also gets
rank_log_probs: log softmax over the labels of their teacher-forced
log-likelihoods (T5X rank classification), one full pass per label.
"""
import argparse
import json
import math
import os
import random
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(1)
DT = torch.float64


# ---------------------------------------------------------------- loading

def load_safetensors(path, as_type=np.float64):
    """Return {name: tensor of as_type (float64 here)} from a .safetensors file (F32/BF16/F16)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = raw[base + b:base + e]
        dtype = info["dtype"]
        if dtype == "F32":
            arr = np.frombuffer(buf, dtype="<f4")
        elif dtype == "F16":
            arr = np.frombuffer(buf, dtype="<f2")
        elif dtype == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32)
        else:
            raise ValueError("unsupported dtype %s for %s" % (dtype, name))
        arr = arr.astype(as_type).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    cfg = {
        "vocab_size": c["vocab_size"],
        "d_model": c["d_model"],
        "d_kv": c["d_kv"],
        "d_ff": c["d_ff"],
        "num_layers": c["num_layers"],
        "num_heads": c["num_heads"],
        "num_buckets": c.get("relative_attention_num_buckets", 32),
        "max_distance": c.get("relative_attention_max_distance", 128),
        "eps": c.get("layer_norm_epsilon", 1e-6),
        "ff_proj": c.get("feed_forward_proj", "relu"),
        "tied": c.get("tie_word_embeddings", True),
        "start_id": c.get("decoder_start_token_id", 0),
        "eos_id": c.get("eos_token_id", 1),
    }
    ndl = c.get("num_decoder_layers")
    cfg["num_decoder_layers"] = cfg["num_layers"] if ndl is None else ndl
    if cfg["start_id"] is None:
        cfg["start_id"] = 0
    parts = cfg["ff_proj"].split("-")
    cfg["gated"] = parts[0] == "gated"
    act = parts[-1]
    if cfg["ff_proj"] == "gated-gelu":
        act = "gelu_new"                      # HF maps gated-gelu to gelu_new
    cfg["act"] = act
    return cfg


def load_model(model_dir):
    cfg = load_config(model_dir)
    w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    if "shared.weight" not in w:
        w["shared.weight"] = w["encoder.embed_tokens.weight"]
    return cfg, w


# ---------------------------------------------------------------- layers

def activation(name, x):
    if name == "relu":
        return torch.relu(x)
    if name == "gelu_new":                    # tanh approximation
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu":                        # exact erf gelu
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "silu":
        return x * torch.sigmoid(x)
    raise ValueError("unsupported activation " + name)


def layer_norm(x, weight, eps):
    """T5LayerNorm. x [n, d], weight [d] -> [n, d]."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """Copied from HF modeling_t5.py (including its float32 log arithmetic)."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


def position_bias(table, q_len, k_len, bidirectional, cfg):
    """table [buckets, H] -> bias [H, q_len, k_len]; relative = key_pos - query_pos."""
    rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]      # [q, k]
    buckets = _relative_position_bucket(rel, bidirectional, cfg["num_buckets"], cfg["max_distance"])
    return table[buckets].permute(2, 0, 1)                                   # [H, q, k]


def attention(x, kv, w, prefix, cfg, bias=None):
    """Multi-head attention without score scaling.
    x [q, d] (queries), kv [k, d] (keys/values), bias [H, q, k] or None -> [q, d]."""
    H, dk = cfg["num_heads"], cfg["d_kv"]
    q = (x @ w[prefix + ".q.weight"].T).view(-1, H, dk).transpose(0, 1)     # [H, q, dk]
    k = (kv @ w[prefix + ".k.weight"].T).view(-1, H, dk).transpose(0, 1)    # [H, k, dk]
    v = (kv @ w[prefix + ".v.weight"].T).view(-1, H, dk).transpose(0, 1)    # [H, k, dk]
    scores = q @ k.transpose(1, 2)                                           # [H, q, k]
    if bias is not None:
        scores = scores + bias
    ctx = torch.softmax(scores, dim=-1) @ v                                  # [H, q, dk]
    ctx = ctx.transpose(0, 1).reshape(x.shape[0], H * dk)                    # [q, H*dk]
    return ctx @ w[prefix + ".o.weight"].T                                   # [q, d]


def feed_forward(x, w, prefix, cfg):
    """DenseReluDense / DenseGatedActDense. x [n, d] -> [n, d]."""
    if cfg["gated"]:
        h = activation(cfg["act"], x @ w[prefix + ".wi_0.weight"].T) * (x @ w[prefix + ".wi_1.weight"].T)
    else:
        h = activation(cfg["act"], x @ w[prefix + ".wi.weight"].T)          # [n, d_ff]
    return h @ w[prefix + ".wo.weight"].T


def encoder(h, w, cfg):
    """h [n, d] embedded input (prompt rows included) -> final normed output [n, d]."""
    n, eps = h.shape[0], cfg["eps"]
    bias = position_bias(w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
                         n, n, True, cfg)
    for i in range(cfg["num_layers"]):
        p = "encoder.block.%d.layer." % i
        x = layer_norm(h, w[p + "0.layer_norm.weight"], eps)
        h = h + attention(x, x, w, p + "0.SelfAttention", cfg, bias)
        x = layer_norm(h, w[p + "1.layer_norm.weight"], eps)
        h = h + feed_forward(x, w, p + "1.DenseReluDense", cfg)
    return layer_norm(h, w["encoder.final_layer_norm.weight"], eps)


def decoder(h, enc, w, cfg):
    """h [m, d] embedded decoder input, enc [n, d] encoder output -> [m, d]."""
    m, eps = h.shape[0], cfg["eps"]
    bias = position_bias(w["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
                         m, m, False, cfg)
    causal = torch.ones(m, m, dtype=torch.bool).tril()
    bias = bias.masked_fill(~causal, float("-inf"))                          # [H, m, m]
    for i in range(cfg["num_decoder_layers"]):
        p = "decoder.block.%d.layer." % i
        x = layer_norm(h, w[p + "0.layer_norm.weight"], eps)
        h = h + attention(x, x, w, p + "0.SelfAttention", cfg, bias)
        x = layer_norm(h, w[p + "1.layer_norm.weight"], eps)
        h = h + attention(x, enc, w, p + "1.EncDecAttention", cfg, None)
        x = layer_norm(h, w[p + "2.layer_norm.weight"], eps)
        h = h + feed_forward(x, w, p + "2.DenseReluDense", cfg)
    return layer_norm(h, w["decoder.final_layer_norm.weight"], eps)


def forward(cfg, w, input_ids, target_ids, prompt=None):
    """Return (loss scalar, logits [m, V]). prompt [P, d] or None."""
    E = w["shared.weight"]                                                   # [V, d]
    h = E[torch.tensor(input_ids, dtype=torch.long)]                         # [n, d]
    if prompt is not None:
        h = torch.cat([prompt, h], dim=0)                                    # [P+n, d]
    enc = encoder(h, w, cfg)
    dec_in = [cfg["start_id"]] + list(target_ids[:-1])
    dec = decoder(E[torch.tensor(dec_in, dtype=torch.long)], enc, w, cfg)    # [m, d]
    if cfg["tied"]:
        logits = (dec * cfg["d_model"] ** -0.5) @ E.T                        # [m, V]
    else:
        logits = dec @ w["lm_head.weight"].T
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(target_ids, dtype=torch.long))
    return loss, logits


def rank_log_probs(cfg, w, case, prompt):
    """T5X rank classification: each label's target (its ids + EOS) scored by
    its teacher-forced log-likelihood over the whole vocabulary, one full pass
    per label; returns log softmax of those scores over the labels."""
    scores = []
    with torch.no_grad():
        p = prompt.detach() if prompt is not None else None
        for ids in case["label_ids"]:
            target = list(ids) + [cfg["eos_id"]]
            loss, _ = forward(cfg, w, case["input_ids"], target, p)
            scores.append(-loss.item() * len(target))           # loss is the mean CE
    s = torch.tensor(scores, dtype=DT)
    return torch.log_softmax(s, dim=0).tolist()


# ---------------------------------------------------------------- commands

def cmd_check(args):
    cfg, w = load_model(args.model_dir)
    cases = json.load(sys.stdin)["cases"]
    results = []
    for case in cases:
        rows = case.get("prompt") or []
        prompt = None
        if rows:
            prompt = torch.tensor(rows, dtype=DT, requires_grad=True)
        loss, logits = forward(cfg, w, case["input_ids"], case["target_ids"], prompt)
        grad = []
        if prompt is not None:
            (g,) = torch.autograd.grad(loss, prompt)
            grad = g.tolist()
        result = {"loss": loss.item(), "logits": logits.detach().tolist(), "prompt_grad": grad}
        if "label_ids" in case:
            result["rank_log_probs"] = rank_log_probs(cfg, w, case, prompt)
        results.append(result)
    json.dump({"results": results}, sys.stdout)
    sys.stdout.write("\n")


def cmd_buckets(args):
    rel = torch.arange(-(args.max_len - 1), args.max_len)
    out = {
        "bidirectional": _relative_position_bucket(rel, True, args.buckets, args.max_distance).tolist(),
        "causal": _relative_position_bucket(rel, False, args.buckets, args.max_distance).tolist(),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


def cmd_make_cases(args):
    cfg = load_config(args.model_dir)
    rng = random.Random(args.seed)
    V = min(cfg["vocab_size"], 32000)
    EOS = 1
    max_in, max_tg = args.max_input, args.max_target
    if cfg["max_distance"] <= 64:         # small max_distance: exercise the log buckets
        max_in = max(max_in, cfg["max_distance"] + 8)
        max_tg = max(max_tg, cfg["max_distance"] + 4)
    cases = []
    for i in range(args.n):
        n_in = rng.randint(1, max_in)
        n_tg = rng.randint(1, max_tg)
        if args.decoder_longer:
            n_in = rng.randint(1, 3)
            shortest = args.prompt_len + n_in + 1
            n_tg = rng.randint(max(shortest, max_tg * 3 // 4), max(max_tg, shortest))
        elif i % 4 == 0:
            n_tg = 1                                   # EOS-only target
        elif i % 4 == 1:
            n_in = max_in                              # longest input
        elif i % 4 == 2:
            n_tg = max_tg
        ids = lambda k: [rng.randrange(V) for _ in range(k - 1)] + [EOS]
        case = {"input_ids": ids(n_in), "target_ids": ids(n_tg)}
        if args.rank_labels and i % 2 == 0:
            # labels that share prefixes (a trie), one the prefix of another
            stem = [rng.randrange(V) for _ in range(rng.randint(1, 3))]
            labels = [stem, stem + [rng.randrange(V)], [rng.randrange(V)]]
            while len(labels) < args.rank_labels:
                labels.append(stem[:rng.randint(0, len(stem))] + [rng.randrange(V) for _ in range(rng.randint(1, 3))])
            case["label_ids"] = [list(l) for l in dict.fromkeys(tuple(l) for l in labels)]
        plen = args.prompt_len
        if args.mixed_prompts:                         # no prompt, full, half: one batch, several prompts
            plen = [0, plen, max(1, plen // 2)][i % 3]
        if plen > 0:
            case["prompt"] = [[rng.uniform(-0.5, 0.5) for _ in range(cfg["d_model"])]
                              for _ in range(plen)]
        cases.append(case)
    json.dump({"cases": cases}, sys.stdout)
    sys.stdout.write("\n")


# ---------------------------------------------------------------- generation

def brevity_penalty(alpha, length):
    """T5X's length penalty of beam search: ((5 + length) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


def generate(cfg, w, input_ids, prompt, max_new, beams, alpha, eos):
    """Decodes one input without any cache: every step runs the decoder over
    the whole prefix.  Greedy (beams == 1) or T5X's beam search: each step
    keeps the 2K best extensions of the live beams; those ending in EOS join
    the finished set scored log P / brevity_penalty(length), the K best others
    stay live; the result is the best finished, else the best live (raw log P).
    Returns (ids without the final EOS, eos, score, per-token log-probs)."""
    E = w["shared.weight"]
    with torch.no_grad():
        h = E[torch.tensor(input_ids, dtype=torch.long)]
        if prompt is not None:
            h = torch.cat([prompt, h], dim=0)
        enc = encoder(h, w, cfg)

        def next_log_probs(seq):
            dec_in = [cfg["start_id"]] + list(seq)
            dec = decoder(E[torch.tensor(dec_in, dtype=torch.long)], enc, w, cfg)[-1]
            logits = (dec * cfg["d_model"] ** -0.5) @ E.T if cfg["tied"] else dec @ w["lm_head.weight"].T
            return torch.log_softmax(logits, dim=0).numpy()

        if beams == 1:
            seq, lps = [], []
            for _ in range(max_new):
                lp = next_log_probs(seq)
                tok = int(np.argmax(lp))                        # first of equal maxima
                seq.append(tok)
                lps.append(float(lp[tok]))
                if tok == eos:
                    break
            ended = seq[-1] == eos
            return (seq[:-1] if ended else seq), ended, float(sum(lps)), lps

        live = [([], 0.0, [])]                                  # (tokens, log P, token log-probs)
        finished = []                                           # (tokens, score, token log-probs)
        for t in range(max_new):
            cands = []
            for b, (seq, lp, _) in enumerate(live):
                step = next_log_probs(seq)
                top = np.argsort(-step, kind="stable")[:2 * beams]
                cands += [(lp + float(step[v]), b, int(v), float(step[v])) for v in top]
            cands.sort(key=lambda c: (-c[0], c[1], c[2]))
            new_live = []
            for lp, b, tok, step_lp in cands[:2 * beams]:
                seq = live[b][0] + [tok]
                lps = live[b][2] + [step_lp]
                if tok == eos:
                    finished.append((seq, lp / brevity_penalty(alpha, t + 1), lps))
                elif len(new_live) < beams:
                    new_live.append((seq, lp, lps))
            finished = sorted(finished, key=lambda f: -f[1])[:beams]   # stable: earlier first on ties
            live = new_live
            if t + 1 == max_new or not live:
                break
            if len(finished) == beams and finished[-1][1] > live[0][1] / brevity_penalty(alpha, max_new + 1):
                break
        if finished:
            seq, score, lps = finished[0]
            return seq[:-1], True, score, lps
        seq, lp, lps = live[0]
        return seq, False, lp, lps


def cmd_generate(args):
    cfg, w = load_model(args.model_dir)
    eos = cfg["eos_id"] if args.eos_id < 0 else args.eos_id
    results = []
    for case in json.load(sys.stdin)["cases"]:
        rows = case.get("prompt") or []
        prompt = torch.tensor(rows, dtype=DT) if rows else None
        ids, ended, score, lps = generate(cfg, w, case["input_ids"], prompt, args.max_new_tokens,
                                          args.num_beams, args.length_penalty, eos)
        results.append({"ids": ids, "eos": ended, "score": score, "token_logprobs": lps})
    json.dump({"results": results}, sys.stdout)
    sys.stdout.write("\n")


def cmd_pick_eos(args):
    """An id to use as EOS in a second run over the same cases, so that random
    test models end sequences at different steps: among the tokens that greedy
    decoding produced (past the first step; not pad/start 0), the one whose
    first occurrence falls at the most distinct positions."""
    first = {}
    for r in json.load(open(args.results))["results"]:
        seen = set()
        for i, t in enumerate(r["ids"]):
            if i >= 1 and t != 0 and t not in seen:
                seen.add(t)
                first.setdefault(t, set()).add(i)
    print(max(sorted(first), key=lambda t: len(first[t])) if first else 1)


def cmd_compare_generate(args):
    """Exit 1 unless every case has the same ids and EOS, and scores and token
    log-probabilities within tol (relative to max(1, |value|))."""
    ref = json.load(open(args.reference))["results"]
    eng = json.load(open(args.engine))["results"]
    bad, worst, tokens = 0, 0.0, 0
    if len(ref) != len(eng):
        print("case count differs: reference %d, engine %d" % (len(ref), len(eng)))
        sys.exit(1)
    for i, (r, e) in enumerate(zip(ref, eng)):
        tokens += len(r["ids"])
        if r["ids"] != e["ids"] or r["eos"] != e["eos"]:
            bad += 1
            print("case %d: ids differ\n  reference %s eos=%s\n  engine    %s eos=%s"
                  % (i, r["ids"], r["eos"], e["ids"], e["eos"]))
            continue
        pairs = [(r["score"], e["score"])] + list(zip(r["token_logprobs"], e["token_logprobs"]))
        if len(r["token_logprobs"]) != len(e["token_logprobs"]):
            pairs.append((0.0, 1.0))
        err = max(abs(a - b) / max(1.0, abs(a)) for a, b in pairs)
        worst = max(worst, err)
        if err > args.tol:
            bad += 1
            print("case %d: score %r vs %r, worst relative error %.3g" % (i, r["score"], e["score"], err))
    print("%d cases, %d tokens, %d eos, %d mismatched, max score error %.3g"
          % (len(ref), tokens, sum(r["eos"] for r in ref), bad, worst))
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check", help="compute loss/logits/prompt_grad for cases.json on stdin")
    p.add_argument("model_dir")
    p = sub.add_parser("buckets", help="print relative position buckets")
    p.add_argument("--buckets", type=int, default=32)
    p.add_argument("--max-distance", type=int, default=128)
    p.add_argument("--max-len", type=int, default=256)
    p = sub.add_parser("make-cases", help="generate random cases")
    p.add_argument("model_dir")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-len", type=int, default=0)
    p.add_argument("--max-input", type=int, default=24)
    p.add_argument("--max-target", type=int, default=12)
    p.add_argument("--decoder-longer", action="store_true")
    p.add_argument("--mixed-prompts", action="store_true",
                   help="cases cycle through no prompt, --prompt-len rows and half as many")
    p.add_argument("--rank-labels", type=int, default=0,
                   help="every other case gets this many labels (label_ids) for rank classification")
    p = sub.add_parser("generate", help="decode cases.json on stdin (greedy or beam search)")
    p.add_argument("model_dir")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--length-penalty", type=float, default=0.6)
    p.add_argument("--eos-id", type=int, default=-1, help="override the model's EOS id")
    p = sub.add_parser("pick-eos", help="an EOS id for a second run (see cmd_pick_eos)")
    p.add_argument("results")
    p = sub.add_parser("compare-generate", help="compare generate results of reference and engine")
    p.add_argument("reference")
    p.add_argument("engine")
    p.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    {"check": cmd_check, "buckets": cmd_buckets, "make-cases": cmd_make_cases,
     "generate": cmd_generate, "compare-generate": cmd_compare_generate, "pick-eos": cmd_pick_eos}[args.cmd](args)


if __name__ == "__main__":
    main()
