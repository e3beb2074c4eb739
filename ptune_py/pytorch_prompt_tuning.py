#!/usr/bin/python3
"""Prompt tuning (Lester et al. 2021) of a frozen T5 in PyTorch, mirroring `ptune train`.

Purpose: a side-by-side comparison with ptune's C trainer (src/engine/
trainer.c).  Both tune the same soft prompt on the same data with the same
semantics, so their learning curves, validation accuracies and training
speeds (rows per second) can be compared directly.  The model is
ptune_py/torch_t5.py: an efficient float32 PyTorch T5 as a competent user would
write it (batched, padded mini-batches with attention masks).

How it mirrors ptune's trainer (everything except the random number streams):
  - ids: texts and labels are tokenized by the C tool (`ptune tokenize`,
    all texts in one call, newlines in texts replaced by spaces), so both
    programs see identical ids.  An input is its first max_input_tokens-1 ids
    then EOS (1).  The labels are the sorted distinct label strings of the
    training rows; a label's target is its ids + EOS.
  - init: random_uniform = U(-0.5, 0.5); sampled_vocab = embedding rows of
    random non-special pieces among the first min(5003, pieces) ids;
    class_labels = row i < n_labels is the mean embedding of label i's tokens
    (without EOS), the other rows (and labels that tokenize to nothing)
    sampled_vocab.
  - batches: a stream over a seeded shuffled row order, reshuffled whenever it
    is used up, batch_size rows per step (a batch may span two epochs).
  - loss: teacher forcing with decoder input [0] + target[:-1]; the mean
    cross-entropy (full vocabulary) over all target tokens of the batch.
  - step: Adam (gradient L2 norm clipped at 1.0, then torch.optim.Adam,
    betas (0.9, 0.999), eps 1e-8) or Adafactor as in src/engine/optimizer.h,
    i.e. T5X's for the paper (no gradient clipping; decay 1 - t^-0.8; second
    moment factored only when min(rows, cols) >= 128, eps1 1e-30; update
    clipping at RMS 1.0; p = (1 - 1e-5) p - lr y; no momentum).
  - steps: --epochs E gives E * ceil(rows / batch) steps, --steps N caps it
    (--steps alone: exactly N); without either, 3 epochs.
  - validation every --eval-every steps (default min(steps per epoch, 100))
    and at the last step, on the --dev rows, by ptune's label_tokens scoring:
    at target position t of label j the candidates are the t-th tokens of all
    labels that share j's first t tokens; with more than one candidate, the
    log-softmax over the candidates' logits (decoder state after [0]+prefix)
    adds to label j's score; a single candidate adds 0.  The prediction is
    the argmax label; val_loss is the mean of -log softmax(scores)[true].
    The best prompt by validation accuracy (ties: lower val_loss) is kept.
  - output: one progress line per validation on stderr in ptune's format,
    --curve FILE in ptune's CSV format, and one JSON object on stdout.
    train_rows_per_s counts the time of the optimisation steps only (batch
    assembly, forward, backward, clipping, optimizer), not validation.

Usage:
  python3 -m ptune_py.pytorch_prompt_tuning MODEL_DIR --train CSV --dev CSV
      --text-column C --label-column C [--prompt-length 20]
      [--init class_labels|sampled_vocab|random_uniform] [--optimizer adafactor|adam]
      [--lr 0.3] [--batch-size 8] [--steps N | --epochs N] [--max-input-tokens 128]
      [--seed 42] [--eval-every N] [--threads 1|2] [--curve FILE]
      [--ptune PATH_TO_ptune_BINARY] [--out PROMPT.npy]

--out saves the best prompt as a float32 [P, d_model] .npy file (not ptune's
prompt format).

Threads: --threads sets torch.set_num_threads (default 1).  Debian's torch
does its matrix products in OpenBLAS (pthreads build), which keeps its own
pool of threads (OPENBLAS_NUM_THREADS, default: all cores) whatever torch's
setting; the JSON reports both.  On a 2-core machine, torch 1 thread with
OpenBLAS's 2 was the fastest; torch 2 threads plus OpenBLAS's 2 oversubscribe
the cores and halve the speed.
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
from ptune_py import torch_t5  # noqa: E402  (sets OPENBLAS_CORETYPE before torch is imported)
from ptune_py.gen_checkpoint import protobuf_fields  # noqa: E402  (SentencePiece's ModelProto, no module needed)

import numpy as np  # noqa: E402
import torch  # noqa: E402

FREQUENT_PIECES = 5000          # sampled_vocab draws from the 5000 most frequent pieces (+3 specials)
PAD = -100                      # target padding, ignored by cross_entropy
VAL_CHUNK = 64


# ---------------------------------------------------------------- data

def read_rows(path, text_column, label_column):
    """[(text, label)] of a CSV file with a header row."""
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            sys.exit("%s is empty" % path)
        for col in (text_column, label_column):
            if col not in header:
                sys.exit("%s has no column \"%s\" (columns: %s)" % (path, col, ", ".join(header)))
        tc, lc = header.index(text_column), header.index(label_column)
        return [(r[tc], r[lc]) for r in reader if r]


def tokenize(ptune, model_dir, texts):
    """Ids of each text by `ptune tokenize` (one process for all texts)."""
    data = "".join(t.replace("\n", " ") + "\n" for t in texts).encode("utf-8")
    out = subprocess.run([ptune, "tokenize", model_dir], input=data, stdout=subprocess.PIPE,
                         check=True).stdout.decode("ascii").split("\n")
    if len(out) != len(texts) + 1 or out[-1] != "":
        sys.exit("ptune tokenize returned %d lines for %d texts" % (len(out) - 1, len(texts)))
    return [[int(x) for x in line.split()] for line in out[:-1]]


def spiece_special_ids(path):
    """(number of pieces, set of control/unknown piece ids) of a SentencePiece model.

    Reads just enough of the ModelProto protobuf: field 1 (repeated pieces),
    and in each piece field 3 (type: 2 = UNKNOWN, 3 = CONTROL)."""
    with open(path, "rb") as f:
        data = f.read()
    pieces, special = 0, set()
    for num, _, v in protobuf_fields(data):
        if num != 1:
            continue
        kind = 1                                  # NORMAL
        for n2, _, v2 in protobuf_fields(v):
            if n2 == 3:
                kind = v2
        if kind in (2, 3):
            special.add(pieces)
        pieces += 1
    return pieces, special


class Task:
    """Labels, their targets, and ptune's label_tokens score plan."""

    def __init__(self, labels, label_ids, eos, start_id):
        self.labels = labels
        self.targets = []
        for text, ids in zip(labels, label_ids):
            if len(ids) >= 32:
                sys.exit("label \"%s\" has more than 31 tokens" % text)
            self.targets.append(list(ids) + [eos])
        if len({tuple(t) for t in self.targets}) != len(self.targets):
            sys.exit("two labels have the same tokens, so the model cannot tell them apart")
        self._build_plan(start_id)

    def _build_plan(self, start_id):
        """As build_plan() in src/engine/task.c: terms (label, position, token, candidates),
        the decoder inputs to run, and which of them each term reads."""
        T, L = self.targets, len(self.targets)
        terms, need = [], [0] * L
        for j in range(L):
            for t in range(len(T[j])):
                cands = []
                for k in range(L):
                    if len(T[k]) > t and T[k][:t] == T[j][:t] and T[k][t] not in cands:
                        cands.append(T[k][t])
                if len(cands) < 2:
                    continue              # the only possible token: probability 1
                terms.append((j, t, T[j][t], cands))
                need[j] = t + 1
        kept = []
        for j in range(L):
            keep = need[j] > 0
            for k in range(L):
                if not keep:
                    break
                if k == j or need[k] < need[j]:
                    continue
                if T[k][:need[j] - 1] == T[j][:need[j] - 1] and (need[k] > need[j] or k < j):
                    keep = False
            if keep:
                kept.append([start_id] + T[j][:need[j] - 1])
        self.dec_inputs = kept
        self.terms = []
        for j, t, tok, cands in terms:
            seq = next(s for s, ids in enumerate(kept) if len(ids) > t and ids[1:t + 1] == T[j][:t])
            self.terms.append((j, seq, t, cands.index(tok), cands))
        self.vocab_rows = sorted({c for term in self.terms for c in term[4]})


# ---------------------------------------------------------------- optimisers

class Adafactor:
    """Adafactor as src/engine/optimizer.c implements it (T5X's, for the paper's settings)."""

    def __init__(self, param, lr, weight_decay=1e-5, decay_rate=0.8, clip=1.0, eps1=1e-30,
                 min_dim_size_to_factor=128):
        self.p, self.lr, self.wd = param, lr, weight_decay
        self.decay, self.clip, self.eps1 = decay_rate, clip, eps1
        self.factored = min(param.shape) >= min_dim_size_to_factor
        self.R = torch.zeros(param.shape[0])
        self.C = torch.zeros(param.shape[1])
        self.V = torch.zeros(param.shape)
        self.t = 0

    @torch.no_grad()
    def step(self):
        self.t += 1
        g = self.p.grad
        beta = float(1.0 - torch.tensor(float(self.t), dtype=torch.float32) ** -self.decay)
        g2 = g * g + self.eps1
        if self.factored:
            self.R.mul_(beta).add_(g2.mean(dim=1), alpha=1.0 - beta)
            self.C.mul_(beta).add_(g2.mean(dim=0), alpha=1.0 - beta)
            S = self.R if self.p.shape[0] <= self.p.shape[1] else self.C
            u = g / torch.sqrt(self.R[:, None] * self.C[None, :] / S.mean())
        else:
            self.V.mul_(beta).add_(g2, alpha=1.0 - beta)
            u = g / torch.sqrt(self.V)
        u /= max(1.0, u.pow(2).mean().sqrt().item() / self.clip)
        self.p.mul_(1.0 - self.wd).sub_(self.lr * u)

    def zero_grad(self):
        self.p.grad = None


# ---------------------------------------------------------------- training

def pad_inputs(rows):
    """list of id lists -> (ids [B, T], mask [B, T]) padded with 0 to the longest."""
    T = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


def openblas_threads():
    """OpenBLAS's own thread count (None when torch does not use OpenBLAS)."""
    try:
        import ctypes
        return int(ctypes.CDLL("libopenblas.so.0").openblas_get_num_threads())
    except (OSError, AttributeError):
        return None


def init_prompt(model, task, length, init, rng, pieces, special):
    d = model.d_model
    limit = min(pieces, FREQUENT_PIECES + 3)
    embed = model.embed

    def sampled_row():
        while True:
            i = int(rng.integers(limit))
            if i not in special:
                return embed[i]

    rows = []
    for i in range(length):
        if init == "random_uniform":
            rows.append(torch.from_numpy(rng.uniform(-0.5, 0.5, d).astype(np.float32)))
        elif init == "class_labels" and i < len(task.targets) and len(task.targets[i]) > 1:
            rows.append(embed[torch.tensor(task.targets[i][:-1])].mean(dim=0))
        else:
            rows.append(sampled_row())
    return torch.stack(rows).clone().requires_grad_(True)


class Validator:
    """Batched label_tokens classification of the dev rows (VAL_CHUNK rows at a time)."""

    def __init__(self, model, task, rows, labels):
        self.model, self.task = model, task
        # sorting by length only cuts padding; every row is scored on its own
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        self.chunks = []
        for s in range(0, len(order), VAL_CHUNK):
            idx = order[s:s + VAL_CHUNK]
            ids, mask = pad_inputs([rows[i] for i in idx])
            self.chunks.append((ids, mask, torch.tensor([labels[i] for i in idx])))
        self.n = len(rows)
        self.dec_ids, _ = pad_inputs(task.dec_inputs)              # [n_dec, Ld]
        self.vocab_rows = torch.tensor(task.vocab_rows)
        where = {v: k for k, v in enumerate(task.vocab_rows)}
        self.terms = [(j, seq, pos, own, torch.tensor([where[c] for c in cands]))
                      for j, seq, pos, own, cands in task.terms]

    @torch.no_grad()
    def __call__(self, prompt):
        """-> (accuracy, mean -log p(true label))"""
        m, L = self.model, len(self.task.targets)
        n_dec, Ld = self.dec_ids.shape
        correct, nll = 0, 0.0
        for ids, mask, truth in self.chunks:
            B = ids.shape[0]
            enc, emask = m.encode(ids, mask, prompt)
            if n_dec > 1:
                enc = enc.repeat_interleave(n_dec, dim=0)
                emask = emask.repeat_interleave(n_dec, dim=0)
            dec = self.dec_ids.repeat(B, 1)
            h = m.decode(dec, enc, emask).view(B, n_dec, Ld, -1)
            logits = m.token_logits(h, self.vocab_rows)             # [B, n_dec, Ld, K]
            scores = torch.zeros(B, L, dtype=torch.float64)
            for j, seq, pos, own, cands in self.terms:
                lp = torch.log_softmax(logits[:, seq, pos, cands], dim=-1)
                scores[:, j] += lp[:, own].double()
            logp = torch.log_softmax(scores, dim=-1)
            correct += int((scores.argmax(dim=-1) == truth).sum())
            nll -= logp.gather(1, truth[:, None]).clamp(min=math.log(1e-30)).sum().item()
        return correct / self.n, nll / self.n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--text-column", required=True)
    ap.add_argument("--label-column", required=True)
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--init", choices=["class_labels", "sampled_vocab", "random_uniform"],
                    default="class_labels")
    ap.add_argument("--optimizer", choices=["adafactor", "adam"], default="adafactor")
    ap.add_argument("--lr", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--max-input-tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--curve")
    ap.add_argument("--out", help="save the best prompt as a .npy file")
    ap.add_argument("--ptune", default=os.path.join(HERE, "..", "build", "ptune"))
    a = ap.parse_args()
    if a.max_input_tokens < 2 or a.batch_size < 1 or a.prompt_length < 1:
        sys.exit("--max-input-tokens must be >= 2, --batch-size and --prompt-length >= 1")
    epochs = a.epochs if a.epochs is not None else (0 if a.steps else 3)
    if epochs == 0 and a.steps == 0:
        sys.exit("give --epochs or --steps")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)

    model = torch_t5.T5(a.model_dir)
    started = time.perf_counter()
    cfg = model.cfg

    # ---- data: tokenize everything in one ptune call
    train_rows = read_rows(a.train, a.text_column, a.label_column)
    dev_rows = read_rows(a.dev, a.text_column, a.label_column)
    labels = sorted({lab for _, lab in train_rows})
    if len(labels) < 2:
        sys.exit("the training rows have %d distinct labels; prompt tuning needs at least 2" % len(labels))
    index = {lab: j for j, lab in enumerate(labels)}
    for _, lab in dev_rows:
        if lab not in index:
            sys.exit("validation label \"%s\" does not occur in the training rows" % lab)
    ids = tokenize(a.ptune, a.model_dir,
                   [t for t, _ in train_rows] + [t for t, _ in dev_rows] + labels)
    keep = a.max_input_tokens - 1
    inputs = [x[:keep] + [cfg["eos_id"]] for x in ids[:len(train_rows) + len(dev_rows)]]
    train_ids, dev_ids = inputs[:len(train_rows)], inputs[len(train_rows):]
    train_lab = [index[lab] for _, lab in train_rows]
    dev_lab = [index[lab] for _, lab in dev_rows]
    task = Task(labels, ids[len(inputs):], cfg["eos_id"], cfg["start_id"])
    validate = Validator(model, task, dev_ids, dev_lab)
    targets = task.targets

    # ---- schedule
    n_train, B = len(train_ids), a.batch_size
    per_epoch = (n_train + B - 1) // B
    total = per_epoch * epochs if epochs > 0 else a.steps
    if a.steps > 0:
        total = min(total, a.steps)
    eval_every = a.eval_every or min(per_epoch, 100)

    # ---- prompt and optimizer
    pieces, special = spiece_special_ids(os.path.join(a.model_dir, "spiece.model"))
    prompt = init_prompt(model, task, a.prompt_length, a.init, rng, pieces, special)
    if a.optimizer == "adam":
        opt = torch.optim.Adam([prompt], lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    else:
        opt = Adafactor(prompt, a.lr)

    curve_file = open(a.curve, "w") if a.curve else None
    if curve_file:
        curve_file.write("member,step,epoch,train_loss,val_accuracy,val_loss,rows_per_s\n")

    order, pos, epoch = rng.permutation(n_train), 0, 1
    best = None
    best_acc, best_loss = -1.0, math.inf
    loss_sum, loss_steps = 0.0, 0
    step_seconds, rows_trained = 0.0, 0
    curve, train_loss = [], float("nan")

    for step in range(1, total + 1):
        t0 = time.perf_counter()
        batch = []
        for _ in range(B):
            if pos == n_train:
                order, pos, epoch = rng.permutation(n_train), 0, epoch + 1
            batch.append(order[pos])
            pos += 1
        ids_b, mask_b = pad_inputs([train_ids[r] for r in batch])
        tg = [targets[train_lab[r]] for r in batch]
        Td = max(len(t) for t in tg)
        dec_b = torch.zeros(B, Td, dtype=torch.long)
        tgt_b = torch.full((B, Td), PAD, dtype=torch.long)
        for i, t in enumerate(tg):
            dec_b[i, :len(t)] = torch.tensor([cfg["start_id"]] + t[:-1])
            tgt_b[i, :len(t)] = torch.tensor(t)

        opt.zero_grad()
        loss = model.loss(ids_b, mask_b, prompt, dec_b, tgt_b, ignore_index=PAD)
        loss.backward()
        with torch.no_grad():
            norm = prompt.grad.norm().item()
            if a.optimizer == "adam" and norm > 1.0:   # Adafactor: no gradient clipping
                prompt.grad.mul_(1.0 / norm)
        opt.step()
        step_seconds += time.perf_counter() - t0
        rows_trained += B
        loss_sum += loss.item()
        loss_steps += 1

        if step % eval_every == 0 or step == total:
            train_loss = loss_sum / loss_steps
            loss_sum, loss_steps = 0.0, 0
            acc, vloss = validate(prompt.detach())
            if acc > best_acc or (acc == best_acc and vloss < best_loss):
                best, best_acc, best_loss, best_step = prompt.detach().clone(), acc, vloss, step
            rps = rows_trained / step_seconds
            print("member 1/1 step %d/%d epoch %d loss %.4f val_accuracy %.4f val_loss %.4f rows/s %.1f"
                  % (step, total, epoch, train_loss, acc, vloss, rps), file=sys.stderr, flush=True)
            if curve_file:
                curve_file.write("0,%d,%d,%.6f,%.6f,%.6f,%.2f\n" % (step, epoch, train_loss, acc, vloss, rps))
                curve_file.flush()
            curve.append({"step": step, "train_loss": train_loss, "val_accuracy": acc, "val_loss": vloss})

    if curve_file:
        curve_file.close()
    if a.out:
        np.save(a.out, best.numpy())
    out = {
        "labels": labels,
        "train_rows": n_train,
        "val_rows": len(dev_ids),
        "steps": total,
        "seconds": time.perf_counter() - started,
        "train_rows_per_s": rows_trained / step_seconds,
        "final_loss": train_loss,
        "val_accuracy": best_acc,
        "best_step": best_step,
        "val_loss": best_loss,
        "threads": a.threads,
        "openblas_threads": openblas_threads(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "init": a.init,
        "optimizer": a.optimizer,
        "prompt_length": a.prompt_length,
        "curve": curve,
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
